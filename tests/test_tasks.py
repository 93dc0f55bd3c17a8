"""Task executions (issue 13): trigger queues one on the job queue and answers at once;
an execution runs the task's bot iteration after iteration until the model exits or
answers, within maxIterations and maxTime; cancel stops it; sessions are reused for
sessionDuration; the workflow events reach `task/{id}/subscribe`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botkit.testing import Reply, assert_error, new_account, registry_for, start_app, use_models


def wait_execution(api, task_id: str, timeout: float = 30, done=lambda e: e["outcome"] != "pending") -> dict:
    """The task's newest execution once `done` holds for it."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        items = api.get(f"task/{task_id}/execution/list", params={"order": "desc", "take": 1}).json()["items"]
        if items and done(items[0]):
            return items[0]
        seen = items
        time.sleep(0.1)
    raise AssertionError(f"the execution did not get there: {seen}")


def bot(api, **fields) -> str:
    return api.post("bot/create", json={"model": "fake-model", **fields}).json()["id"]


def messages(api, conversation_id: str) -> list[tuple[str, str]]:
    items = api.get(f"conversation/{conversation_id}/message/list", params={"order": "asc", "take": 100}).json()
    return [(m["type"], m["text"]) for m in items["items"]]


def test_a_triggered_task_runs_on_the_built_in_model_to_success(api):
    task = api.post("task/create", json={"name": "hello", "description": "Say hello to the team."}).json()["id"]
    answer = api.post(f"task/{task}/trigger", json={})
    assert answer.status_code == 200 and answer.json() == {"id": task}
    execution = wait_execution(api, task)
    assert execution["status"] == "idle" and execution["outcome"] == "success", execution
    assert execution["summary"] and execution["taskId"] == task and execution["name"] == "hello"
    assert execution["completedAt"].endswith("Z") or "+" in execution["completedAt"]  # date-time, as the reference
    said = messages(api, execution["conversationId"])
    assert said[0] == ("user", "Carry out this task:\n\nSay hello to the team.") and said[-1][0] == "bot"
    assert said[-1][1] == execution["summary"]
    fetched = api.get(f"task/{task}/fetch").json()
    assert fetched["status"] == "idle" and fetched["outcome"] == "success" and fetched["lastRunAt"] > 0
    assert api.get("usage/list").json()["items"], "the execution's completion records its usage"
    types = [e["type"] for e in api.get("event/log/list", params={"take": 50}).json()["items"]]
    assert "task.trigger" in types and "task.execution.finish" in types


def test_the_model_plans_and_exits_and_its_calls_are_the_task_events(api, models, server):
    task = api.post("task/create", json={"description": "Count the orders", "botId": bot(api)}).json()["id"]
    models.push(
        Reply(tokens=[], tool_calls=[("plan", '{"steps": ["read", "count"]}')]),
        Reply(tokens=[], tool_calls=[("exit", '{"code": 0, "message": "42 orders"}')]),
        Reply(tokens=["Done: 42 orders."]),
    )
    api.post(f"task/{task}/trigger", json={})
    execution = wait_execution(api, task)
    assert (execution["outcome"], execution["summary"]) == ("success", "42 orders")
    said = messages(api, execution["conversationId"])
    assert [t for t, _ in said] == ["user", "activity", "activity", "bot"]
    # the model saw the execution's functions and the guidelines
    first = models.bodies[0]
    assert {t["function"]["name"] for t in first["tools"]} >= {"plan", "progress", "exit"}
    assert "Task execution guidelines" in first["messages"][0]["content"]
    with (
        httpx.Client(base_url=server.url + "/v1/", headers={"Authorization": api.headers["authorization"]}) as c,
        c.stream("POST", f"task/{task}/subscribe", json={"historyLength": 10}, timeout=10) as r,
    ):
        replayed = []
        for line in r.iter_lines():
            replayed.append(json.loads(line))
            if len(replayed) == 4:
                break
    assert [e["type"] for e in replayed] == ["operationBegin", "operationEnd"] * 2
    assert [e["data"]["action"]["name"] for e in replayed[::2]] == ["plan", "exit"]
    assert replayed[0]["data"]["action"]["input"] == {"steps": ["read", "count"]}


