"""The event log: what each change records, in the change's own transaction; list,
export and a live subscription (across processes too); never another account's
events, never a secret."""

from __future__ import annotations

import asyncio
import json
import threading

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botkit.testing import assert_error, new_account, start_app


def events(api, **query) -> list[dict]:
    response = api.get("event/log/list", params={"take": 100, **query})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def types(api, **query) -> list[str]:
    return [e["type"] for e in reversed(events(api, **query))]


class EventReader:
    """`event/log/subscribe` read in a thread until `until(items)` holds."""

    def __init__(self, base_url: str, authorization: str, until, history: int = 0) -> None:
        self.items: list[dict] = []
        self.lines: list[dict] = []
        self._args = (base_url, authorization, until, history)
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import httpx

        base_url, authorization, until, history = self._args
        with (
            httpx.Client(base_url=base_url + "/v1/", headers={"Authorization": authorization}) as c,
            c.stream("POST", "event/log/subscribe", json={"historyLength": history}, timeout=30) as r,
        ):
            assert r.status_code == 200
            self._open.set()
            for line in r.iter_lines():
                event = json.loads(line)
                self.lines.append(event)
                if event["type"] == "item":
                    self.items.append(event["data"])
                if until(self.items):
                    return

    def opened(self) -> bool:
        return self._open.wait(10)

    def join(self) -> None:
        self._thread.join(15)
        assert not self._thread.is_alive(), f"the subscription did not see it: {self.items}"


def test_crud_changes_are_recorded_with_their_ids(api, other):
    bot = api.post("bot/create", json={"name": "Ada", "meta": {"k": "v"}}).json()["id"]
    api.post(f"bot/{bot}/update", json={"name": "Ada 2", "$update": {"x": 1}})
    dataset = api.post("dataset/create", json={"name": "D"}).json()["id"]
    record = api.post(f"dataset/{dataset}/record/create", json={"text": "hello"}).json()["id"]
    api.post(f"dataset/{dataset}/record/{record}/delete", json={})
    api.post(f"bot/{bot}/delete", json={})
    assert types(api) == [
        "bot.create",
        "bot.update",
        "dataset.create",
        "record.create",
        "record.delete",
        "bot.delete",
    ]
    made, updated = events(api, type="bot.create") + events(api, type="bot.update")
    assert made["botId"] == bot and made["meta"] == {"botId": bot}
    assert updated["meta"] == {"botId": bot, "fields": ["name", "meta"]}
    (deleted,) = events(api, type="record.delete")
    assert (deleted["datasetId"], deleted["recordId"]) == (dataset, record)
    assert deleted["meta"] == {"recordId": record, "datasetId": dataset}
    # meta filters reach every id an event names; other accounts see nothing of it
    assert [e["type"] for e in events(api, **{"meta.recordId": record})] == ["record.delete", "record.create"]
    assert events(other) == []
    assert set(made) >= {"id", "type", "createdAt", "updatedAt", "meta"}


def test_a_refused_change_records_nothing(api):
    assert_error(api.post("conversation/create", json={"botId": "0" * 26}), 404, "NOT_FOUND")
    assert_error(api.post("bot/" + "0" * 26 + "/update", json={"name": "x"}), 404, "NOT_FOUND")
    assert events(api) == []


def test_a_change_whose_event_cannot_be_written_is_not_made(fresh_database):
    """Same transaction: when the event's insert fails, the change is rolled back."""
    dsn = fresh_database()

    async def refuse_bot_events() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("ALTER TABLE events ADD CONSTRAINT no_bots CHECK (type <> 'bot.create')")
        finally:
            await conn.close()

    asyncio.run(refuse_bot_events())
    server = start_app(dsn, rate_limit=0, rate_limit_account=0)
    try:
        import httpx

        _, secret = asyncio.run(new_account(dsn, None, None))
        with httpx.Client(base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}) as c:
            assert c.post("bot/create", json={"name": "never"}).status_code == 500
            assert c.get("bot/list").json()["items"] == []
            assert c.post("dataset/create", json={}).status_code == 200
            assert [e["type"] for e in c.get("event/log/list").json()["items"]] == ["dataset.create"]
    finally:
        server.stop()


