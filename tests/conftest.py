"""Test fixtures: one real PostgreSQL for the run (the embedded one, started here, or
TEST_DATABASE_URL / DATABASE_URL), a fresh database migrated from scratch, and the
real app served by uvicorn on 127.0.0.1 in a background thread (botkit.testing).
Tests talk HTTP.

Every test makes its own accounts, and everything is owned by an account, so tests
share the database without seeing each other's rows."""

from __future__ import annotations

import asyncio
import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, settings

from botkit.config import data_dir
from botkit.store.embedded import EmbeddedPostgres
from botkit.store.migrate import migrate
from botkit.store.seaweedfs import SeaweedS3
from botkit.testing import Api, FakeOpenAI, new_account, registry_for, start_app, suite_server_problem, use_models

settings.register_profile(
    "botkit",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "botkit"))
# The servers the suite starts (in-process and subprocesses) embed no records unless a
# test turns the built-in model on (tests/test_embeddings.py): embedding every record
# the suite writes would cost minutes of CPU and test nothing more.
os.environ.setdefault("BOTKIT_EMBEDDINGS_MODEL", "off")


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def pg_server():
    """DSN of a PostgreSQL server's maintenance database."""
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        problem = asyncio.run(suite_server_problem(url))
        if problem:
            pytest.exit(problem, returncode=2)
        yield url
        return
    pg = EmbeddedPostgres(data_dir() / f"test-postgres-{os.getpid()}", fast=True)
    try:
        yield pg.start()
    finally:
        pg.remove()


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


@pytest.fixture(scope="session")
def server(database, tmp_path_factory):
    srv = start_app(
        database,
        data_dir=tmp_path_factory.mktemp("data"),  # file content goes to its files/ folder
        max_body_bytes=64 * 1024,
        rate_limit=0,
        rate_limit_account=0,
        rate_limit_messages=0,
        rate_limit_history=0,
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def make_api(server, database):
    clients: list[Api] = []

    def make(name: str | None = None, prefix: str = "/v1/") -> Api:
        account, secret = asyncio.run(new_account(database, name, None))
        api = Api(base_url=server.url + prefix, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        api.account_id, api.token = account, secret
        clients.append(api)
        return api

    yield make
    for c in clients:
        c.close()


@pytest.fixture(scope="session")
def own_app(fresh_database, tmp_path_factory):
    """Factory: an app of its own on a fresh database, with settings of its own
    (`own_app(fetch_allow="127.0.0.1")`): (its server, a maker of new accounts'
    clients). Stopped at the end of the run."""
    servers: list = []
    clients: list[Api] = []

    def start(**overrides):
        dsn = fresh_database()
        srv = start_app(dsn, **{"data_dir": tmp_path_factory.mktemp("app"), "rate_limit": 0, **overrides})
        servers.append(srv)

        def make() -> Api:
            account, secret = asyncio.run(new_account(dsn, None, None))
            c = Api(base_url=srv.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
            c.account_id, c.token = account, secret
            clients.append(c)
            return c

        return srv, make

    yield start
    for c in clients:
        c.close()
    for srv in servers:
        srv.stop()


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


@pytest.fixture(scope="session")
def seaweedfs():
    """A real S3-compatible server for the run (SeaweedFS on 127.0.0.1, store/seaweedfs.py):
    `.endpoint`, `.access_key`, `.secret_key`, `.storage_url(bucket)`, `.env()`."""
    with SeaweedS3() as s3:
        yield s3


@pytest.fixture(scope="session")
def s3_storage(seaweedfs):
    """Factory: the settings of an app whose file content is in a fresh SeaweedFS bucket."""

    def make(bucket: str) -> dict:
        return {
            "storage_url": seaweedfs.storage_url(bucket),
            "storage_access_key_id": seaweedfs.access_key,
            "storage_secret_access_key": seaweedfs.secret_key,
        }

    return make


@pytest.fixture(scope="session")
def fake():
    """A scripted OpenAI-compatible model server for the run (botkit.testing.FakeOpenAI)."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def models(fake, server):
    """The fake provider as the configured models, for one test."""
    fake.reset()
    previous = use_models(server, registry_for(fake))
    yield fake
    use_models(server, previous)
    fake.reset()
