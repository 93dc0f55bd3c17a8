"""Blueprints (resource list, export, import, clone, delete with resources), policies
(and the retention sweep), portals, teams, and a partner's contexts and sessions for
its child accounts — over real HTTP against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import asyncpg
import httpx
import pytest
from chatbotkit import APIError, ChatBotKit
from hypothesis import given
from hypothesis import strategies as st
from test_sdk import run_node

from botkit.actions.ids import new_id
from botkit.config import Settings
from botkit.engine import models as engine_models
from botkit.resources import policy
from botkit.testing import assert_error, use_models


@pytest.fixture
def embedded(server):
    """No provider configured: the built-in retrieval responder answers."""
    previous = use_models(
        server, engine_models.from_settings(Settings(database_url="x", models="", model_base_url=None))
    )
    yield
    use_models(server, previous)


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def as_child(api, child: str) -> dict:
    return {"X-RunAs-User-Id": child}


def build_blueprint(api) -> dict:
    """A blueprint with a dataset (two records), a skillset with an ability using a
    secret, a bot on both, a task of the bot, a policy and a portal; its ids."""
    bp = ok(api.post("blueprint/create", json={"name": "starter", "description": "the starting bot"}))["id"]
    secret = ok(
        api.post("secret/create", json={"name": "crm", "type": "bearer", "value": "s3cr3t-v4lue", "blueprintId": bp})
    )["id"]
    dataset = ok(api.post("dataset/create", json={"name": "handbook", "blueprintId": bp}))["id"]
    for text in ("Refunds are possible within 30 days of purchase.", "The office opens at 9 am on weekdays."):
        ok(api.post(f"dataset/{dataset}/record/create", json={"text": text, "meta": {"kind": "faq"}}))
    skillset = ok(api.post("skillset/create", json={"name": "tools", "blueprintId": bp}))["id"]
    ability = ok(
        api.post(
            f"skillset/{skillset}/ability/create",
            json={"name": "lookup", "description": "look up", "instruction": "Answer politely.", "secretId": secret},
        )
    )["id"]
    bot = ok(
        api.post(
            "bot/create",
            json={
                "name": "Ada",
                "backstory": "Helpful.",
                "datasetId": dataset,
                "skillsetId": skillset,
                "blueprintId": bp,
            },
        )
    )["id"]
    task = ok(api.post("task/create", json={"name": "daily", "botId": bot, "schedule": "daily", "blueprintId": bp}))[
        "id"
    ]
    pol = ok(api.post("policy/create", json={"type": "retention", "config": {"days": 30}, "blueprintId": bp}))["id"]
    portal = ok(api.post("portal/create", json={"slug": "help-desk", "config": {"theme": "dark"}, "blueprintId": bp}))[
        "id"
    ]
    return dict(
        bp=bp,
        secret=secret,
        dataset=dataset,
        skillset=skillset,
        ability=ability,
        bot=bot,
        task=task,
        policy=pol,
        portal=portal,
    )


def test_blueprint_resource_list_and_export(api, other):
    ids = build_blueprint(api)
    ok(api.post("bot/create", json={"name": "not in it"}))
    listed = ok(api.get(f"blueprint/{ids['bp']}/resource/list"))
    assert listed["id"] == ids["bp"]
    by_kind = {k: [i["id"] for i in v] for k, v in listed["resources"].items()}
    assert by_kind["bots"] == [ids["bot"]] and by_kind["datasets"] == [ids["dataset"]]
    assert by_kind["secrets"] == [ids["secret"]] and by_kind["tasks"] == [ids["task"]]
    assert by_kind["policies"] == [ids["policy"]] and by_kind["portals"] == [ids["portal"]]

    exported = api.get(f"blueprint/{ids['bp']}/resource/export")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/json")
    assert "s3cr3t-v4lue" not in exported.text  # secrets by reference only
    doc = exported.json()
    assert doc["id"] == ids["bp"] and doc["name"] == "starter"
    [dataset] = doc["resources"]["datasets"]
    assert sorted(r["text"] for r in dataset["records"]) == [
        "Refunds are possible within 30 days of purchase.",
        "The office opens at 9 am on weekdays.",
    ]
    [skillset] = doc["resources"]["skillsets"]
    assert [a["id"] for a in skillset["abilities"]] == [ids["ability"]]
    [secret] = doc["resources"]["secrets"]
    assert secret["name"] == "crm" and "value" not in secret

    for path in ("resource/list", "resource/export", "fetch"):
        assert_error(other.get(f"blueprint/{ids['bp']}/{path}"), 404, "NOT_FOUND")
    assert_error(other.post(f"blueprint/{ids['bp']}/resource/import", json={"resource": doc}), 404, "NOT_FOUND")
    assert_error(other.post(f"blueprint/{ids['bp']}/clone", json={}), 404, "NOT_FOUND")
    # a resource cannot join another account's blueprint
    assert_error(other.post("bot/create", json={"blueprintId": ids["bp"]}), 404, "NOT_FOUND")


def test_a_blueprint_imported_into_a_partners_child_answers_from_its_dataset(api, embedded):
    ids = build_blueprint(api)
    doc = ok(api.get(f"blueprint/{ids['bp']}/resource/export"))
    child = ok(api.post("partner/user/create", json={"name": "customer"}))["id"]
    h = as_child(api, child)
    target = ok(api.post("blueprint/create", json={"name": "starter"}, headers=h))["id"]
    imported = ok(api.post(f"blueprint/{target}/resource/import", json={"resource": doc}, headers=h))
    new_bot = imported["resources"]["bots"][ids["bot"]]
    new_dataset = imported["resources"]["datasets"][ids["dataset"]]
    assert new_bot != ids["bot"]

    bot = ok(api.get(f"bot/{new_bot}/fetch", headers=h))
    assert bot["datasetId"] == new_dataset and bot["blueprintId"] == target
    assert bot["skillsetId"] == imported["resources"]["skillsets"][ids["skillset"]]
    assert_error(api.get(f"bot/{new_bot}/fetch"), 404, "NOT_FOUND")  # it is the child's, not the parent's
    records = ok(api.get(f"dataset/{new_dataset}/record/list", headers=h))["items"]
    assert len(records) == 2 and all(r["meta"] == {"kind": "faq"} for r in records)
    [ability] = ok(api.get(f"skillset/{bot['skillsetId']}/ability/list", headers=h))["items"]
    new_secret = ability["secretId"]
    assert new_secret not in (None, ids["secret"])
    verified = ok(api.post(f"secret/{new_secret}/verify", json={}, headers=h))
    assert verified["status"] == "unauthenticated"  # the value stayed behind
    task = ok(api.get(f"task/{imported['resources']['tasks'][ids['task']]}/fetch", headers=h))
    assert task["botId"] == new_bot and task["nextRunAt"] > 0

    conversation = ok(api.post("conversation/create", json={"botId": new_bot}, headers=h))["id"]
    answer = ok(
        api.post(f"conversation/{conversation}/complete", json={"text": "When are refunds possible?"}, headers=h)
    )
    assert "Refunds are possible within 30 days of purchase." in answer["text"]

    # importing again wires the document's secret to the one the child has now
    again = ok(api.post(f"blueprint/{target}/resource/import", json={"resource": doc}, headers=h))
    assert again["resources"]["secrets"][ids["secret"]] == new_secret


def test_blueprint_clone_and_delete_with_resources(api):
    ids = build_blueprint(api)
    cloned = ok(api.post(f"blueprint/{ids['bp']}/clone", json={}))
    assert cloned["id"] != ids["bp"]
    assert ok(api.get(f"blueprint/{cloned['id']}/fetch"))["name"] == "starter"
    new_bot = cloned["resources"]["bots"][ids["bot"]]
    assert ok(api.get(f"bot/{new_bot}/fetch"))["datasetId"] == cloned["resources"]["datasets"][ids["dataset"]]
    # a clone in the same account shares the secret it names
    assert cloned["resources"]["secrets"][ids["secret"]] == ids["secret"]

    ok(api.post(f"blueprint/{cloned['id']}/delete", json={}))
    assert ok(api.get(f"bot/{new_bot}/fetch"))["id"] == new_bot  # only the blueprint went
    ok(api.post(f"blueprint/{ids['bp']}/delete", json={"deleteResources": True}))
    for path in (
        f"bot/{ids['bot']}",
        f"dataset/{ids['dataset']}",
        f"skillset/{ids['skillset']}",
        f"task/{ids['task']}",
    ):
        assert_error(api.get(f"{path}/fetch"), 404, "NOT_FOUND")
    assert_error(api.get(f"blueprint/{ids['bp']}/fetch"), 404, "NOT_FOUND")


def test_a_file_travels_inside_the_document(api):
    bp = ok(api.post("blueprint/create", json={}))["id"]
    file_id = ok(api.post("file/create", json={"name": "notes.txt", "blueprintId": bp}))["id"]
    data = "data:text/plain;base64," + base64.b64encode(b"hello, file").decode()
    ok(api.post(f"file/{file_id}/upload", json={"file": data}))
    doc = ok(api.get(f"blueprint/{bp}/resource/export"))
    [exported] = doc["resources"]["files"]
    assert exported["content"].endswith(base64.b64encode(b"hello, file").decode())
    target = ok(api.post("blueprint/create", json={}))["id"]
    imported = ok(api.post(f"blueprint/{target}/resource/import", json={"resource": doc}))
    new_file = imported["resources"]["files"][file_id]
    assert api.get(f"file/{new_file}/download").content == b"hello, file"


@pytest.mark.parametrize(
    "resource",
    [
        {"resources": []},
        {"resources": {"unicorns": []}},
        {"resources": {"bots": [{"model": 5}]}},
        {"resources": {"bots": [{"id": "a"}, {"id": "a"}]}},
        {"resources": {"datasets": [{"records": [{"text": None}]}]}},
        {"resources": {"files": [{"content": "not a data url"}]}},
        {"resources": {"files": [{"content": "data:text/plain;base64,%%%"}]}},
        {"resources": {"bots": [{}], "files": [{"content": "data:text;base64,aGk="}]}},  # a type the store refuses
        {"resources": {"policies": [{"type": "vacation"}]}},
    ],
)
def test_a_bad_document_is_a_400_and_imports_nothing(api, resource):
    target = ok(api.post("blueprint/create", json={}))["id"]
    assert_error(api.post(f"blueprint/{target}/resource/import", json={"resource": resource}), 400, "BAD_REQUEST")
    assert all(v == [] for v in ok(api.get(f"blueprint/{target}/resource/list"))["resources"].values())


def test_an_import_is_held_to_the_childs_limits(api):
    bp = ok(api.post("blueprint/create", json={}))["id"]
    for _ in range(3):
        ok(api.post("bot/create", json={"blueprintId": bp}))
    doc = ok(api.get(f"blueprint/{bp}/resource/export"))
    child = ok(api.post("partner/user/create", json={"limits": {"bots": 2}}))["id"]
    h = as_child(api, child)
    target = ok(api.post("blueprint/create", json={}, headers=h))["id"]
    assert_error(
        api.post(f"blueprint/{target}/resource/import", json={"resource": doc}, headers=h), 429, "LIMITS_REACHED"
    )
    assert ok(api.get("bot/list", headers=h))["items"] == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(["bots", "datasets", "skillsets", "secrets", "files", "tasks", "policies", "portals", "x"]),
        st.lists(st.dictionaries(st.text(max_size=12), _json, max_size=5), max_size=3),
        max_size=4,
    )
)
def test_junk_documents_never_fail(make_api, resources):
    api = make_api()
    target = ok(api.post("blueprint/create", json={}))["id"]
    answer = api.post(f"blueprint/{target}/resource/import", json={"resource": {"resources": resources}})
    assert answer.status_code in (200, 400), answer.text
    assert set(answer.json()) >= ({"id", "resources"} if answer.status_code == 200 else {"message", "code"})


# --- policies, portals, teams ---------------------------------------------------------


def test_policies_and_portals(api, other):
    pol = ok(api.post("policy/create", json={"name": "30 days", "type": "retention", "config": {"days": 30}}))["id"]
    got = ok(api.get(f"policy/{pol}/fetch"))
    assert (got["type"], got["config"], got["name"]) == ("retention", {"days": 30}, "30 days")
    assert_error(api.post("policy/create", json={"type": "other"}), 400, "BAD_REQUEST")
    assert_error(api.post("policy/create", json={}), 400, "BAD_REQUEST")
    assert_error(api.post("policy/create", json={"type": "retention", "config": {"days": 0}}), 400, "BAD_REQUEST")
    ok(api.post(f"policy/{pol}/update", json={"config": {"days": 7}}))
    for bad in ({"days": 0}, {"days": 1.5}, {"days": "7"}, {"days": 366}):  # update is checked as create is
        assert_error(api.post(f"policy/{pol}/update", json={"config": bad}), 400, "BAD_REQUEST")
    assert ok(api.get(f"policy/{pol}/fetch"))["config"] == {"days": 7}
    assert_error(other.get(f"policy/{pol}/fetch"), 404, "NOT_FOUND")

    portal = ok(api.post("portal/create", json={"slug": "support", "config": {"a": [1, 2]}}))["id"]
    assert ok(api.get(f"portal/{portal}/fetch"))["config"] == {"a": [1, 2]}
    assert_error(api.post("portal/create", json={"slug": "Not A Slug"}), 400, "BAD_REQUEST")
    assert [p["id"] for p in ok(api.get("portal/list"))["items"]] == [portal]
    ok(api.post(f"portal/{portal}/delete", json={}))
    assert ok(api.get("portal/list"))["items"] == []


def test_team_list_is_the_accounts_own_team(api, server):
    [team] = ok(api.get("team/list"))["items"]
    assert team["id"] == api.account_id and set(team) >= {"id", "createdAt", "updatedAt", "meta"}
    assert ok(api.get("team/list", params={"cursor": team["id"]}))["items"] == []
    streamed = api.get("team/list", headers={"Accept": "application/jsonl"})
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert [(e["type"], e["data"]["id"]) for e in lines] == [("item", api.account_id)]


def test_the_retention_sweep_deletes_idle_conversations_only(api, database, server):
    bot = ok(api.post("bot/create", json={}))["id"]
    ok(api.post("policy/create", json={"type": "retention", "config": {"days": 2}, "botId": bot}))
    idle = ok(api.post("conversation/create", json={"botId": bot}))["id"]
    busy = ok(api.post("conversation/create", json={"botId": bot}))["id"]
    other_bot = ok(api.post("conversation/create", json={}))["id"]
    ok(api.post(f"conversation/{busy}/message/create", json={"type": "user", "text": "still here"}))

    async def age() -> None:
        conn = await asyncpg.connect(database)
        try:
            old = int(time.time() * 1000) - 3 * 86_400_000
            await conn.execute(
                "UPDATE conversations SET updated_at = $2 WHERE id = ANY($1)", [idle, busy, other_bot], old
            )
        finally:
            await conn.close()

    asyncio.run(age())

    class Pool:  # the sweep's pool: a connection of its own to the test database
        def connection(self):
            return _Conn(database)

    assert asyncio.run(policy.sweep(Pool())) >= 1
    assert_error(api.get(f"conversation/{idle}/fetch"), 404, "NOT_FOUND")
    assert ok(api.get(f"conversation/{busy}/fetch"))["id"] == busy  # a recent message keeps it
    assert ok(api.get(f"conversation/{other_bot}/fetch"))["id"] == other_bot  # the policy names one bot


class _Conn:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def __aenter__(self):
        self.conn = await asyncpg.connect(self.dsn)
        return self.conn

    async def __aexit__(self, *exc) -> None:
        await self.conn.close()


# --- a partner's contexts and sessions for its children ----------------------------------


@pytest.mark.parametrize("prefix", ["partner/user", "user"])
def test_partner_contexts(api, other, prefix):
    child = ok(api.post("partner/user/create", json={}))["id"]
    created = ok(api.post(f"{prefix}/{child}/context/create", json={"name": "onboarding", "payload": {"step": 2}}))
    assert created["name"] == "onboarding" and created["payload"] == {"step": 2} and created["createdAt"] > 0
    context = created["id"]
    assert ok(api.get(f"{prefix}/{child}/context/{context}/fetch"))["payload"] == {"step": 2}
    ok(api.post(f"{prefix}/{child}/context/{context}/update", json={"payload": {"step": 3}}))
    assert ok(api.get(f"{prefix}/{child}/context/list"))["items"][0]["payload"] == {"step": 3}
    assert_error(other.get(f"{prefix}/{child}/context/list"), 404, "NOT_FOUND")
    assert_error(other.get(f"{prefix}/{child}/context/{context}/fetch"), 404, "NOT_FOUND")
    sibling = ok(api.post("partner/user/create", json={}))["id"]
    assert_error(api.get(f"{prefix}/{sibling}/context/{context}/fetch"), 404, "NOT_FOUND")
    assert_error(api.post(f"{prefix}/{child}/context/create", json={"payload": [1]}), 400, "BAD_REQUEST")
    assert_error(api.post(f"{prefix}/{child}/context/{context}/update", json={"payload": [1]}), 400, "BAD_REQUEST")
    ok(api.post(f"{prefix}/{child}/context/{context}/delete", json={}))
    assert ok(api.get(f"{prefix}/{child}/context/list"))["items"] == []


def test_a_partner_session_acts_as_the_child_within_its_routes(api, other, server):
    child = ok(api.post("partner/user/create", json={"limits": {"bots": 1}}))["id"]
    contact = ok(api.post("contact/create", json={"fingerprint": "c-1"}, headers=as_child(api, child)))["id"]
    session = ok(
        api.post(
            f"partner/user/{child}/session/create",
            json={
                "durationInSeconds": 60,
                "config": {"allowedRoutes": ["/api/v1/bot/**", "/conversation/*/fetch"], "contactId": contact},
            },
        )
    )
    assert set(session) == {"id", "token", "expiresAt"}
    assert session["expiresAt"] <= (time.time() + 61) * 1000
    with httpx.Client(base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {session['token']}"}) as s:
        bot = ok(s.post("bot/create", json={"name": "by session"}))["id"]
        assert ok(api.get(f"bot/{bot}/fetch", headers=as_child(api, child)))["name"] == "by session"
        assert_error(s.post("bot/create", json={}), 429, "LIMITS_REACHED")  # the child's limits hold
        assert_error(s.get("dataset/list"), 401, "NOT_AUTHORIZED")  # not among its routes
        assert_error(s.get("bot/list", headers={"X-RunAs-User-Id": child}), 401, "NOT_AUTHORIZED")
    anything = ok(api.post(f"user/{child}/session/create", json={}))
    with httpx.Client(base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {anything['token']}"}) as s:
        assert [b["id"] for b in ok(s.get("bot/list"))["items"]] == [bot]
        # every route, but never one that makes lasting credentials or accounts
        assert_error(s.post("partner/user/create", json={}), 401, "NOT_AUTHORIZED")
        assert_error(s.post(f"partner/user/{child}/token/create", json={}), 401, "NOT_AUTHORIZED")
    # a widget's session is held to its account's limits as they are now
    widget = ok(api.post(f"bot/{bot}/session/create", json={}, headers=as_child(api, child)))
    ok(api.post(f"partner/user/{child}/update", json={"limits": {"bots": 1, "messages": 0}}))
    with httpx.Client(base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {widget['token']}"}) as s:
        refused = s.post(f"conversation/{widget['conversationId']}/complete", json={"text": "hi"})
        assert_error(refused, 429, "LIMITS_REACHED")
    assert_error(other.post(f"partner/user/{child}/session/create", json={}), 404, "NOT_FOUND")
    assert_error(
        api.post(f"partner/user/{child}/session/create", json={"config": {"contactId": new_id()}}), 404, "NOT_FOUND"
    )
    assert_error(
        api.post(f"partner/user/{child}/session/create", json={"config": {"allowedRoutes": ["bot list"]}}),
        400,
        "BAD_REQUEST",
    )


# --- the official SDKs -----------------------------------------------------------------


def test_the_node_sdk_drives_blueprints_policies_portals_teams_and_partner_contexts(server, make_api):
    out = run_node("blueprints.mjs", server.url, make_api().token)
    assert out.count("ok ") == 6, out


def test_the_python_sdk_drives_blueprints_policies_portals_and_teams(server, make_api):
    api = make_api()

    async def drive() -> None:
        client = ChatBotKit(secret=api.token, base_url=server.url)
        bp = await client.blueprint.create({"name": "starter", "visibility": "private"})
        assert (await client.blueprint.fetch(bp.id)).name == "starter"
        await client.blueprint.update(bp.id, {"description": "d"})
        bot = await client.bot.create({"name": "Ada", "blueprintId": bp.id})
        listed = await client.blueprint.resource.list(bp.id)
        assert [b["id"] for b in listed.resources["bots"]] == [bot.id]
        assert bp.id in [b.id for b in (await client.blueprint.list()).items]
        policy_ = await client.policy.create({"type": "retention", "config": {"days": 30}})
        assert (await client.policy.fetch(policy_.id)).config == {"days": 30}
        await client.policy.delete(policy_.id)
        portal = await client.portal.create({"slug": "help"})
        assert (await client.portal.fetch(portal.id)).slug == "help"
        assert [t.id for t in (await client.team.list()).items] == [api.account_id]
        await client.blueprint.delete(bp.id, {"deleteResources": True})
        with pytest.raises(APIError) as e:
            await client.bot.fetch(bot.id)
        assert e.value.code == "NOT_FOUND"

    asyncio.run(drive())
