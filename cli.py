"""The `botkit` command: `botkit serve` (what `make run` calls), `botkit worker`,
`botkit migrate`, `botkit routes`, and the operator commands (tokens, partner users)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .config import Settings
from .config import settings as load_settings
from .errors import StartupError
from .store.connect import check_url


def app():
    """The ASGI app of `botkit serve` (uvicorn's factory): every route, configured
    from the environment."""
    from .resources import ROUTES, services
    from .serve import in_worker
    from .transport.app import create_app

    in_worker()
    return create_app(load_settings(), ROUTES, services)


def serve(args: argparse.Namespace) -> int:
    from .serve import serve as run
    from .serve import setup_logging

    s = load_settings()
    setup_logging(s.log_level)
    return run(s, args.host or s.host, args.port or s.port, args.workers or s.workers)


def worker(args: argparse.Namespace) -> int:
    """Background jobs without HTTP: the same services as an API process (pool, channels,
    event log, job runner) on the same database, until SIGINT, SIGTERM or SIGHUP."""
    import dataclasses

    from .serve import setup_logging

    s = load_settings()
    setup_logging(s.log_level)
    with database(s) as dsn:
        concurrency = args.concurrency or (s.job_concurrency if s.job_concurrency > 0 else 4)
        return asyncio.run(_work(dataclasses.replace(s, database_url=dsn, job_concurrency=concurrency)))


async def _work(s: Settings) -> int:
    import signal

    from .resources import ROUTES, services
    from .store.migrate import migrate
    from .transport.app import create_app

    await migrate(s.database_url or "")
    app = create_app(s, ROUTES, services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    async with app.shell.router.lifespan_context(app.shell):
        logging.getLogger("botkit").info("botkit worker: running background jobs, %d at once", s.job_concurrency)
        await stop.wait()
        logging.getLogger("botkit").info("botkit worker: stopping (jobs held are handed back)")
    return 0


# --- operator commands against the configured database --------------------------


@contextmanager
def database(s: Settings) -> Iterator[str]:
    """The DSN to work on: DATABASE_URL, else the embedded database in the data folder
    (the running one when `make run` holds it, else started for this command)."""
    if s.database_url:
        yield check_url(s.database_url)
        return
    from .store.embedded import EmbeddedPostgres, running_pid

    embedded = EmbeddedPostgres(s.data_dir / "postgres")
    holder = embedded.claim(f"botkit {' '.join(sys.argv[1:3])}".strip())
    if holder is not None:
        if running_pid(embedded.data) is None:
            raise StartupError(f"the embedded database is in use by {holder}; try again when it is done")
        yield embedded.uri()
        return
    try:
        yield embedded.start()
    finally:
        embedded.stop()


def _with_db(work) -> int:
    """Run `work(conn)` on a migrated database; print what it returns."""
    from .store.connect import connect
    from .store.migrate import migrate
    from .store.pool import init_connection

    s = load_settings()
    logging.basicConfig(level="WARNING")

    async def go(dsn: str):
        await migrate(dsn)
        conn = await connect(dsn)
        try:
            await init_connection(conn)
            return await work(conn)
        finally:
            await conn.close()

    with database(s) as dsn:
        out = asyncio.run(go(dsn))
    if out is not None:
        print(out)
    return 0


def migrate_cmd(args: argparse.Namespace) -> int:
    from .serve import setup_logging
    from .store.migrate import migrate

    s = load_settings()
    setup_logging(s.log_level)
    with database(s) as dsn:
        applied = asyncio.run(migrate(dsn))
    print("\n".join(f"applied {name}" for name in applied) or "the database is up to date")
    return 0


def parse_scope(text: str) -> dict:
    """`resource[:action,action][@id,id]`, e.g. `bot:fetch,list@01abc...`, `dataset` or
    `conversation/message:list`."""
    ids = None
    if "@" in text:
        text, _, id_part = text.partition("@")
        ids = [i for i in id_part.split(",") if i]
    resource, _, action_part = text.partition(":")
    scope: dict = {"resource": resource}
    if action_part:
        scope["actions"] = [a for a in action_part.split(",") if a]
    if ids:
        scope["ids"] = ids
    return scope


def parse_duration_ms(text: str) -> int:
    """`30d`, `12h`, `15m`, `90s` from now, as an epoch-ms expiry."""
    import time

    units = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
    if not text or text[-1] not in units or not text[:-1].isdigit():
        raise SystemExit(f"--expires: use a number with d, h, m or s (got {text!r})")
    return int((time.time() + int(text[:-1]) * units[text[-1]]) * 1000)


async def _admin_account(conn) -> str:
    admin = await conn.fetchval("SELECT id FROM accounts WHERE role = 'admin' ORDER BY id LIMIT 1")
    if admin is None:
        raise SystemExit("no admin account yet: run `make run` (botkit serve) once")
    return admin


def token_create(args: argparse.Namespace) -> int:
    from .actions.auth import check_scopes, scope_catalogue
    from .errors import BadRequest
    from .resources import ROUTES
    from .resources.token import issue_token

    async def work(conn):
        account = args.account or await _admin_account(conn)
        if await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", account) is None:
            raise SystemExit(f"no account {account}")
        scopes = [parse_scope(s) for s in args.scope] or None
        try:
            check_scopes(scopes, scope_catalogue(ROUTES))
        except BadRequest as e:
            raise SystemExit(f"--scope: {e}") from None
        expires = parse_duration_ms(args.expires) if args.expires else None
        token_id, secret = await issue_token(conn, account, name=args.name, scopes=scopes, expires_at=expires)
        return f"{token_id}\t{secret}"

    return _with_db(work)


def token_list(args: argparse.Namespace) -> int:
    import json

    async def work(conn):
        account = args.account or await _admin_account(conn)
        rows = await conn.fetch(
            "SELECT id, name, scopes, expires_at, revoked_at FROM tokens WHERE account_id = $1 ORDER BY id", account
        )
        return (
            "\n".join(
                f"{r['id']}\t{r['name'] or '-'}\t{json.dumps(r['scopes'])}\t"
                f"expires={r['expires_at'] or '-'}\t{'revoked' if r['revoked_at'] else 'active'}"
                for r in rows
            )
            or "(no tokens)"
        )

    return _with_db(work)


def token_revoke(args: argparse.Namespace) -> int:
    async def work(conn):
        from .actions.base import now_ms

        done = await conn.fetchval(
            "UPDATE tokens SET revoked_at = $2, updated_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id",
            args.id,
            now_ms(),
        )
        if done is None:
            raise SystemExit(f"no active token {args.id}")
        return f"revoked {done}"

    return _with_db(work)


def partner_user_create(args: argparse.Namespace) -> int:
    from .resources.account import create_account
    from .resources.token import issue_token

    async def work(conn):
        parent = args.parent or await _admin_account(conn)
        child = await create_account(conn, name=args.name, parent_id=parent)
        if args.email:
            await conn.execute("UPDATE accounts SET email = $2 WHERE id = $1", child, args.email)
        if not args.token:
            return child
        _, secret = await issue_token(conn, child, name="cli")
        return f"{child}\t{secret}"

    return _with_db(work)


def account_list(args: argparse.Namespace) -> int:
    async def work(conn):
        rows = await conn.fetch(
            "SELECT id, role, name, email, parent_id FROM accounts"
            " WHERE ($1::text IS NULL OR parent_id = $1) ORDER BY id",
            args.parent,
        )
        return (
            "\n".join(
                f"{r['id']}\t{r['role']}\t{r['name'] or '-'}\t{r['email'] or '-'}\tparent={r['parent_id'] or '-'}"
                for r in rows
            )
            or "(no accounts)"
        )

    return _with_db(work)


def routes_table() -> str:
    """Every route served: method, path, action class and where it is declared."""
    import os

    from .resources import ROUTES

    root = os.path.dirname(os.path.abspath(__file__))
    rows = [
        (a.method, a.path, type(a).__name__, f"{os.path.relpath(a.declared_at[0], root)}:{a.declared_at[1]}")
        for a in ROUTES
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{m:<{widths[0]}}  {p:<{widths[1]}}  {c:<{widths[2]}}  {where}" for m, p, c, where in rows)


def routes_cmd(args: argparse.Namespace) -> int:
    print(routes_table())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="botkit", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("serve", help="run the API server (embedded PostgreSQL when DATABASE_URL is unset)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    p.set_defaults(func=serve)
    p = sub.add_parser("worker", help="run background jobs only (no HTTP), on DATABASE_URL or the embedded database")
    p.add_argument("--concurrency", type=int, help="jobs at once (default BOTKIT_JOB_CONCURRENCY, else 4)")
    p.set_defaults(func=worker)
    p = sub.add_parser("migrate", help="apply SQL migrations (DATABASE_URL, else the embedded database)")
    p.set_defaults(func=migrate_cmd)
    p = sub.add_parser("routes", help="print every route: method, path, action class, file:line")
    p.set_defaults(func=routes_cmd)

    account = sub.add_parser("account", help="accounts").add_subparsers(dest="account_command", required=True)
    p = account.add_parser(
        "list", help="list accounts: id, role, name, email, parent (the admin account is role admin)"
    )
    p.add_argument("--parent", help="only the children of this account")
    p.set_defaults(func=account_list)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    p = token.add_parser("create", help="create a token; prints `id<TAB>secret` (the secret is shown once)")
    p.add_argument("--account", help="account id (default: the admin account)")
    p.add_argument("--name")
    p.add_argument(
        "--scope",
        action="append",
        default=[],
        help="resource[:action,action][@id,id]; repeatable (default: no restriction)",
    )
    p.add_argument("--expires", help="lifetime, e.g. 30d, 12h, 15m")
    p.set_defaults(func=token_create)
    p = token.add_parser("list", help="list an account's tokens (never their secrets)")
    p.add_argument("--account")
    p.set_defaults(func=token_list)
    p = token.add_parser("revoke", help="revoke a token by id")
    p.add_argument("id")
    p.set_defaults(func=token_revoke)

    partner = sub.add_parser("partner", help="partner sub-accounts").add_subparsers(
        dest="partner_command", required=True
    )
    user = partner.add_parser("user", help="child accounts").add_subparsers(dest="user_command", required=True)
    p = user.add_parser("create", help="create a child account; prints its id (and a token with --token)")
    p.add_argument("--name")
    p.add_argument("--email")
    p.add_argument("--parent", help="parent account id (default: the admin account)")
    p.add_argument("--token", action="store_true", help="also create an API token for it")
    p.set_defaults(func=partner_user_create)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args = parser.parse_args(["serve", *(argv or [])])
    try:
        return args.func(args)
    except StartupError as exc:
        print(f"botkit: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
