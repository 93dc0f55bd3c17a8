"""A child's limits hold under concurrency (issue 15, finding 2): bursts of concurrent
creates never make more than the limit allows, and a limited child cannot escape its
limits through sub-accounts of its own."""

from __future__ import annotations

import asyncio

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from botkit.testing import assert_error

# What a burst creates, the limit that binds it, and how to count what was made.
KINDS = {
    "bot": ({"bots": None}, "bot/create", lambda parents: {}, "bot/list"),
    "dataset": ({"database": {"datasets": None}}, "dataset/create", lambda parents: {}, "dataset/list"),
    "record": (
        {"database": {"records": None}},
        "dataset/{dataset}/record/create",
        lambda parents: {"text": "a record"},
        "dataset/{dataset}/record/list",
    ),
    "conversation": ({"conversations": None}, "conversation/create", lambda parents: {}, "conversation/list"),
    "message": (
        {"messages": None},
        "conversation/{conversation}/message/create",
        lambda parents: {"type": "user", "text": "hi"},
        "conversation/{conversation}/message/list",
    ),
    "bot session": ({"conversations": None}, "bot/{bot}/session/create", lambda parents: {}, "conversation/list"),
}


def _limits(kind: str, value: int) -> dict:
    template = KINDS[kind][0]
    if "database" in template:
        return {"database": {next(iter(template["database"])): value}}
    return {next(iter(template)): value}


async def _burst(base: str, headers: dict, path: str, body: dict, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as c:
        return await asyncio.gather(*(c.post(path, json=body) for _ in range(n)))


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), limit=st.integers(1, 6), burst=st.integers(8, 40))
def test_concurrent_creates_never_pass_the_limit(api, kind, limit, burst):
    # the parents are made first, as the parent account (a child's limit counts the child's rows)
    child = api.post("partner/user/create", json={"limits": _limits(kind, limit)}).json()["id"]
    as_child = {"Authorization": f"Bearer {api.token}", "X-RunAs-UserId": child}
    with httpx.Client(base_url=str(api.base_url), headers=as_child, timeout=30) as c:
        parents = {}
        if "{dataset}" in KINDS[kind][1]:
            parents["dataset"] = c.post("dataset/create", json={}).json()["id"]
        if "{bot}" in KINDS[kind][1]:
            parents["bot"] = c.post("bot/create", json={}).json()["id"]
        if "{conversation}" in KINDS[kind][1]:
            parents["conversation"] = c.post("conversation/create", json={}).json()["id"]
        _, path, body, list_path = KINDS[kind]
        answers = asyncio.run(_burst(str(api.base_url), as_child, path.format(**parents), body(parents), burst))
        made = [r for r in answers if r.status_code == 200]
        for r in answers:
            if r.status_code != 200:
                assert_error(r, 429, "LIMITS_REACHED")
        listed = c.get(list_path.format(**parents), params={"take": 100}).json()["items"]
    # exactly the limit: never more, and the refusals are not spurious
    assert len(made) == limit, (kind, limit, burst, len(made))
    assert len(listed) == limit


def test_a_limited_child_cannot_make_sub_accounts(api, make_api):
    limited = api.post("partner/user/create", json={"limits": {"bots": 2}}).json()["id"]
    token = api.post(f"partner/user/{limited}/token/create", json={}).json()["token"]
    with httpx.Client(base_url=str(api.base_url), headers={"Authorization": f"Bearer {token}"}) as own:
        error = assert_error(own.post("partner/user/create", json={}), 401, "NOT_AUTHORIZED")
        assert "limits" in error["message"]
        assert own.get("partner/user/list").json()["items"] == []
    # an unlimited child may have children; then it cannot be given limits (it would escape them)
    free = api.post("partner/user/create", json={}).json()["id"]
    token = api.post(f"partner/user/{free}/token/create", json={}).json()["token"]
    with httpx.Client(base_url=str(api.base_url), headers={"Authorization": f"Bearer {token}"}) as own:
        assert own.post("partner/user/create", json={}).status_code == 200
    assert_error(api.post(f"partner/user/{free}/update", json={"limits": {"bots": 2}}), 409, "CONFLICT")
    assert api.post(f"partner/user/{free}/update", json={"name": "still free"}).status_code == 200
    # limits on a child without children, and another account's child is not found
    assert api.post(f"partner/user/{limited}/update", json={"limits": {"bots": 3}}).status_code == 200
    assert_error(make_api().post(f"partner/user/{limited}/update", json={"limits": {"bots": 9}}), 404, "NOT_FOUND")
