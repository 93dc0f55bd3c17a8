"""The task-execution benchmark (issue 13): 1,000 queued executions of a short task
(the built-in model, one iteration each) drained by 1, 2 and 4 `botkit worker`
processes (BOTKIT_JOB_CONCURRENCY each, default 4) on a database of their own on the
bench's PostgreSQL, with an API process that queues and runs nothing
(BOTKIT_JOB_CONCURRENCY=0).

Per round: the workers start and are paused (SIGSTOP) once ready, the 1,000 triggers go
through the API, the workers resume and the clock runs until the last execution has
ended. Reported: executions/s, and the CPU time per execution of the workers (botkit's
time per execution step, the built-in model's answer included, so it bounds what
botkit adds beyond a model) and of PostgreSQL. Every execution must end in success.
Bounded: EXECUTIONS per round, ROUND_LIMIT_S per round, TIME_LIMIT_S in all.

    .venv/bin/python bench/tasks.py     # on its own: an embedded PostgreSQL of its own"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import seed as seeding  # noqa: E402
from procs import (  # noqa: E402
    CLK,
    botkit_env,
    free_port,
    proc_cpu,
    process_tree,
    start_logged,
    stop_group,
    wait_healthy,
)
from targets import TARGETS as TARGETS_ALL  # noqa: E402

EXECUTIONS = 1000
WORKERS = (1, 2, 4)
ROUND_LIMIT_S = 120
TIME_LIMIT_S = 420
DB_NAME = "botkit_bench_tasks"
BOTKIT = ROOT / ".venv" / "bin" / "botkit"
WORK = ROOT / ".data" / "bench" / "tasks"

_T = TARGETS_ALL["task_step_cpu_ms"]
TARGETS = (
    (
        f"tasks: botkit CPU per execution step < {_T['below']:g} ms (workers' CPU / executions, 1 worker; "
        "the built-in model's answer included)",
        "worker_cpu_ms_1",
        _T["below"],
    ),
)


async def _prepare(any_dsn: str) -> tuple[str, str]:
    """A fresh migrated database, with an account and its API token."""
    dsn = await seeding.fresh_database(any_dsn, DB_NAME)
    _, token = await seeding.fresh_account(dsn, "bench tasks")
    return dsn, token


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited: {log.read_text()[-2000:]}")
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args} did not say {text!r} within {timeout:g} s")


class Api:
    """A keep-alive client for the API process (http.client: the client is not measured)."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(self, path: str, body: dict) -> dict:
        self.conn.request("POST", "/v1/" + path, json.dumps(body), self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {data[:300]!r}")
        return json.loads(data)


def _cpu(pids: list[int]) -> int:
    return sum(proc_cpu(p) for root in pids for p in process_tree(root))


async def _left(dsn: str, task_id: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE completed_at IS NULL) AS left, "
            "count(*) FILTER (WHERE outcome = 'success') AS success FROM task_executions WHERE task_id = $1",
            task_id,
        )
        return row["left"], row["success"]
    finally:
        await conn.close()


def _round(dsn: str, api: Api, workers: int, pg_pid: int | None) -> dict:
    task_id = api.post("task/create", {"name": "hello", "description": "Say hello to the team."})["id"]
    procs = []
    try:
        for i in range(workers):
            log = WORK / f"worker-{workers}-{i}.log"
            procs.append(start_logged([str(BOTKIT), "worker"], botkit_env(dsn, WORK / "data"), log))
            _wait_for(log, "running background jobs", procs[-1])
        for p in procs:
            os.kill(p.pid, signal.SIGSTOP)
        queued_at = time.monotonic()
        for _ in range(EXECUTIONS):
            api.post(f"task/{task_id}/trigger", {})
        trigger_s = time.monotonic() - queued_at
        cpu0, pg0 = _cpu([p.pid for p in procs]), _cpu([pg_pid] if pg_pid else [])
        t0 = time.monotonic()
        for p in procs:
            os.kill(p.pid, signal.SIGCONT)
        left = EXECUTIONS
        while time.monotonic() - t0 < ROUND_LIMIT_S:
            left, success = asyncio.run(_left(dsn, task_id))
            if left == 0:
                break
            time.sleep(0.02)
        seconds = time.monotonic() - t0
        cpu = _cpu([p.pid for p in procs]) - cpu0
        pg = (_cpu([pg_pid]) - pg0) if pg_pid else 0
        done = EXECUTIONS - left
        return {
            "workers": workers,
            "executions": done,
            "success": success,
            "seconds": seconds,
            "per_s": done / seconds if seconds else 0.0,
            "worker_cpu_ms": 1000 * cpu / CLK / max(done, 1),
            "pg_cpu_ms": 1000 * pg / CLK / max(done, 1),
            "trigger_ms": 1000 * trigger_s / EXECUTIONS,
            "ok": left == 0 and success == EXECUTIONS,
        }
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                stop_group(p)


def measure(any_dsn: str, pg_pid: int | None) -> dict:
    """`any_dsn`: a database of the bench's PostgreSQL (its server is used, not the
    database); `pg_pid`: the postmaster, for its CPU time."""
    started = time.monotonic()
    dsn, token = asyncio.run(_prepare(any_dsn))
    port = free_port()
    log = WORK / "api.log"
    api_proc = start_logged(
        [str(BOTKIT), "serve"], botkit_env(dsn, WORK / "data", BOTKIT_JOB_CONCURRENCY="0", PORT=str(port)), log
    )
    rounds = []
    try:
        wait_healthy(port, api_proc, log)
        api = Api(port, token)
        for n in WORKERS:
            if time.monotonic() - started > TIME_LIMIT_S - ROUND_LIMIT_S:
                break
            rounds.append(_round(dsn, api, n, pg_pid))
    finally:
        stop_group(api_proc)
    out: dict = {"rounds": rounds, "executions": EXECUTIONS}
    for r in rounds:
        out[f"per_s_{r['workers']}"] = r["per_s"]
        out[f"worker_cpu_ms_{r['workers']}"] = r["worker_cpu_ms"]
        out[f"pg_cpu_ms_{r['workers']}"] = r["pg_cpu_ms"]
    out["ok"] = bool(rounds) and all(r["ok"] for r in rounds)
    return out


if __name__ == "__main__":
    from botkit.store.embedded import EmbeddedPostgres, running_pid

    pg = EmbeddedPostgres(ROOT / ".data" / "bench-postgres", fast=True)
    admin = pg.start()
    try:
        result = measure(admin, running_pid(pg.data))
        print(json.dumps(result, indent=2))
    finally:
        pg.stop()
