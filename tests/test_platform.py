"""The platform catalogues: ready-made abilities (each one botkit runs), the secret
types, the README's sections as docs, and reports over the account's own rows (JSON,
and CSV when asked), driven over HTTP and by both official SDKs."""

from __future__ import annotations

import asyncio
import csv
import datetime
import io
import json

from chatbotkit import ChatBotKit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_accounts import child_token, client, make_child
from test_sdk import root_url, run_node

from botkit.engine import abilities
from botkit.resources import platform
from botkit.testing import assert_error

TOTAL_MESSAGES = "clr3m5n8k000608jq3k0l1m7g"
USER_MESSAGES = "clr3m5n8k000708jq4l1m2n8h"
CONVERSATIONS = "clr3m5n8k000508jq2j9k0l6f"


def every(api, path: str) -> list[dict]:
    response = api.get(path, headers={"Accept": "application/jsonl"})
    assert response.status_code == 200, response.text
    return [json.loads(line)["data"] for line in response.text.split("\n")[:-1]]


def test_abilities_are_ones_botkit_runs_and_a_skillset_ability_can_copy(api):
    items = api.get("platform/ability/list", params={"take": 100}).json()["items"]
    assert {i["id"] for i in items} == {a.id for a in platform.ABILITIES} and len(items) >= 5
    assert {i["meta"]["action"] for i in items} == set(abilities.ACTIONS)  # every kind, nothing else
    skillset = api.post("skillset/create", json={}).json()["id"]
    for item in items:
        block = abilities.parse(item["instruction"])
        assert block is not None and item["schema"] == block.schema()
        copied = api.post(f"skillset/{skillset}/ability/create", json={"name": item["name"], **_copy(item)})
        assert copied.status_code == 200, (item["id"], copied.text)


def _copy(item: dict) -> dict:
    return {"description": item["description"], "instruction": item["instruction"]}


def test_catalogues_page_stream_and_filter_as_lists(api):
    for path in ("platform/ability/list", "platform/secret/list", "platform/doc/list", "platform/report/list"):
        whole = every(api, path)
        assert whole and [i["id"] for i in whole] == sorted((i["id"] for i in whole), reverse=True)
        seen, cursor = [], None
        while True:
            page = api.get(path, params={"take": 2, "order": "asc", **({"cursor": cursor} if cursor else {})}).json()
            if not page["items"]:
                assert page["cursor"] == ""
                break
            seen += page["items"]
            cursor = page["cursor"]
        assert seen == whole[::-1], path
    fetches = api.get("platform/ability/list", params={"meta.action": "fetch"}).json()["items"]
    assert fetches and all(i["meta"]["action"] == "fetch" for i in fetches)
    assert_error(api.get("platform/secret/list", params={"take": 0}), 400, "BAD_REQUEST")


def test_search_ranks_by_name_and_description(api):
    found = api.post("platform/ability/search", json={"search": "dataset records"}).json()["items"]
    assert found[0]["id"] == "search-dataset" and 0 < found[0]["score"] <= 1 and found[0]["excerpt"]
    assert api.post("platform/ability/search", json={"search": "zzzz-nothing"}).json() == {"items": []}
    assert len(api.post("platform/ability/search", json={"search": "a the ability", "take": 1}).json()["items"]) <= 1
    secrets = api.post("platform/secret/search", json={"search": "bearer token"}).json()["items"]
    assert secrets[0]["type"] == "bearer" and {"score", "excerpt", "type", "kind"} <= set(secrets[0])
    assert_error(api.post("platform/ability/search", json={}), 400, "BAD_REQUEST")
    assert_error(api.post("platform/secret/search", json={"search": "x", "take": 101}), 400, "BAD_REQUEST")


def test_secret_types_are_the_ones_abilities_format(api):
    items = every(api, "platform/secret/list")
    assert {i["type"] for i in items} == {"plain", "bearer", "basic", "oauth", "jwt"}
    for item in items:
        # what the catalogue says a request carries is what the runtime puts in
        sent = abilities.formatted(item["type"], "user:pw")
        expected = item["meta"]["sentAs"].replace("<value>", "user:pw").replace("<base64 of value>", "dXNlcjpwdw==")
        assert sent == expected, item["type"]
        created = api.post("secret/create", json={"name": item["id"], "type": item["type"], "value": "v"})
        assert created.status_code == 200


def test_docs_are_the_readme_sections(api):
    docs = api.get("platform/doc/list", params={"take": 100, "order": "asc"}).json()["items"]
    by_id = {d["id"]: d for d in docs}
    assert {"the-two-commands", "configuration", "reliability"} <= set(by_id)
    assert "content" not in docs[0]  # a list names them; fetch has the markdown
    doc = api.get("platform/doc/the-two-commands/fetch").json()
    assert doc["name"] == "The two commands" and "make run" in doc["content"]
    assert doc["link"] == "/v1/platform/doc/the-two-commands/fetch" and doc["category"] == "The two commands"
    readme = (platform.README).read_text()
    assert all(f" {d['name']}\n" in readme for d in docs if d["id"] != "botkit")
    assert_error(api.get("platform/doc/nothing/fetch"), 404, "NOT_FOUND")
    found = api.post("platform/doc/search", json={"search": "DATABASE_URL"}).json()["items"]
    assert found and all("score" in f and "content" not in f for f in found)


