"""Process and CPU helpers shared by the bench's orchestrator and its completion-stream
benchmark: free ports, RSS, process trees, CPU accounting from /proc, stopping process
groups and turning termination signals into SystemExit."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Protocol


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- signals and process groups ---------------------------------------------------


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def exit_on_signals(*signums: int) -> None:
    """These signals raise SystemExit, so that `finally` stops everything that was started."""
    for sig in signums:
        signal.signal(sig, _terminate)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group of proc (started with start_new_session=True), SIGKILL
    after 20 s; nothing when it has already exited."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


# --- process trees and CPU time ---------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (uvicorn's workers, when there are several)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


CLK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> int:
    """Busy jiffies of all CPUs (user, nice, system, irq, softirq, steal)."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return sum(int(f[i]) for i in (1, 2, 3, 6, 7, 8))


def proc_cpu(pid: int) -> int:
    """utime + stime + the reaped children's (jiffies)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    except (OSError, IndexError, ValueError):
        return 0


class HasPids(Protocol):
    def pids(self) -> list[int]: ...


class CpuWatch:
    """How much of the machine processes other than ours used during a window: this
    machine may be shared (other sessions' tests), which moves figures; the report
    says how much it did."""

    def __init__(self, roots: list[int], server: HasPids | None = None) -> None:
        self.roots = roots
        self.server = server  # also: the CPU time this server's processes used

    def _server_cpu(self) -> int:
        return sum(proc_cpu(p) for p in self.server.pids()) if self.server else 0

    def _ours(self) -> int:
        pids = {p for r in self.roots for p in process_tree(r)}
        t = os.times()  # this process and its reaped children (every finished wrk)
        return sum(proc_cpu(p) for p in pids) + round((t.user + t.system + t.children_user + t.children_system) * CLK)

    def __enter__(self) -> CpuWatch:
        self.t0, self.busy0 = time.monotonic(), machine_busy()
        self.ours0, self.server0 = self._ours(), self._server_cpu()
        return self

    def __exit__(self, *exc) -> None:
        elapsed = time.monotonic() - self.t0
        capacity = max(elapsed * CLK * (os.cpu_count() or 1), 1)
        busy, ours = machine_busy() - self.busy0, self._ours() - self.ours0
        self.foreign_pct = max(0.0, 100 * (busy - ours) / capacity)
        self.busy_pct = 100 * busy / capacity
        self.server_cpu_s = (self._server_cpu() - self.server0) / CLK


QUIET_WAIT_TOTAL_S = 60  # at most this long, over the whole run, waiting for other processes to calm down
_quiet_waited = [0.0]


def wait_quiet(max_s: float = 8, threshold_pct: float = 20) -> float:
    """Before a figure (our servers idle): if the machine is busy with other work, wait a
    little for it to finish (bounded per figure and per run). Returns the seconds waited."""
    waited = 0.0
    while waited < max_s and _quiet_waited[0] < QUIET_WAIT_TOTAL_S:
        b0, t0 = machine_busy(), time.monotonic()
        time.sleep(0.5)
        busy = 100 * (machine_busy() - b0) / ((time.monotonic() - t0) * CLK * (os.cpu_count() or 1))
        if busy < threshold_pct:
            break
        waited += 0.5
        _quiet_waited[0] += 0.5
    return waited


def quiet_waited() -> float:
    """The seconds wait_quiet has waited in all, in this process."""
    return _quiet_waited[0]


# --- botkit processes of a benchmark -----------------------------------------------------


def botkit_env(dsn: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a botkit process of a benchmark: its database, no rate limits."""
    return {
        **os.environ,
        "DATABASE_URL": dsn,
        "BOTKIT_LOG_LEVEL": "info",
        "BOTKIT_RATE_LIMIT": "1000000000",
        "BOTKIT_RATE_LIMIT_ACCOUNT": "1000000000",
        "BOTKIT_RATE_LIMIT_MESSAGES": "1000000000",
        "BOTKIT_DATA_DIR": str(data_dir),
        **extra,
    }


def start_logged(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"botkit serve exited: {log.read_text()[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"botkit serve did not answer /healthz within {timeout:g} s")
