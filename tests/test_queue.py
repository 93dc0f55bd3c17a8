"""The job queue that runs task executions (issue 13), under random interleavings of
enqueue, cancel and runner death, on a real PostgreSQL: a job never runs in two
runners at once, and none is left queued or running for ever (each ends done,
canceled, or failed after MAX_ATTEMPTS claims)."""

from __future__ import annotations

import asyncio
import itertools

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botkit.actions.ids import new_id
from botkit.store import queue
from botkit.store.pool import Pool
from botkit.testing import new_account

LEASE = 0.6  # seconds; renewed every 0.2 s
KIND = "test.work"
_examples = itertools.count()

Step = st.one_of(
    st.tuples(st.just("enqueue"), st.integers(0, 7), st.sampled_from([0.05, 0.2, 1.0])),  # work longer than a lease too
    st.tuples(st.just("cancel"), st.integers(0, 7), st.just(0.0)),
    st.tuples(st.just("kill"), st.integers(0, 2), st.just(0.0)),
    st.tuples(st.just("wait"), st.integers(0, 0), st.sampled_from([0.05, 0.3, 0.8])),
)


def crash(runner: queue.Runner) -> None:
    """The runner's process died: what it holds stops at once, nothing is handed back,
    its leases are no longer renewed."""
    runner._stopping = True
    for task in (runner._loop_task, runner._beat_task, *runner._running.values()):
        if task is not None:
            task.cancel()


async def scenario(dsn: str, account_id: str, steps: list[tuple[str, int, float]]) -> tuple[list, int]:
    example = next(_examples)
    pool = await Pool(dsn, 6).open()
    running: dict[str, str] = {}  # job id -> the holder running it now
    twice: list[tuple[str, str, str]] = []

    async def work(job: queue.Job) -> None:
        if job.id in running:
            twice.append((job.id, running[job.id], job.holder))
        running[job.id] = job.holder
        try:
            await asyncio.sleep(job.payload["seconds"])
        finally:
            if running.get(job.id) == job.holder:
                del running[job.id]

    def runner() -> queue.Runner:
        return queue.Runner(pool, {KIND: work}, concurrency=2, lease=LEASE, poll=0.05)

    runners = [runner() for _ in range(3)]
    for r in runners:
        await r.start()
    jobs: dict[int, str] = {}
    try:
        for action, n, value in steps:
            if action == "enqueue":
                async with pool.connection() as conn:
                    jobs[n], _ = await queue.enqueue(
                        conn, new_id(), account_id, KIND, {"seconds": value}, key=f"{example}-{n}"
                    )
                for r in runners:
                    r.kick()
            elif action == "cancel" and n in jobs:
                async with pool.connection() as conn:
                    await queue.cancel(conn, account_id, jobs[n])
            elif action == "kill":
                crash(runners[n])
                runners[n] = runner()  # a new process takes its place
                await runners[n].start()
            elif action == "wait":
                await asyncio.sleep(value)
        # every job ends: done, canceled, or given up after MAX_ATTEMPTS claims (bounded)
        bound = asyncio.get_running_loop().time() + queue.MAX_ATTEMPTS * (LEASE + 1.0) + 5
        left = -1
        while asyncio.get_running_loop().time() < bound:
            left = await pool.fetchval(
                "SELECT count(*) FROM jobs WHERE id = ANY($1::text[]) AND state IN ('queued', 'running')",
                list(jobs.values()),
            )
            if left == 0 and not running:
                break
            await asyncio.sleep(0.05)
        return twice, left
    finally:
        for r in runners:
            await r.stop(timeout=1)
        await pool.close()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(Step, min_size=3, max_size=14))
def test_no_job_runs_twice_at_once_or_for_ever(database, steps):
    account_id, _ = asyncio.run(new_account(database, None, None))
    twice, left = asyncio.run(scenario(database, account_id, steps))
    assert twice == [], f"a job ran in two runners at once: {twice}"
    assert left == 0, "a job was left queued or running"


def test_a_runner_that_cannot_renew_stops_its_jobs_before_the_lease_runs_out(database):
    """Cut off from the database (here: its connections killed and no new ones), a
    runner stops what it holds within two thirds of a lease, before another may take
    the job over."""

    async def go() -> tuple[float, float]:
        account_id, _ = await new_account(database, None, None)
        pool = await Pool(database, 2).open()
        started, stopped = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        times: dict[str, float] = {}

        async def work(job: queue.Job) -> None:
            started.set()
            try:
                await asyncio.sleep(30)
            finally:
                times["stopped"] = loop.time()
                stopped.set()

        r = queue.Runner(pool, {KIND: work}, concurrency=1, lease=LEASE * 2, poll=0.05)
        await r.start()
        async with pool.connection() as conn:
            await queue.enqueue(conn, new_id(), account_id, KIND, {})
        r.kick()
        await asyncio.wait_for(started.wait(), 10)
        claimed = loop.time()

        async def unreachable(*args, **kwargs):
            raise asyncpg.exceptions.ConnectionDoesNotExistError("the database is away")

        pool.fetch = unreachable  # type: ignore[method-assign]
        await asyncio.wait_for(stopped.wait(), LEASE * 2 * 3)
        crash(r)
        await pool.close()
        return claimed, times["stopped"]

    claimed, stopped = asyncio.run(go())
    assert stopped - claimed < LEASE * 2, "the job ran on past its lease"
