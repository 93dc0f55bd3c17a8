"""`botkit serve`, what `make run` calls, in the order a user needs to hear about
problems: the data folder (is another botkit on it?), the port (is it free?), the
database (embedded, or DATABASE_URL: reachable, usable?), migrations, the admin token,
then the API. Anything that stops it is one line (a StartupError), never a traceback.

Stopping: Ctrl-C, SIGTERM and SIGHUP (the terminal closing) all drain the API and then
stop the embedded PostgreSQL; a kill -9 leaves nothing behind either, because the
database stops itself when its parent dies (store/embedded.py)."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import cast

from .config import Settings
from .errors import StartupError

log = logging.getLogger("botkit")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def setup_logging(level: str) -> None:
    from .transport.app import RequestIdFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def log_config() -> dict:
    """uvicorn's loggers through the same handler, so its lines carry a request id too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "botkit.transport.app.RequestIdFilter"}},
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "botkit": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }


async def ensure_admin(dsn: str, token_file: Path) -> tuple[str, str | None]:
    """Make sure an admin account and a working admin token for this database exist,
    the token in `token_file`. Returns (the admin account, the secret when a new one
    was made)."""
    from .resources.account import create_account
    from .resources.token import issue_token, token_is_valid
    from .store.connect import connect
    from .store.pool import init_connection

    conn = await connect(dsn)
    try:
        await init_connection(conn)
        admin = await conn.fetchval("SELECT id FROM accounts WHERE role = 'admin' ORDER BY id LIMIT 1")
        if admin is not None and token_file.exists() and await token_is_valid(conn, token_file.read_text().strip()):
            return admin, None
        async with conn.transaction():
            if admin is None:
                admin = await create_account(conn, name="admin", role="admin")
            _, secret = await issue_token(conn, admin, name="admin")
    finally:
        await conn.close()
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.touch(mode=0o600)
    token_file.write_text(secret + "\n")
    return admin, secret


async def prepare(dsn: str, token_file: Path) -> None:
    """Migrations and the admin token, said as they happen."""
    from .store.migrate import migrate

    await migrate(dsn)
    admin, secret = await ensure_admin(dsn, token_file)
    if secret:
        # The secret goes to a terminal only, once: where stderr is kept (a file, a
        # journal, a log collector) the log says where the token is, never what it is.
        log.info("created an admin token for the admin account %s: it is in %s", admin, token_file)
        if sys.stderr.isatty():
            print(f"\n  botkit admin token (account {admin}):\n\n    {secret}\n", file=sys.stderr, flush=True)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now: a taken port is said before anything starts."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"{host}:{port} is already in use; choose another port (make run PORT=8100)") from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(0)


def _follow_make() -> None:
    """Under `make run`, a signal sent to make alone (kill -HUP <make>) never reaches us:
    make blocks it and waits for us. Seen from here, make's pending fatal signal shows in
    its blocked set (/proc/<pid>/status SigBlk); stop as if we had got it."""
    parent = os.getppid()
    try:
        if Path(f"/proc/{parent}/comm").read_text().strip() != "make":
            return
    except OSError:
        return
    fatal = sum(1 << (s - 1) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM))

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                status = Path(f"/proc/{parent}/status").read_text().splitlines()
                blocked = int(next(line.split()[1] for line in status if line.startswith("SigBlk:")), 16)
            except (OSError, StopIteration, ValueError):
                blocked = fatal
            if os.getppid() != parent or blocked & fatal:
                log.info("make was told to stop: stopping")
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="follow-make", daemon=True).start()


GC_THRESHOLDS = (50_000, 50, 100)


def in_worker() -> None:
    """In an API process. In a worker of `WORKERS=N`: SIGHUP is the supervisor's to act
    on (it stops the workers itself), so a closing terminal does not kill them from under
    it. And the cycle collector runs less often than Python's default (every 700 net
    allocations): a process holding thousands of open streams has many live objects, and
    the frequent young-generation passes made its request latency 10-20% slower (bench
    channel figures, issue 11); garbage that is not cyclic is freed at once regardless."""
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    gc.set_threshold(*GC_THRESHOLDS)
    _open_files()


def _open_files() -> None:
    """As many open files as the system lets this process have: each stream holds two
    sockets (its client's and its model provider's), and the usual soft limit (1,024)
    would refuse the 513th stream."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    wanted = 2 * Settings().max_connections + 256
    if hard != resource.RLIM_INFINITY and hard < wanted:
        log.info(
            "this process may open %d files (ulimit -n): about %d streams at once, fewer than "
            "BOTKIT_MAX_CONNECTIONS; raise the limit for more",
            hard,
            (hard - 256) // 2,
        )


def run_api(sock: socket.socket, host: str, port: int, workers: int) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def handle_hup(self) -> None:  # uvicorn restarts the workers on SIGHUP; here it means stop
            self.handle_term()

    config = uvicorn.Config(
        "botkit.cli:app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="botkit.transport.server:GuardedProtocol",  # httptools, with limits on heads and timeouts
        # typed int, used as call_later's seconds: a fraction works
        timeout_keep_alive=cast(int, Settings().keepalive_timeout),
        access_log=False,
        log_config=log_config(),
        lifespan="on",
        timeout_graceful_shutdown=10,
        backlog=4096,  # connections waiting to be accepted in a burst (the kernel caps it at somaxconn)
    )
    log.info("serving on http://%s:%s/v1 (%d worker%s)", host, port, workers, "s" if workers > 1 else "")
    if workers > 1:
        Supervisor(config, sockets=[sock]).run()
    else:
        # uvicorn stops gracefully on SIGTERM; a SIGHUP becomes one.
        signal.signal(signal.SIGHUP, lambda *_: signal.raise_signal(signal.SIGTERM))
        uvicorn.Server(config).run(sockets=[sock])


def serve(s: Settings, host: str, port: int, workers: int) -> int:
    from .store.connect import check_url
    from .store.embedded import EmbeddedPostgres

    # Until uvicorn takes over, SIGTERM and SIGHUP unwind through `finally` like Ctrl-C.
    # (uvicorn re-raises SIGTERM after its graceful shutdown; the default handler would
    # kill the process before `finally` could stop the database.)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    _follow_make()
    embedded = None
    try:
        if s.database_url:
            check_url(s.database_url)
        else:
            embedded = EmbeddedPostgres(s.data_dir / "postgres")
            holder = embedded.claim("botkit serve", f"http://{host}:{port}/v1")
            if holder is not None:
                raise StartupError(
                    f"{holder} is already running on the data folder {s.data_dir}; stop it, "
                    "or give a second server its own BOTKIT_DATA_DIR and PORT"
                )
        sock = bind(host, port)
        dsn = s.database_url or embedded.start()  # type: ignore[union-attr]
        asyncio.run(prepare(dsn, s.admin_token_file))
        os.environ["DATABASE_URL"] = dsn  # for the app factory, in this process or the workers
        run_api(sock, host, port, workers)
    except KeyboardInterrupt:
        pass
    finally:
        if embedded is not None:
            embedded.stop()
    return 0
