"""The job queue: background work kept in PostgreSQL, so that it survives the process
running it.

`enqueue` adds a job on the caller's connection, so in the transaction of what asks
for it; a job with a `key` is made once per account and kind (a repeated request
finds the first). Every API process (and `botkit worker`) runs a `Runner`: it claims
due jobs with `FOR UPDATE SKIP LOCKED`, holds each under a lease of LEASE_SECONDS
that it renews every third of it, and marks it done or failed. A holder that dies
stops renewing: the job is due again when the lease runs out and another runner
takes it (so a job is never run twice at once, and resumed within LEASE_SECONDS
plus one poll); after MAX_ATTEMPTS claims it is failed instead. A runner that stops
gracefully cancels what it holds and hands it back, due at once. Cancelling a job
(`cancel`) stops it at its holder within a heartbeat. A runner that cannot renew
(the database is away from it) stops what it holds before its leases can run out,
so a job another runner takes over is not still running here.

Runners poll every POLL_SECONDS; a job enqueued by this process is started at once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("botkit.store")

LEASE_SECONDS = 30.0
POLL_SECONDS = 1.0
MAX_ATTEMPTS = 3
KEEP_FINISHED_MS = 86_400_000  # finished jobs are kept a day (their keys deduplicate)


@dataclass(slots=True)
class Job:
    id: str
    account_id: str
    kind: str
    key: str | None
    payload: Any
    attempts: int  # claims so far, this one included
    holder: str  # the runner holding it


async def finish(conn, job: Job) -> bool:
    """Mark a job done on the caller's connection, in the transaction of what it leaves
    behind: False when it is no longer held by this runner (canceled, or its lease ran
    out and another took it), and the caller must roll back."""
    done = await conn.fetchval(
        "UPDATE jobs SET state = 'done', updated_at = $3 WHERE id = $1 AND holder = $2 AND state = 'running' "
        "RETURNING id",
        job.id,
        job.holder,
        _now(),
    )
    return done is not None


async def held(conn, job: Job) -> bool:
    """Whether this runner still holds the job, locking its row until the caller's
    transaction ends (so a takeover waits for what this one is storing)."""
    row = await conn.fetchval(
        "SELECT id FROM jobs WHERE id = $1 AND holder = $2 AND state = 'running' FOR UPDATE", job.id, job.holder
    )
    return row is not None


Handler = Callable[[Job], Awaitable[None]]
GiveUp = Callable[[Job], Awaitable[None]]  # told of a job failed after MAX_ATTEMPTS claims


def _now() -> int:
    return time.time_ns() // 1_000_000


async def enqueue(
    conn, job_id: str, account_id: str, kind: str, payload: Any, key: str | None = None
) -> tuple[str, bool]:
    """(the job's id, whether it is new): with a key, the existing job of that key wins."""
    now = _now()
    made = await conn.fetchval(
        "INSERT INTO jobs (id, account_id, kind, key, payload, due_at, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $6, $6) ON CONFLICT (account_id, kind, key) DO NOTHING RETURNING id",
        job_id,
        account_id,
        kind,
        key,
        payload,
        now,
    )
    if made is not None:
        return made, True
    existing = await conn.fetchval(
        "SELECT id FROM jobs WHERE account_id = $1 AND kind = $2 AND key = $3", account_id, kind, key
    )
    return existing, False


async def cancel(conn, account_id: str, job_id: str) -> bool:
    """Cancel a queued or running job (its holder stops it at the next heartbeat)."""
    done = await conn.fetchval(
        "UPDATE jobs SET state = 'canceled', updated_at = $3 WHERE id = $1 AND account_id = $2 "
        "AND state IN ('queued', 'running') RETURNING id",
        job_id,
        account_id,
        _now(),
    )
    return done is not None


_CLAIM = """
UPDATE jobs SET state = 'running', holder = $1, attempts = attempts + 1, due_at = $3, updated_at = $2
WHERE id = (
    SELECT id FROM jobs WHERE state IN ('queued', 'running') AND due_at <= $2 AND kind = ANY($4::text[])
    ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING id, account_id, kind, key, payload, attempts
"""


class Runner:
    """Runs due jobs of the kinds it has handlers for, `concurrency` at a time."""

    def __init__(
        self,
        pool: Any,
        handlers: dict[str, Handler],
        *,
        concurrency: int = 4,
        lease: float = LEASE_SECONDS,
        poll: float = POLL_SECONDS,
        give_up: dict[str, GiveUp] | None = None,
    ) -> None:
        self.pool = pool
        self.handlers = handlers
        self.concurrency = concurrency
        self.lease = lease
        self.poll = poll
        self.give_up = give_up or {}
        self.holder = f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(6)}"
        self._running: dict[str, asyncio.Task] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._beat_task: asyncio.Task | None = None
        self._stopping = False

    def kick(self) -> None:
        """Look for due jobs now (this process just queued one)."""
        self._wake.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._claim_loop())
        self._beat_task = loop.create_task(self._heartbeat())

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming; cancel the jobs held and hand them back, due at once."""
        self._stopping = True
        for task in (self._loop_task, self._beat_task):
            if task is not None:
                task.cancel()
        held = list(self._running)
        for task in self._running.values():
            task.cancel()
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=timeout)
        if held:
            with contextlib.suppress(Exception):
                await self.pool.execute(
                    "UPDATE jobs SET state = 'queued', holder = NULL, due_at = $3, attempts = greatest(attempts - 1, 0) "
                    "WHERE id = ANY($1::text[]) AND holder = $2 AND state = 'running'",
                    held,
                    self.holder,
                    _now(),
                )

    async def _claim_loop(self) -> None:
        while not self._stopping:
            try:
                while len(self._running) < self.concurrency and await self._claim_one():
                    pass
                await self._prune()
            except Exception as exc:  # the database is away: try again at the next poll
                log.warning("job queue: claiming failed: %s", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)

    _pruned = 0.0

    async def _prune(self) -> None:
        if time.monotonic() - self._pruned < 3600:
            return
        self._pruned = time.monotonic()
        await self.pool.execute(
            "DELETE FROM jobs WHERE state IN ('done', 'failed', 'canceled') AND updated_at < $1",
            _now() - KEEP_FINISHED_MS,
        )

    async def _claim_one(self) -> bool:
        now = _now()
        row = await self.pool.fetchrow(_CLAIM, self.holder, now, now + int(self.lease * 1000), list(self.handlers))
        if row is None:
            return False
        job = Job(row["id"], row["account_id"], row["kind"], row["key"], row["payload"], row["attempts"], self.holder)
        if job.attempts > MAX_ATTEMPTS:
            await self._finish(job, "failed", f"given up after {MAX_ATTEMPTS} attempts")
            if (tell := self.give_up.get(job.kind)) is not None:
                try:
                    await tell(job)
                except Exception as exc:
                    log.warning("job %s: telling of giving it up failed: %s", job.id, exc)
            return True
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._running[job.id] = task
        task.add_done_callback(functools.partial(self._ended, job.id))
        return True

    def _ended(self, job_id: str, _task: asyncio.Task) -> None:
        self._running.pop(job_id, None)
        self._wake.set()  # a slot is free

    async def _run(self, job: Job) -> None:
        try:
            await self.handlers[job.kind](job)
        except asyncio.CancelledError:
            raise  # canceled, or handed back by stop()
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            await self._finish(job, "failed", f"{type(exc).__name__}: {exc}"[:1000])
            return
        await self._finish(job, "done", None)

    async def _finish(self, job: Job, state: str, error: str | None) -> None:
        try:
            await self.pool.execute(
                "UPDATE jobs SET state = $3, error = $4, updated_at = $5 WHERE id = $1 AND holder = $2 "
                "AND state = 'running'",
                job.id,
                self.holder,
                state,
                error,
                _now(),
            )
        except Exception as exc:  # its lease runs out and another runner finds it done or redoes it
            log.warning("job %s: marking it %s failed: %s", job.id, state, exc)

    async def _heartbeat(self) -> None:
        """Renew the leases of the jobs held; stop those no longer ours (canceled), and
        all of them when renewing has failed for two thirds of a lease."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.lease / 3)
            held = list(self._running)
            if not held:
                renewed = time.monotonic()
                continue
            try:
                rows = await asyncio.wait_for(  # a renewal that hangs is one that failed
                    self.pool.fetch(
                        "UPDATE jobs SET due_at = $3 WHERE id = ANY($1::text[]) AND holder = $2 "
                        "AND state = 'running' RETURNING id",
                        held,
                        self.holder,
                        _now() + int(self.lease * 1000),
                    ),
                    self.lease / 3,
                )
            except Exception as exc:
                log.warning("job queue: renewing leases failed: %s", exc)
                if time.monotonic() - renewed >= self.lease * 2 / 3:
                    log.warning("job queue: the leases are running out: stopping the %d jobs held", len(held))
                    for holding in list(self._running.values()):
                        holding.cancel()
                continue
            renewed = time.monotonic()
            kept = {r["id"] for r in rows}
            for job_id in held:
                if job_id not in kept and (task := self._running.get(job_id)) is not None:
                    log.info("job %s is no longer held here (canceled): stopping it", job_id)
                    task.cancel()


class Every:
    """`work` every `seconds` in this process until stopped (the task schedules, the
    retention policies): a pass that fails (the database away) is logged, and the next
    one tries again."""

    def __init__(self, what: str, seconds: float, work: Callable[[], Awaitable[Any]]) -> None:
        self.what, self.seconds, self.work = what, seconds, work
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"botkit-{self.what}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.work()
            except Exception as exc:
                log.warning("%s: a pass failed: %s", self.what, exc)
            await asyncio.sleep(self.seconds)