def test_an_exit_with_a_non_zero_code_is_a_failure(api, models):
    task = api.post("task/create", json={"description": "Find the file", "botId": bot(api)}).json()["id"]
    models.push(Reply(tokens=[], tool_calls=[("exit", '{"code": 2, "message": "no such file"}')]), Reply(tokens=[]))
    api.post(f"task/{task}/trigger", json={})
    execution = wait_execution(api, task)
    assert (execution["outcome"], execution["summary"]) == ("failure", "no such file")
    assert api.get(f"task/{task}/fetch").json()["outcome"] == "failure"


def test_a_runaway_model_stops_at_max_iterations(api, models):
    task = api.post("task/create", json={"description": "Loop", "botId": bot(api), "maxIterations": 2}).json()["id"]
    models.default = Reply(tokens=[], tool_calls=[("progress", '{"current": "still going"}')])
    api.post(f"task/{task}/trigger", json={})
    execution = wait_execution(api, task)
    assert execution["outcome"] == "failure" and "within 2 iterations" in execution["summary"]
    said = messages(api, execution["conversationId"])
    assert [t for t, text in said if t == "user"] == ["user", "user"]  # the task, then one "continue"
    assert said[1][1] != said[0][1]


def test_max_calls_bounds_the_tool_calls_across_iterations(api, models):
    body = {"description": "Loop", "botId": bot(api), "maxCalls": 3, "maxIterations": 10}
    task = api.post("task/create", json=body).json()["id"]
    assert api.get(f"task/{task}/fetch").json()["maxCalls"] == 3
    models.default = Reply(tokens=[], tool_calls=[("progress", '{"current": "a"}'), ("progress", '{"current": "b"}')])
    api.post(f"task/{task}/trigger", json={})
    execution = wait_execution(api, task)
    assert execution["outcome"] == "failure" and "maxCalls reached: 3" in execution["summary"], execution
    said = messages(api, execution["conversationId"])
    assert [t for t, _ in said].count("activity") == 3  # the third call was the last one allowed


def test_a_childs_limits_hold_for_its_task_executions(api, server, models):
    child = api.post("partner/user/create", json={"limits": {"messages": 2}}).json()["id"]
    headers = {"X-RunAs-User-Id": child}
    own_bot = api.post("bot/create", json={"model": "fake-model"}, headers=headers).json()["id"]
    task = api.post("task/create", json={"description": "Loop", "botId": own_bot}, headers=headers).json()["id"]
    models.default = Reply(tokens=[], tool_calls=[("progress", '{"current": "a"}')])
    api.post(f"task/{task}/trigger", json={}, headers=headers)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = api.get(f"task/{task}/execution/list", headers=headers).json()["items"]
        if items and items[0]["outcome"] != "pending":
            break
        time.sleep(0.1)
    execution = items[0]
    assert execution["outcome"] == "failure" and "LIMITS_REACHED" in execution["summary"], execution


def test_max_time_ends_a_slow_execution(api, models):
    task = api.post("task/create", json={"description": "Slow", "botId": bot(api), "maxTime": 1000}).json()["id"]
    models.default = Reply(tokens=["a"] * 20, delay=0.5)
    api.post(f"task/{task}/trigger", json={})
    execution = wait_execution(api, task, timeout=20)
    assert execution["outcome"] == "failure" and "maxTime" in execution["summary"]
    assert messages(api, execution["conversationId"]) == []  # the unfinished iteration stored nothing


def test_cancel_stops_a_running_execution_within_a_second_or_two(api, models):
    task = api.post("task/create", json={"description": "Slow", "botId": bot(api)}).json()["id"]
    models.default = Reply(tokens=["a"] * 100, delay=0.2)
    api.post(f"task/{task}/trigger", json={})
    running = wait_execution(api, task, done=lambda e: e["status"] == "running")
    while not models.seen:
        time.sleep(0.05)
    t0 = time.monotonic()
    answer = api.post(f"task/{task}/execution/{running['id']}/cancel", json={})
    assert answer.json() == {"id": running["id"], "taskId": task}
    execution = wait_execution(api, task, done=lambda e: e["status"] == "canceled")
    assert execution["outcome"] == "failure" and execution["completedAt"]
    while models.seen[-1].ended is None and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert models.seen[-1].abandoned, "the model call was stopped, not left to run"
    assert (
        api.get(f"task/{task}/execution/list", params={"status": "canceled"}).json()["items"][0]["id"] == running["id"]
    )
    # canceling again (or a finished one) is not an error: it stays as it is
    assert api.post(f"task/{task}/execution/{running['id']}/cancel", json={}).status_code == 200


