"""The store: the embedded PostgreSQL's known traps, migrations, and `botkit serve`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from botkit.config import default_data_dir
from botkit.store.embedded import EmbeddedPostgres, running_pid
from botkit.store.migrate import migrate, migration_files


@pytest.fixture
def data_dir():
    path = default_data_dir() / f"test-{uuid.uuid4().hex[:8]}"
    yield path
    pid = running_pid(path) if path.exists() else None
    if pid:
        EmbeddedPostgres(path).stop()
    shutil.rmtree(path, ignore_errors=True)


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
        assert pg.started_here
        assert asyncio.run(_select_one(dsn)) == 1
        pg.stop()
        assert bystander.poll() is None, "stopping the database killed an unrelated process"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_running_server_is_reused_not_restarted(data_dir):
    first = EmbeddedPostgres(data_dir, fast=True)
    first.start()
    pid = running_pid(data_dir)
    second = EmbeddedPostgres(data_dir, fast=True)
    second.start()
    assert not second.started_here and running_pid(data_dir) == pid
    first.stop()


def test_migrations_apply_once_even_concurrently(fresh_database):
    dsn = fresh_database(migrated=False)

    async def both():
        return await asyncio.gather(migrate(dsn), migrate(dsn), migrate(dsn))

    results = asyncio.run(both())
    names = [m.name for m in migration_files()]
    assert sorted(results, key=len, reverse=True)[0] == names
    assert sum(len(r) for r in results) == len(names)
    assert asyncio.run(migrate(dsn)) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    env.update(BOTKIT_DATA_DIR=str(data_dir), PORT=str(port), HOST="127.0.0.1")
    return subprocess.Popen(
        [sys.executable, "-m", "botkit.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_healthy(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("botkit serve did not become healthy")


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out


def test_serve_on_the_embedded_default(data_dir):
    """What `make run` does: embedded PostgreSQL, migrations, an admin token in the data
    folder, the API on 127.0.0.1; SIGTERM stops the API and the database it started."""
    port = _free_port()
    proc = _serve(data_dir, port)
    try:
        _wait_healthy(port, proc)
        token = (data_dir / "admin-token").read_text().strip()
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1/", headers={"Authorization": f"Bearer {token}"})
        bot = api.post("bot/create", json={"name": "persisted"}).json()["id"]
        assert running_pid(data_dir / "postgres") is not None
    finally:
        out = _stop(proc)
    assert token in out  # printed on first run
    assert proc.returncode == 0, out
    assert running_pid(data_dir / "postgres") is None, "the embedded PostgreSQL was left running"

    proc = _serve(data_dir, port)  # a second run: same data, same token, nothing printed
    try:
        _wait_healthy(port, proc)
        assert api.get(f"bot/{bot}/fetch").json()["name"] == "persisted"
    finally:
        out = _stop(proc)
    assert token not in out
    assert (data_dir / "admin-token").read_text().strip() == token