def test_completions_tokens_and_partner_users_are_recorded_without_secrets(api):
    conversation = api.post("conversation/create", json={}).json()["id"]
    answer = api.post(f"conversation/{conversation}/complete", json={"text": "hello there"})
    assert answer.status_code == 200, answer.text
    (finished,) = events(api, type="completion.finish")
    assert finished["conversationId"] == conversation
    assert finished["meta"]["messageId"] == answer.json()["id"]
    assert {"model", "inputTokens", "outputTokens", "reason"} <= set(finished["meta"])

    child = api.post("partner/user/create", json={"name": "Kid"}).json()["id"]
    token = api.post(f"partner/user/{child}/token/create", json={"name": "t"}).json()
    api.post(f"partner/user/{child}/token/{token['id']}/delete", json={})
    secret = api.post("secret/create", json={"name": "s", "value": "v3ry-s3cret-value"}).json()["id"]
    api.post(f"secret/{secret}/update", json={"value": "an0ther-s3cret"})
    logged = events(api)
    assert {"user.create", "token.create", "token.delete", "secret.create", "secret.update"} <= {
        e["type"] for e in logged
    }
    (made,) = [e for e in logged if e["type"] == "token.create"]
    assert made["meta"] == {"tokenId": token["id"], "userId": child}
    export = api.get("event/log/export", headers={"Accept": "application/jsonl"}).text
    for value in (token["token"], "v3ry-s3cret-value", "an0ther-s3cret"):
        assert value not in json.dumps(logged) and value not in export
    assert len(export.splitlines()) == len(logged)


def test_refusals_by_partner_limits_are_recorded_once_a_minute(api, server):
    import httpx

    child = api.post("partner/user/create", json={"limits": {"bots": 0}}).json()["id"]
    with httpx.Client(
        base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {api.token}", "X-RunAs-User-Id": child}
    ) as as_child:
        for _ in range(3):
            assert_error(as_child.post("bot/create", json={}), 429, "LIMITS_REACHED")
        for _ in range(50):  # written in the background, after the answer
            refused = as_child.get("event/log/list").json()["items"]
            if refused:
                break
            threading.Event().wait(0.05)
    assert [(e["type"], e["meta"]["code"]) for e in refused] == [("request.limits_reached", "LIMITS_REACHED")]
    assert events(api, type="request.limits_reached") == []  # the child's, not the parent's


def test_subscribe_replays_history_then_tails_live(api, other, server):
    api.post("bot/create", json={"name": "before"})
    reader = EventReader(server.url, api.headers["authorization"], lambda items: len(items) >= 3, history=1)
    assert reader.opened()
    other.post("bot/create", json={})  # another account's: never seen
    api.post("dataset/create", json={})
    api.post("skillset/create", json={})
    reader.join()
    assert [i["type"] for i in reader.items] == ["bot.create", "dataset.create", "skillset.create"]
    assert all(i.get("botId") != other.account_id for i in reader.items)


def test_subscribers_hear_changes_made_by_other_processes(api, server, database):
    """The change is made on another app (another process's hub, its own LISTEN) that
    learns of the subscriber's tap through PostgreSQL."""
    elsewhere = start_app(database, rate_limit=0, rate_limit_account=0)
    try:
        import httpx

        reader = EventReader(server.url, api.headers["authorization"], lambda items: len(items) >= 2)
        assert reader.opened()
        with httpx.Client(
            base_url=elsewhere.url + "/v1/", headers={"Authorization": api.headers["authorization"]}
        ) as c:
            c.post("bot/create", json={"name": "one"})
            c.post("bot/create", json={"name": "two"})
        reader.join()
        assert [i["type"] for i in reader.items] == ["bot.create", "bot.create"]
    finally:
        elsewhere.stop()


@pytest.mark.parametrize("body", [{"historyLength": -1}, {"historyLength": "x"}, []])
def test_subscribe_refuses_bad_bodies(api, body):
    assert_error(api.post("event/log/subscribe", json=body), 400, "BAD_REQUEST")