def test_task_cancel_cancels_its_queued_executions(api, models):
    task = api.post("task/create", json={"description": "Slow", "botId": bot(api)}).json()["id"]
    models.default = Reply(tokens=["a"] * 100, delay=0.2)
    for _ in range(2):
        api.post(f"task/{task}/trigger", json={})
    assert api.post(f"task/{task}/cancel", json={}).json() == {"id": task}
    items = api.get(f"task/{task}/execution/list").json()["items"]
    assert len(items) == 2 and {e["status"] for e in items} == {"canceled"}


def test_executions_share_a_conversation_within_the_session_duration(api):
    session = api.post("task/create", json={"description": "Hi", "sessionDuration": 600_000}).json()["id"]
    fresh = api.post("task/create", json={"description": "Hi"}).json()["id"]
    for task in (session, fresh):
        conversations = []
        for _ in range(2):
            api.post(f"task/{task}/trigger", json={})
            conversations.append(wait_execution(api, task, done=lambda e: "completedAt" in e)["conversationId"])
            time.sleep(0.01)
        assert (conversations[0] == conversations[1]) is (task == session)
    assert len(api.get(f"task/{session}/execution/list").json()["items"]) == 2


def test_unknown_and_foreign_tasks_and_executions_are_404(api, other):
    assert_error(api.post("task/nope/trigger", json={}), 404, "NOT_FOUND")
    assert_error(api.get("task/nope/execution/list"), 404, "NOT_FOUND")
    task = api.post("task/create", json={"description": "x"}).json()["id"]
    assert_error(api.post(f"task/{task}/execution/nope/cancel", json={}), 404, "NOT_FOUND")
    assert_error(other.post(f"task/{task}/trigger", json={}), 404, "NOT_FOUND")
    assert_error(other.get(f"task/{task}/execution/list"), 404, "NOT_FOUND")
    assert api.get(f"task/{task}/execution/list").json()["items"] == []


def test_an_execution_held_by_a_dead_runner_is_resumed_or_given_up(fresh_database):
    """A runner that dies mid-execution stops renewing its lease: another takes the job
    over when the lease runs out and goes on from the iterations done; after
    MAX_ATTEMPTS claims the execution fails instead of running forever."""
    dsn = fresh_database()
    quiet = start_app(dsn, rate_limit=0, rate_limit_account=0, job_concurrency=0)  # queues, runs nothing
    _, secret = asyncio.run(new_account(dsn, None, None))
    try:
        with httpx.Client(base_url=quiet.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}) as c:
            resumed, lost = (c.post("task/create", json={"description": "Report"}).json()["id"] for _ in range(2))
            for task in (resumed, lost):
                c.post(f"task/{task}/trigger", json={})

        async def held_by_the_dead() -> None:
            conn = await asyncpg.connect(dsn)
            try:  # as a runner that claimed them, did one iteration and died: leases end in a second
                due = int(time.time() * 1000) + 1000
                for task, attempts in ((resumed, 1), (lost, 3)):
                    execution = await conn.fetchval(
                        "UPDATE task_executions SET status = 'running', iterations = 1 WHERE task_id = $1 RETURNING id",
                        task,
                    )
                    await conn.execute(
                        "UPDATE jobs SET state = 'running', holder = 'dead', attempts = $2, due_at = $3 WHERE key = $1",
                        execution,
                        attempts,
                        due,
                    )
            finally:
                await conn.close()

        asyncio.run(held_by_the_dead())
        runner = start_app(dsn, rate_limit=0, rate_limit_account=0)
        try:
            with httpx.Client(base_url=runner.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}) as c:
                api = SimpleNamespace(get=c.get)
                done = wait_execution(api, resumed, timeout=40)
                assert done["outcome"] == "success", done
                said = messages(api, done["conversationId"])
                assert said[0][0] == "user" and said[0][1].startswith("Continue with the task")  # iteration 2 on
                failed = wait_execution(api, lost, timeout=40)
                assert failed["outcome"] == "failure" and "given up" in failed["summary"]
        finally:
            runner.stop()
    finally:
        quiet.stop()


