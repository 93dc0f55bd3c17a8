"""`botkit serve` and `make run` as a user meets them: wherever the checkout is, however
it is stopped, with a second server or a taken port, with a DATABASE_URL that does not
work. Each test runs the real command in a subprocess on its own data folder."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from botkit.config import Settings
from botkit.errors import StartupError
from botkit.serve import prepare
from botkit.store.connect import check_url, connect
from botkit.store.embedded import EmbeddedPostgres, running_pid
from botkit.store.migrate import migrate
from botkit.testing import suite_server_problem

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def data_dir():
    """A data folder inside a 0700 folder, as a home folder or `mktemp -d` is."""
    home = Path(tempfile.mkdtemp(prefix="botkit-home-"))
    path = home / "data"
    yield path
    EmbeddedPostgres(path / "postgres").remove()
    subprocess.run(["rm", "-rf", str(home)], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    env.update(BOTKIT_DATA_DIR=str(data_dir), PORT=str(port), HOST="127.0.0.1", **extra)
    return env


def _serve(data_dir: Path, port: int, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "botkit.cli", "serve"],
        env=_env(data_dir, port, **extra),
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


def _finish(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    return out


def _no_postgres(data_dir: Path) -> bool:
    link = data_dir / "postgres"
    deadline = time.monotonic() + 15
    while link.exists() and running_pid(link.resolve()) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return not link.exists() or running_pid(link.resolve()) is None


def test_serve_on_the_embedded_default(data_dir):
    """What `make run` does, from a checkout in a 0700 folder: embedded PostgreSQL,
    migrations, an admin token in the data folder (printed once, with its account), the
    API on 127.0.0.1; the next run keeps the data and the token."""
    port = _free_port()
    proc = _serve(data_dir, port)
    try:
        _wait_healthy(port, proc)
        token = (data_dir / "admin-token").read_text().strip()
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1/", headers={"Authorization": f"Bearer {token}"})
        bot = api.post("bot/create", json={"name": "persisted"}).json()["id"]
    finally:
        out = _finish(proc)
    # the log says where the new token is, never the secret (stderr here is a pipe, not a terminal)
    assert token not in out and f": it is in {data_dir / 'admin-token'}" in out
    for step in ("initialising a new cluster", "ready in", "database: applied", "pgvector:", "serving on"):
        assert step in out, (step, out)
    assert proc.returncode == 0, out
    assert _no_postgres(data_dir), "the embedded PostgreSQL was left running"

    proc = _serve(data_dir, port)  # a second run: same data, same token, nothing printed
    try:
        _wait_healthy(port, proc)
        assert api.get(f"bot/{bot}/fetch").json()["name"] == "persisted"
    finally:
        out = _finish(proc)
        api.close()
    assert token not in out and "created an admin token" not in out
    assert (data_dir / "admin-token").read_text().strip() == token

    # a run on a terminal that has to make a new token shows it there, once
    (data_dir / "admin-token").unlink()
    out = _serve_on_a_terminal(data_dir, port)
    token = (data_dir / "admin-token").read_text().strip()
    assert "botkit admin token (account " in out and token in out, out


def _serve_on_a_terminal(data_dir: Path, port: int) -> str:
    """`botkit serve` with its stdout and stderr on a pseudo-terminal: what it shows there."""
    import pty
    import threading

    master, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "botkit.cli", "serve"], env=_env(data_dir, port), stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer has gone
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=10)
        os.close(master)
    return shown.decode(errors="replace")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_every_way_of_stopping_stops_the_database(data_dir, sig):
    """Ctrl-C, SIGTERM, the terminal closing, kill -9: no PostgreSQL is left, and the
    next start starts."""
    port = _free_port()
    proc = _serve(data_dir, port)
    try:
        _wait_healthy(port, proc)
    finally:
        out = _finish(proc, sig)
    if sig != signal.SIGKILL:
        assert proc.returncode == 0, out
        assert "Traceback" not in out, out
    assert _no_postgres(data_dir), f"PostgreSQL outlived botkit serve after {sig.name}"
    proc = _serve(data_dir, port)
    try:
        _wait_healthy(port, proc)
    finally:
        _finish(proc)


def test_kill_hup_of_make_run_stops_everything(data_dir):
    """`kill -HUP <make>` reaches make alone, which then waits for its child."""
    port = _free_port()
    proc = subprocess.Popen(
        ["make", "-s", "-C", str(ROOT), "run"],
        env=_env(data_dir, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_healthy(port, proc)
    finally:
        out = _finish(proc, signal.SIGHUP)
    assert "make was told to stop" in out, out
    assert _no_postgres(data_dir), out


def test_a_second_server_on_the_same_data_folder_says_who_runs(data_dir):
    port, other_port = _free_port(), _free_port()
    first = _serve(data_dir, port)
    try:
        _wait_healthy(port, first)
        second = subprocess.run(
            [sys.executable, "-m", "botkit.cli", "serve"],
            env=_env(data_dir, other_port),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert second.stdout == "" and len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert f"pid {first.pid}" in second.stderr and f":{port}/v1" in second.stderr, second.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200  # untouched

        # another data folder from the same checkout is another server
        third = _serve(data_dir.with_name("data2"), other_port)
        try:
            _wait_healthy(other_port, third)
        finally:
            _finish(third)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        _finish(first)
        EmbeddedPostgres(data_dir.with_name("data2") / "postgres").remove()


def test_a_taken_port_is_said_before_anything_starts(data_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "botkit.cli", "serve"],
            env=_env(data_dir, port),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in done.stderr, done.stderr
    assert "serving" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (data_dir / "postgres").exists()  # nothing started


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://botkit@127.0.0.1:abc/botkit", "invalid port 'abc'"),
        ("postgresql://botkit@127.0.0.1:/botkit", "invalid port ''"),
        ("127.0.0.1:5432/botkit", "must start with postgresql://"),
        ("postgresql://botkit:secret@127.0.0.1:{free}/botkit", "cannot connect to PostgreSQL at 127.0.0.1:"),
    ],
)
def test_a_database_url_that_cannot_work_is_one_line(data_dir, url, says):
    url = url.replace("{free}", str(_free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "botkit.cli", "serve"],
        env=_env(data_dir, _free_port(), DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr
    assert "secret" not in done.stderr


def test_database_failures_say_what_to_do(pg_server, fresh_database):
    """A missing database, an unknown role, a role without the privileges botkit needs,
    against the real server."""
    missing = pg_server.replace("/postgres?", f"/nothing_{uuid.uuid4().hex[:8]}?")
    with pytest.raises(StartupError, match=r"does not exist \(create it"):
        asyncio.run(connect(missing))
    with pytest.raises(StartupError, match="refused the login"):
        asyncio.run(connect(pg_server.replace("postgres:@", "nobody_here:@")))

    dsn = fresh_database(migrated=False)
    role = f"weak_{uuid.uuid4().hex[:8]}"

    async def as_a_weak_role() -> None:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'CREATE ROLE "{role}" LOGIN')
            await migrate(dsn.replace("postgres:@", f"{role}:@"))
        finally:
            await admin.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')
            await admin.close()

    with pytest.raises(StartupError, match="permission denied.*make its user the database's owner"):
        asyncio.run(as_a_weak_role())
    assert check_url(dsn) == dsn


def test_the_suite_says_when_its_database_role_cannot_create_databases(pg_server):
    role = f"nocreatedb_{uuid.uuid4().hex[:8]}"

    async def go() -> tuple[str | None, str | None]:
        admin = await asyncpg.connect(pg_server)
        try:
            await admin.execute(f'CREATE ROLE "{role}" LOGIN')
            weak = await suite_server_problem(pg_server.replace("postgres:@", f"{role}:@"))
            return weak, await suite_server_problem(pg_server)
        finally:
            await admin.execute(f'DROP ROLE "{role}"')
            await admin.close()

    weak, fine = asyncio.run(go())
    assert weak is not None and f"ALTER ROLE {role} CREATEDB" in weak
    assert fine is None


def test_each_database_keeps_its_own_admin_token(fresh_database, tmp_path):
    """`make run` with and without DATABASE_URL: neither overwrites the other's token."""
    first, second = fresh_database(), fresh_database()
    embedded_like = Settings(database_url=None, data_dir=tmp_path)
    external = Settings(database_url=second, data_dir=tmp_path)
    assert embedded_like.admin_token_file != external.admin_token_file
    asyncio.run(prepare(first, embedded_like.admin_token_file))
    asyncio.run(prepare(second, external.admin_token_file))
    asyncio.run(prepare(first, embedded_like.admin_token_file))  # still valid: not re-minted
    tokens = {f.name: f.read_text().strip() for f in tmp_path.glob("admin-token*")}
    assert len(set(tokens.values())) == 2, tokens
