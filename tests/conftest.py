"""Test harness: one real PostgreSQL for the run (the embedded one, started here, or
TEST_DATABASE_URL / DATABASE_URL), a fresh database migrated from scratch, and the
real app served by uvicorn on 127.0.0.1 in a background thread. Tests talk HTTP.

Every test makes its own accounts, and everything is owned by an account, so tests
share the database without seeing each other's rows."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import uvicorn
import uvloop
from hypothesis import HealthCheck, settings

from botkit.config import PROJECT_DIR, Settings
from botkit.store.embedded import EmbeddedPostgres
from botkit.store.migrate import migrate

settings.register_profile("botkit", deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "botkit"))


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def pg_server():
    """DSN of a PostgreSQL server's maintenance database."""
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    data = PROJECT_DIR / ".data" / f"test-postgres-{os.getpid()}"
    pg = EmbeddedPostgres(data, fast=True)
    try:
        yield pg.start()
    finally:
        pg.stop()
        shutil.rmtree(data, ignore_errors=True)


async def _create_database(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def fresh_database(pg_server):
    """Factory: a new, empty database on the test server (dropped at the end)."""
    made = []

    def make(migrated: bool = True) -> str:
        name = f"botkit_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_create_database(pg_server, name))
        made.append(name)
        dsn = with_database(pg_server, name)
        if migrated:
            asyncio.run(migrate(dsn))
        return dsn

    yield make
    for name in made:
        asyncio.run(_drop_database(pg_server, name))


@pytest.fixture(scope="session")
def database(fresh_database) -> str:
    return fresh_database()


class ServerThread:
    """The app under uvicorn, on its own event loop in a thread, on 127.0.0.1."""

    def __init__(self, app) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning",
                                                    access_log=False, http="httptools"))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = uvloop.new_event_loop()  # as in production (and asyncio here adds 40 ms per request)
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    def start(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def call(self, coro):
        """Run a coroutine on the server's loop (e.g. with the app's pool)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_app(dsn: str, **overrides) -> ServerThread:
    from botkit.transport.app import create_app
    settings_ = Settings(database_url=dsn, data_dir=PROJECT_DIR / ".data", pool_size=4, **overrides)
    return ServerThread(create_app(settings_)).start()


@pytest.fixture(scope="session")
def server(database):
    srv = start_app(database, max_body_bytes=64 * 1024, rate_limit=0, rate_limit_account=0,
                    rate_limit_messages=0, rate_limit_history=0)
    yield srv
    srv.stop()


async def _new_account(dsn: str, name: str | None, parent_id: str | None) -> tuple[str, str]:
    from botkit.resources.account import create_account
    from botkit.resources.token import issue_token
    conn = await asyncpg.connect(dsn)
    try:
        account = await create_account(conn, name=name, parent_id=parent_id)
        _, secret = await issue_token(conn, account)
        return account, secret
    finally:
        await conn.close()


class Api(httpx.Client):
    """An HTTP client for one account: `api.post("bot/create", json=...)`."""
    account_id: str
    token: str


@pytest.fixture(scope="session")
def make_api(server, database):
    clients: list[Api] = []

    def make(name: str | None = None, prefix: str = "/v1/") -> Api:
        account, secret = asyncio.run(_new_account(database, name, None))
        api = Api(base_url=server.url + prefix, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        api.account_id, api.token = account, secret
        clients.append(api)
        return api

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def api(make_api) -> Api:
    return make_api()


@pytest.fixture
def other(make_api) -> Api:
    """A second, unrelated account."""
    return make_api()


@pytest.fixture(scope="session")
def anon(server):
    with httpx.Client(base_url=server.url + "/v1/", timeout=30) as c:
        yield c


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body
