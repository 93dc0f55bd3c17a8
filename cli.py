"""The `botkit` command: `botkit serve` (what `make run` calls) and `botkit migrate`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from .config import Settings, settings as load_settings

log = logging.getLogger("botkit")


def setup_logging(level: str) -> None:
    from .transport.app import RequestIdFilter
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def log_config() -> dict:
    """uvicorn's loggers through the same handler, so its lines carry a request id too."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "botkit.transport.app.RequestIdFilter"}},
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                                "filters": ["request_id"], "stream": "ext://sys.stderr"}},
        "loggers": {"uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                    "botkit": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
    }


async def ensure_admin(dsn: str, data_dir: Path) -> str | None:
    """Make sure an admin account and a working admin token exist; the token is written
    to <data dir>/admin-token. Returns the secret when a new one was made."""
    import asyncpg

    from .resources.account import create_account
    from .resources.token import issue_token, token_is_valid
    from .store.pool import init_connection

    token_file = data_dir / "admin-token"
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        if token_file.exists() and await token_is_valid(conn, token_file.read_text().strip()):
            return None
        async with conn.transaction():
            admin = await conn.fetchval("SELECT id FROM accounts WHERE role = 'admin' ORDER BY id LIMIT 1")
            if admin is None:
                admin = await create_account(conn, name="admin", role="admin")
            _, secret = await issue_token(conn, admin, name="admin")
    finally:
        await conn.close()
    data_dir.mkdir(parents=True, exist_ok=True)
    token_file.touch(mode=0o600)
    token_file.write_text(secret + "\n")
    return secret


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(0)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .store.embedded import EmbeddedPostgres
    from .store.migrate import migrate

    s = load_settings()
    setup_logging(s.log_level)
    host = args.host or s.host
    port = args.port or s.port
    workers = args.workers or s.workers
    embedded = None
    dsn = s.database_url
    try:
        if not dsn:
            embedded = EmbeddedPostgres(s.data_dir / "postgres")
            dsn = embedded.start()
        applied = asyncio.run(migrate(dsn))
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        secret = asyncio.run(ensure_admin(dsn, s.data_dir))
        if secret:
            print(f"\n  botkit admin token (also in {s.data_dir / 'admin-token'}):\n\n    {secret}\n",
                  file=sys.stderr, flush=True)
        os.environ["DATABASE_URL"] = dsn  # for the workers uvicorn starts
        # uvicorn re-raises SIGTERM after its graceful shutdown; with the default
        # handler that kills the process before `finally` (and atexit) could run.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        log.info("serving on http://%s:%s/v1 (%d worker%s)", host, port, workers, "s" if workers > 1 else "")
        uvicorn.run("botkit.transport.app:create_app", factory=True, host=host, port=port, workers=workers,
                    loop="uvloop", http="httptools", access_log=False, log_config=log_config(),
                    lifespan="on", timeout_graceful_shutdown=10)
    finally:
        # uvicorn returns here on SIGTERM/SIGINT (it skips atexit): stop what we started.
        if embedded is not None and embedded.started_here:
            embedded.stop()
    return 0


def migrate_cmd(args: argparse.Namespace) -> int:
    from .store.migrate import migrate
    s = load_settings()
    setup_logging(s.log_level)
    if not s.database_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    for name in asyncio.run(migrate(s.database_url)):
        print("applied", name)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="botkit", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("serve", help="run the API server (embedded PostgreSQL when DATABASE_URL is unset)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    p.set_defaults(func=serve)
    p = sub.add_parser("migrate", help="apply SQL migrations to DATABASE_URL")
    p.set_defaults(func=migrate_cmd)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args = parser.parse_args(["serve", *(argv or [])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