def test_reports_count_the_accounts_own_rows_per_day(api, other):
    conversation = api.post(
        "conversation/create",
        json={"messages": [{"type": "user", "text": "a"}, {"type": "bot", "text": "b"}, {"type": "user", "text": "c"}]},
    ).json()["id"]
    assert conversation
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    user = api.post(f"platform/report/{USER_MESSAGES}/generate", json={"periodDays": 7}).json()
    assert user["value"] == 2 and user["period"] == "7d" and len(user["breakdown"]) == 7
    assert user["breakdown"][-1] == {"date": today, "total": 2} and "change" not in user
    assert api.post(f"platform/report/{TOTAL_MESSAGES}/generate", json={}).json()["value"] == 3
    assert len(api.post(f"platform/report/{TOTAL_MESSAGES}/generate", json={}).json()["breakdown"]) == 30
    # another account's rows are not counted; an unknown report is 404; bad input 400
    assert other.post(f"platform/report/{USER_MESSAGES}/generate", json={}).json()["value"] == 0
    assert_error(api.post("platform/report/nothing/generate", json={}), 404, "NOT_FOUND")
    assert_error(api.post(f"platform/report/{USER_MESSAGES}/generate", json={"periodDays": 0}), 400, "BAD_REQUEST")
    # CSV when asked: the days
    response = api.post(
        f"platform/report/{USER_MESSAGES}/generate", json={"periodDays": 3}, headers={"Accept": "text/csv"}
    )
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert rows[0] == ["date", "total"] and rows[-1] == [today, "2"] and len(rows) == 4
    # several at once; an unknown id is refused, naming it
    batch = api.post("platform/report/generate", json={CONVERSATIONS: {"periodDays": 2}, USER_MESSAGES: {}}).json()
    assert set(batch) == {CONVERSATIONS, USER_MESSAGES} and batch[CONVERSATIONS]["value"] == 1
    assert (
        "nothing"
        in assert_error(api.post("platform/report/generate", json={"nothing": {}}), 400, "BAD_REQUEST")["message"]
    )


def test_a_token_scoped_elsewhere_cannot_generate_reports(api, server):
    child = make_child(api)
    scoped = client(server, child_token(api, child, scopes=[{"resource": "bot", "actions": ["list"]}]))
    assert scoped.get("bot/list").status_code == 200
    assert_error(scoped.post(f"platform/report/{USER_MESSAGES}/generate", json={}), 401, "NOT_AUTHORIZED")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(search=st.text(max_size=60), take=st.integers(-5, 150) | st.text(max_size=5), days=st.integers(-3, 400))
def test_junk_is_never_a_500(api, search, take, days):
    for path in ("platform/ability/search", "platform/secret/search", "platform/doc/search"):
        response = api.post(path, json={"search": search, "take": take})
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            scores = [i["score"] for i in response.json()["items"]]
            assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    response = api.post(f"platform/report/{TOTAL_MESSAGES}/generate", json={"periodDays": days})
    assert response.status_code == (200 if 1 <= days <= 366 else 400), response.text


# --- the official SDKs -----------------------------------------------------------------


def test_the_node_sdk_drives_the_platform_catalogues(server, make_api):
    out = run_node("platform.mjs", root_url(server), make_api().token, timeout=120)
    assert out.count("ok ") >= 5, out


async def _python_sdk(base: str, token: str) -> None:
    client = ChatBotKit(secret=token, base_url=base)
    listed = await client.platform.ability.list({"take": 2})
    assert len(listed.items) == 2 and isinstance(listed.cursor, str)
    streamed = [item async for item in client.platform.ability.list().stream()]
    assert len(streamed) == len(platform.ABILITIES)
    found = await client.platform.ability.search({"search": "web page"})
    assert found.items[0].id == "fetch-web-page" and found.items[0].score > 0
    assert {a.id for a in (await client.platform.action.list()).items} == set(abilities.ACTIONS)
    secrets = await client.platform.secret.list()
    assert {s.type.value for s in secrets.items} >= {"bearer", "basic"}
    assert (await client.platform.secret.search({"search": "basic"})).items[0].id == "basic"
    reports = await client.platform.report.list()
    assert {r.id for r in reports.items} == set(platform.REPORTS)


def test_the_python_sdk_drives_the_platform_catalogues(server, make_api):
    asyncio.run(_python_sdk(root_url(server), make_api().token))