def test_a_schedule_gives_the_task_its_next_run_and_a_bad_one_is_a_400(api):
    before = int(time.time() * 1000)
    task = api.post(
        "task/create", json={"description": "Report", "schedule": "*/5 * * * *", "timezone": "Europe/Berlin"}
    ).json()["id"]
    upcoming = api.get(f"task/{task}/fetch").json()["nextRunAt"]
    assert before < upcoming <= before + 5 * 60_000 and upcoming % (5 * 60_000) == 0
    api.post(f"task/{task}/update", json={"schedule": "daily", "timezone": "Asia/Kolkata"})
    daily = api.get(f"task/{task}/fetch").json()["nextRunAt"]
    assert daily % 86_400_000 == (24 - 5.5) * 3_600_000  # midnight in Kolkata is 18:30 UTC
    api.post(f"task/{task}/update", json={"schedule": "never"})
    assert api.get(f"task/{task}/fetch").json().get("nextRunAt") is None
    assert api.get("task/list").json()["items"]  # unscheduled tasks list as before
    for bad in ({"schedule": "every tuesday"}, {"schedule": "61 * * * *"}, {"timezone": "Mars/Olympus"}):
        answer = api.post("task/create", json={"description": "x", **bad})
        assert_error(answer, 400, "BAD_REQUEST")
        assert next(iter(bad)) in answer.json()["message"]
        assert_error(api.post(f"task/{task}/update", json=bad), 400, "BAD_REQUEST")


def test_a_due_schedule_fires_once_however_many_processes_look(api, database, tmp_path):
    """Two processes' schedulers on one database (the session server and a second app):
    the due time fires one execution, and the task moves on to its next time."""
    second = start_app(database, data_dir=tmp_path, rate_limit=0, rate_limit_account=0)
    try:
        task = api.post("task/create", json={"description": "Nightly report", "schedule": "0 3 * * *"}).json()["id"]
        planned = api.get(f"task/{task}/fetch").json()["nextRunAt"]

        async def due_now() -> None:
            conn = await asyncpg.connect(database)
            try:
                await conn.execute("UPDATE tasks SET next_run_at = $2 WHERE id = $1", task, int(time.time() * 1000))
            finally:
                await conn.close()

        asyncio.run(due_now())
        execution = wait_execution(api, task, timeout=20)
        assert execution["outcome"] == "success", execution
        time.sleep(3 * 2.0)  # three more polls of both schedulers
        assert len(api.get(f"task/{task}/execution/list").json()["items"]) == 1
        assert api.get(f"task/{task}/fetch").json()["nextRunAt"] == planned
        events = api.get("event/log/list", params={"take": 50}).json()["items"]
        assert any(e["type"] == "task.trigger" and e["meta"].get("by") == "schedule" for e in events)
    finally:
        second.stop()


def test_a_worker_killed_mid_execution_is_finished_by_another(fresh_database, fake):
    """`botkit worker` processes on one database: kill -9 the one running an execution
    (mid model call) and the next takes the job over when its lease runs out (2 s here,
    BOTKIT_JOB_LEASE_SECONDS) and finishes it."""
    dsn = fresh_database()
    api_only = start_app(dsn, rate_limit=0, rate_limit_account=0, job_concurrency=0)
    use_models(api_only, registry_for(fake))
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "BOTKIT_JOB_LEASE_SECONDS": "2",
        "BOTKIT_MODEL_BASE_URL": fake.base_url,
        "BOTKIT_MODELS": "fake-model",
        "BOTKIT_LOG_LEVEL": "warning",
    }

    def worker() -> subprocess.Popen:
        command = [sys.executable, "-m", "botkit.cli", "worker", "--concurrency", "1"]
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    fake.reset()
    fake.default = Reply(tokens=["slow"] * 200, delay=0.1)  # 20 s: it is killed long before
    _, secret = asyncio.run(new_account(dsn, None, None))
    first = worker()
    second = None
    try:
        with httpx.Client(base_url=api_only.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}) as c:
            bot_id = c.post("bot/create", json={"model": "fake-model"}).json()["id"]
            task = c.post("task/create", json={"description": "Long report", "botId": bot_id}).json()["id"]
            c.post(f"task/{task}/trigger", json={})
            deadline = time.monotonic() + 30
            while not fake.seen and time.monotonic() < deadline:
                time.sleep(0.05)
            assert fake.seen, "the first worker never called the model"
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
            fake.default = Reply(tokens=["Report done."])
            second = worker()
            api = SimpleNamespace(get=c.get)
            done = wait_execution(api, task, timeout=40)
            assert (done["outcome"], done["summary"]) == ("success", "Report done."), done
            assert len(fake.seen) == 2 and fake.seen[0].abandoned  # the killed call, then the one that finished
            said = messages(api, done["conversationId"])
            assert [t for t, _ in said] == ["user", "bot"]  # the killed iteration stored nothing
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
        api_only.stop()
        fake.reset()