def test_task_subscribe_replays_and_tails_the_tasks_workflow_events(api, other, server, database):
    """What an execution writes to its task's channel (here: written as another process
    would, a row and its notice) streams to the task's subscribers."""
    from botkit.actions.ids import new_id

    task = api.post("task/create", json={"name": "nightly"}).json()["id"]
    assert_error(other.post(f"task/{task}/subscribe", json={}), 404, "NOT_FOUND")
    assert_error(api.post("task/" + "0" * 26 + "/subscribe", json={}), 404, "NOT_FOUND")

    def event(kind: str, n: int) -> dict:
        return {"type": kind, "createdAt": n, "data": {"id": f"op{n}", "action": {"id": "a1", "kind": "function"}}}

    async def write(data: dict) -> None:
        conn = await asyncpg.connect(database)
        try:
            message_id = new_id()
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO channel_messages (id, account_id, channel_id, data, created_at) "
                    "VALUES ($1, $2, $3, $4::jsonb, 0)",
                    message_id,
                    api.account_id,
                    f"#task:{task}",
                    json.dumps(data),
                )
                await conn.execute(
                    "SELECT pg_notify('botkit_channel', $1)", f"{api.account_id} #task:{task} {message_id}"
                )
        finally:
            await conn.close()

    asyncio.run(write(event("operationBegin", 1)))
    got: list[dict] = []
    import httpx

    with (
        httpx.Client(base_url=server.url + "/v1/", headers={"Authorization": api.headers["authorization"]}) as c,
        c.stream("POST", f"task/{task}/subscribe", json={"historyLength": 10}, timeout=30) as r,
    ):
        assert r.status_code == 200
        for line in r.iter_lines():
            got.append(json.loads(line))
            if len(got) == 1:
                asyncio.run(write(event("operationEnd", 2)))
            if len(got) == 2:
                break
    assert got == [event("operationBegin", 1), event("operationEnd", 2)]
    # no client can write there: "#" is not a channel id of theirs
    assert_error(api.post(f"channel/%23task:{task}/publish", json={"message": {}}), 400, "BAD_REQUEST")


# --- a property: the log is exactly the changes, in order, per account --------------

_OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["mine", "theirs"]),
        st.sampled_from(["create", "update", "delete", "update-missing", "create-bad"]),
        st.sampled_from(["bot", "dataset", "skillset"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=15)
@given(operations=_OPERATIONS)
def test_the_log_holds_exactly_the_changes_made_in_order(make_api, operations):
    """Random creates, updates and deletes by two accounts, some refused (a missing row,
    a bad body): each account's log is its successful changes, in the order made, with
    the ids they touched, and nothing of the other account's or of the refusals."""
    apis = {"mine": make_api(), "theirs": make_api()}
    made: dict[str, list[tuple[str, str]]] = {"mine": [], "theirs": []}  # (noun, id) alive
    expected: dict[str, list[tuple[str, str]]] = {"mine": [], "theirs": []}  # (type, id)
    for who, action, noun in operations:
        api, alive = apis[who], [i for n, i in made[who] if n == noun]
        if action == "create":
            row = api.post(f"{noun}/create", json={"name": "x"}).json()["id"]
            made[who].append((noun, row))
            expected[who].append((f"{noun}.create", row))
        elif action == "create-bad":
            assert api.post(f"{noun}/create", json={"name": 7}).status_code == 400
        elif action == "update-missing" or not alive:
            assert api.post(f"{noun}/{'0' * 26}/update", json={"name": "y"}).status_code == 404
        elif action == "update":
            assert api.post(f"{noun}/{alive[0]}/update", json={"name": "y"}).status_code == 200
            expected[who].append((f"{noun}.update", alive[0]))
        else:
            assert api.post(f"{noun}/{alive[-1]}/delete", json={}).status_code == 200
            made[who].remove((noun, alive[-1]))
            expected[who].append((f"{noun}.delete", alive[-1]))
    for who, api in apis.items():
        logged = api.get("event/log/list", params={"order": "asc", "take": 100}).json()["items"]
        assert [(e["type"], e["meta"][e["type"].split(".")[0] + "Id"]) for e in logged] == expected[who]
