"""Background completions (conversation/dispatch, conversation/{id}/dispatch) on the
PostgreSQL job queue: their events on a channel, what they store, deduplication,
bad input, session tokens, and a runner that dies mid-job."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import httpx
import pytest

from botkit.testing import Reply, assert_error, events, new_account, start_app

STEPS = ("completeBegin", "completeEnd")


def dispatched(base_url: str, authorization: str, channel: str, timeout: float = 20) -> list[dict]:
    """The events a dispatch published on its channel, up to its result or error."""
    with (
        httpx.Client(base_url=base_url + "/v1/", headers={"Authorization": authorization}) as c,
        c.stream("POST", f"channel/{channel}/subscribe", json={"historyLength": 1000}, timeout=timeout) as r,
    ):
        assert r.status_code == 200, r.read()
        seen: list[dict] = []
        for line in r.iter_lines():
            event = json.loads(line)
            if event["type"] == "message":
                seen.append(event["data"])
                if event["data"]["type"] in ("result", "error"):
                    return seen
    raise AssertionError(f"the dispatch did not finish: {seen}")


def test_a_dispatch_publishes_what_a_streamed_complete_writes(api, models, server):
    body = {"model": "fake-model", "messages": [{"type": "user", "text": "Say hello"}]}
    streamed = events(api.post("conversation/complete", json=body, headers={"Accept": "application/jsonl"}))
    answer = api.post("conversation/dispatch", json=body)
    assert answer.status_code == 200, answer.text
    channel = answer.json()["channelId"]
    assert set(answer.json()) == {"channelId"}
    published = dispatched(server.url, api.headers["authorization"], channel)
    assert [e["type"] for e in published] == [e["type"] for e in streamed]
    assert published[-1] == streamed[-1]  # the same result: text, usage, end
    assert [e for e in published if e["type"] in STEPS] == [e for e in streamed if e["type"] in STEPS]
    usage = api.get("usage/list", params={"take": 10}).json()["items"]
    assert len(usage) == 2  # one per completion, the dispatched one too


def test_a_conversation_dispatch_stores_the_messages_once(api, models, server):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    channel = f"{conversation}:first-dispatch"
    answer = api.post(f"conversation/{conversation}/dispatch", json={"text": "hi", "channelId": channel})
    assert answer.json() == {"channelId": channel}
    published = dispatched(server.url, api.headers["authorization"], channel)
    assert published[-1]["type"] == "result" and published[-1]["data"]["text"] == "Hello, world!"
    messages = api.get(f"conversation/{conversation}/message/list", params={"order": "asc"}).json()["items"]
    assert [(m["type"], m["text"]) for m in messages] == [("user", "hi"), ("bot", "Hello, world!")]
    assert published[-1]["data"]["id"] == messages[-1]["id"]
    # the same channelId again is the same dispatch: nothing is added or run again
    again = api.post(f"conversation/{conversation}/dispatch", json={"text": "hi", "channelId": channel})
    assert again.json() == {"channelId": channel}
    time.sleep(0.5)
    assert len(api.get(f"conversation/{conversation}/message/list").json()["items"]) == 2
    # without a channelId: a fresh one, named after the conversation
    other = api.post(f"conversation/{conversation}/dispatch", json={}).json()["channelId"]
    assert other.startswith(conversation + ":") and other != channel
    assert dispatched(server.url, api.headers["authorization"], other)[-1]["type"] == "result"


def test_a_dispatch_that_fails_publishes_an_error_and_stores_no_bot_message(api, models, server):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    models.push(Reply(tokens=["a", "b", "c"], break_after=1))
    channel = api.post(f"conversation/{conversation}/dispatch", json={"text": "break"}).json()["channelId"]
    published = dispatched(server.url, api.headers["authorization"], channel)
    assert published[-1]["type"] == "error" and published[-1]["data"]["code"] == "MODEL_ERROR"
    messages = api.get(f"conversation/{conversation}/message/list").json()["items"]
    assert [m["type"] for m in messages] == ["user"]
    assert api.get("event/log/list", params={"type": "completion.fail"}).json()["items"]


@pytest.mark.parametrize(
    "path, body, status, code",
    [
        ("conversation/dispatch", {"messages": []}, 400, "BAD_REQUEST"),
        ("conversation/dispatch", {"messages": [{"type": "user", "text": "x"}], "botId": "0" * 26}, 404, "NOT_FOUND"),
        (
            "conversation/dispatch",
            {"messages": [{"type": "user", "text": "x"}], "channelId": "short"},
            400,
            "BAD_REQUEST",
        ),
        (
            "conversation/dispatch",
            {"messages": [{"type": "user", "text": "x"}], "functions": [{"name": "1x", "description": ""}]},
            400,
            "BAD_REQUEST",
        ),
        ("conversation/" + "0" * 26 + "/dispatch", {"text": "x"}, 404, "NOT_FOUND"),
    ],
)
def test_dispatch_refuses_bad_requests_at_once(api, path, body, status, code):
    assert_error(api.post(path, json=body), status, code)
    assert api.get("event/log/list").json()["items"] == []


def test_a_session_token_uses_its_conversations_channels_only(api, models, server):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    session = api.post(f"conversation/{conversation}/session/create", json={}).json()["token"]
    with httpx.Client(base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {session}"}) as widget:
        channel = widget.post(f"conversation/{conversation}/dispatch", json={"text": "hi"}).json()["channelId"]
        assert channel.startswith(conversation + ":")
        assert dispatched(server.url, f"Bearer {session}", channel)[-1]["type"] == "result"
        assert widget.post(f"channel/{conversation}:mine/publish", json={"message": {"a": 1}}).status_code == 200
        for foreign in ("someone-elses-channel", f"{conversation}x:abc", f"{conversation}:"):
            assert_error(widget.post(f"channel/{foreign}/publish", json={"message": {}}), 401, "NOT_AUTHORIZED")
        assert_error(
            widget.post(f"conversation/{conversation}/dispatch", json={"channelId": "another-channel-id"}),
            400,
            "BAD_REQUEST",
        )


def test_a_dispatch_held_by_a_dead_runner_is_taken_over(fresh_database):
    """A runner that dies stops renewing its lease; another runner takes the job when
    the lease runs out and runs it from the start. After MAX_ATTEMPTS it is given up."""
    dsn = fresh_database()
    quiet = start_app(dsn, rate_limit=0, rate_limit_account=0, job_concurrency=0)  # queues, runs nothing
    _, secret = asyncio.run(new_account(dsn, None, None))
    auth = f"Bearer {secret}"
    body = {"messages": [{"type": "user", "text": "hello"}]}
    try:
        with httpx.Client(base_url=quiet.url + "/v1/", headers={"Authorization": auth}) as c:
            taken = c.post("conversation/dispatch", json=body).json()["channelId"]
            lost = c.post("conversation/dispatch", json=body).json()["channelId"]

        async def held_by_the_dead() -> None:
            conn = await asyncpg.connect(dsn)
            try:  # as a runner that claimed them and died: leases running out in a second
                due = int(time.time() * 1000) + 1000
                await conn.execute(
                    "UPDATE jobs SET state = 'running', holder = 'dead', attempts = 1, due_at = $2 WHERE key = $1",
                    taken,
                    due,
                )
                await conn.execute(
                    "UPDATE jobs SET state = 'running', holder = 'dead', attempts = 3, due_at = $2 WHERE key = $1",
                    lost,
                    due,
                )
            finally:
                await conn.close()

        asyncio.run(held_by_the_dead())
        runner = start_app(dsn, rate_limit=0, rate_limit_account=0)
        try:
            published = dispatched(runner.url, auth, taken)
            assert published[-1]["type"] == "result"
            given_up = dispatched(runner.url, auth, lost)
            assert [e["type"] for e in given_up] == ["error"]

            async def states() -> dict:
                conn = await asyncpg.connect(dsn)
                try:
                    rows = await conn.fetch("SELECT key, state, attempts FROM jobs")
                    return {r["key"]: (r["state"], r["attempts"]) for r in rows}
                finally:
                    await conn.close()

            assert asyncio.run(states()) == {taken: ("done", 2), lost: ("failed", 4)}
        finally:
            runner.stop()
    finally:
        quiet.stop()


def test_botkit_worker_runs_the_jobs_api_processes_queue(fresh_database, tmp_path):
    """Scale-out: API processes that run no jobs (BOTKIT_JOB_CONCURRENCY=0) and a
    `botkit worker` process on the same DATABASE_URL, which stops on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    dsn = fresh_database()
    api_only = start_app(dsn, rate_limit=0, rate_limit_account=0, job_concurrency=0)
    _, secret = asyncio.run(new_account(dsn, None, None))
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    env.update(DATABASE_URL=dsn, BOTKIT_DATA_DIR=str(tmp_path))
    worker = subprocess.Popen(
        [sys.executable, "-m", "botkit.cli", "worker", "--concurrency", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=api_only.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}) as c:
            body = {"messages": [{"type": "user", "text": "hello"}]}
            channel = c.post("conversation/dispatch", json=body).json()["channelId"]
        published = dispatched(api_only.url, f"Bearer {secret}", channel, timeout=60)
        assert published[-1]["type"] == "result"
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, out
        assert "running background jobs, 2 at once" in out
    finally:
        if worker.poll() is None:
            worker.kill()
        api_only.stop()


def test_an_expired_session_token_cannot_subscribe(api, server):
    conversation = api.post("conversation/create", json={}).json()["id"]
    session = api.post(f"conversation/{conversation}/session/create", json={"durationInSeconds": 1}).json()["token"]
    with httpx.Client(base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {session}"}) as widget:
        channel = f"{conversation}:results"
        assert widget.post(f"channel/{channel}/publish", json={"message": {"ok": 1}}).status_code == 200
        time.sleep(2.1)  # the token's exp (whole seconds) has passed
        assert_error(widget.post(f"channel/{channel}/subscribe", json={}), 401, "NOT_AUTHENTICATED")