# --- random interleavings of trigger, cancel and worker death (hypothesis) ------------

LEASE = "1"  # seconds: the workers of the interleaving test take a dead one's job over fast


class Workers:
    """`botkit worker` processes on one database, killed (-9) and replaced at will."""

    def __init__(self, dsn: str, fake) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "BOTKIT_JOB_LEASE_SECONDS": LEASE,
            "BOTKIT_MODEL_BASE_URL": fake.base_url,
            "BOTKIT_MODELS": "fake-model",
            "BOTKIT_LOG_LEVEL": "warning",
        }
        self.procs = [self._start() for _ in range(2)]

    def _start(self) -> subprocess.Popen:
        command = [sys.executable, "-m", "botkit.cli", "worker", "--concurrency", "2"]
        return subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, which: int) -> None:
        victim = self.procs[which % len(self.procs)]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.procs[which % len(self.procs)] = self._start()

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(15)


@pytest.fixture(scope="module")
def interleaving(fresh_database, fake):
    dsn = fresh_database()
    api_only = start_app(dsn, rate_limit=0, rate_limit_account=0, rate_limit_messages=0, job_concurrency=0)
    use_models(api_only, registry_for(fake))
    _, secret = asyncio.run(new_account(dsn, None, None))
    workers = Workers(dsn, fake)
    client = httpx.Client(base_url=api_only.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    try:
        yield client, workers, fake
    finally:
        client.close()
        workers.stop()
        api_only.stop()
        fake.reset()


Step = st.one_of(
    st.just(("trigger", 0)),
    st.tuples(st.just("cancel"), st.integers(0, 5)),
    st.tuples(st.just("kill"), st.integers(0, 1)),
    st.tuples(st.just("wait"), st.sampled_from([1, 4])),  # tenths of a second
)
_examples = iter(range(10**6))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(Step, min_size=3, max_size=8))
def test_interleavings_never_run_an_execution_twice_at_once_or_for_ever(interleaving, steps):
    """Each trigger is a task of its own description, so the model's requests say whose
    execution they serve: two of one execution must never be in flight together, and
    every execution ends (success, canceled, or given up after its claims)."""
    c, workers, fake = interleaving
    fake.reset()
    fake.default = Reply(tokens=["working"] * 10, delay=0.05)  # half a second per iteration
    bot_id = c.post("bot/create", json={"model": "fake-model"}).json()["id"]
    example = next(_examples)
    started: list[tuple[str, str]] = []  # (task, description)
    for action, n in steps:
        if action == "trigger":
            description = f"interleaving {example}-{len(started)}."
            task = c.post("task/create", json={"description": description, "botId": bot_id}).json()["id"]
            assert c.post(f"task/{task}/trigger", json={}).status_code == 200
            started.append((task, description))
        elif action == "cancel" and started:
            task, _ = started[n % len(started)]
            items = c.get(f"task/{task}/execution/list").json()["items"]
            assert c.post(f"task/{task}/execution/{items[0]['id']}/cancel", json={}).status_code == 200
        elif action == "kill":
            workers.kill(n)
        elif action == "wait":
            time.sleep(n / 10)
    deadline = time.monotonic() + 40
    pending = list(started)
    while pending and time.monotonic() < deadline:
        pending = [
            (task, d)
            for task, d in pending
            if "completedAt" not in c.get(f"task/{task}/execution/list").json()["items"][0]
        ]
        time.sleep(0.1)
    assert not pending, f"executions still not ended: {pending}"
    for task, description in started:
        execution = c.get(f"task/{task}/execution/list").json()["items"][0]
        assert execution["status"] in ("idle", "canceled") and execution["outcome"] != "pending", execution
        calls = sorted(
            (s for s in fake.seen if any(description in str(m.get("content")) for m in s.body["messages"])),
            key=lambda s: s.started,
        )
        for earlier, later in zip(calls, calls[1:], strict=False):
            assert earlier.ended is not None and earlier.ended <= later.started + 0.05, (
                f"{description}: a model call began while another of the same execution was in flight"
            )
