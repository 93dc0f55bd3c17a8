"""Idempotency-Key on POSTs (issue 15, finding 6): a retry with the same key and body
gets the first answer and makes nothing new; another body is 409; a retry while the
first still runs is 409; keys are per account."""

from __future__ import annotations

import asyncio
import threading

import asyncpg
import pytest

from botkit.testing import MINIMAL, assert_error, prefix_for, tables


def _count(api, prefix: str) -> int:
    return len(api.get(f"{prefix}/list", params={"take": 100}).json()["items"])


@pytest.mark.parametrize("table", tables(), ids=lambda t: t.name)
def test_every_create_retried_with_one_key_makes_one_resource(api, table):
    prefix = prefix_for(api, table)
    body = MINIMAL.get(table.noun, {})
    before = _count(api, prefix)
    key = {"Idempotency-Key": f"create-{table.name}"}
    first = api.post(f"{prefix}/create", json=body, headers=key)
    assert first.status_code == 200, first.text
    again = [api.post(f"{prefix}/create", json=body, headers=key) for _ in range(3)]
    assert [r.json() for r in again] == [first.json()] * 3
    assert all(r.headers["idempotent-replayed"] == "true" for r in again)
    assert "idempotent-replayed" not in first.headers
    assert _count(api, prefix) == before + 1
    # the same key with another body: refused, nothing made
    other = {**body, "meta": {"different": True}}
    assert_error(api.post(f"{prefix}/create", json=other, headers=key), 409, "CONFLICT")
    assert _count(api, prefix) == before + 1


def test_keys_are_per_account_and_failures_free_them(api, other):
    key = {"Idempotency-Key": "shared-name"}
    mine = api.post("bot/create", json={"name": "mine"}, headers=key).json()["id"]
    theirs = other.post("bot/create", json={"name": "mine"}, headers=key).json()["id"]
    assert mine != theirs and other.get(f"bot/{theirs}/fetch").json()["name"] == "mine"
    # a failed request keeps nothing: the retry runs
    failing = {"Idempotency-Key": "fails-first"}
    assert_error(api.post("bot/create", json={"datasetId": "nope"}, headers=failing), 404, "NOT_FOUND")
    dataset = api.post("dataset/create", json={}).json()["id"]
    assert_error(api.post("bot/create", json={"datasetId": "nope"}, headers=failing), 404, "NOT_FOUND")
    assert (
        api.post("bot/create", json={"datasetId": dataset}, headers={"Idempotency-Key": "x" * 255}).status_code == 200
    )
    for bad in ("", "x" * 256, "é"):
        assert_error(api.post("bot/create", json={}, headers={"Idempotency-Key": bad.encode()}), 400, "BAD_REQUEST")
    # an update is a POST that changes state: replayed as well
    update = {"Idempotency-Key": "rename"}
    assert api.post(f"bot/{mine}/update", json={"name": "renamed"}, headers=update).status_code == 200
    assert api.post(f"bot/{mine}/update", json={"name": "renamed"}, headers=update).headers["idempotent-replayed"]


def test_a_retry_while_the_first_runs_is_a_conflict(api, database):
    """The first request waits on a lock held here; its retry is refused meanwhile, and
    answered with the first's answer afterwards."""
    key = {"Idempotency-Key": "slow-first"}
    answers = {}
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        async def run():
            conn = await asyncpg.connect(database)
            await conn.execute("BEGIN; LOCK TABLE bots IN ACCESS EXCLUSIVE MODE")
            locked.set()
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 30)
            await conn.execute("ROLLBACK")
            await conn.close()

        asyncio.run(run())

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(30)
    first = threading.Thread(target=lambda: answers.setdefault("first", api.post("bot/create", json={}, headers=key)))
    first.start()
    try:

        async def claimed() -> bool:  # the first request has taken the key (it then waits on the lock)
            conn = await asyncpg.connect(database)
            try:
                for _ in range(300):
                    if await conn.fetchval("SELECT 1 FROM idempotency_keys WHERE key = 'slow-first'"):
                        return True
                    await asyncio.sleep(0.05)
                return False
            finally:
                await conn.close()

        assert asyncio.run(claimed())
        retry = api.post("bot/create", json={}, headers=key)
        assert_error(retry, 409, "CONFLICT")
        assert "still running" in retry.json()["message"]
    finally:
        release.set()
        holder.join(30)
        first.join(30)
    assert answers["first"].status_code == 200
    replay = api.post("bot/create", json={}, headers=key)
    assert replay.json() == answers["first"].json()
