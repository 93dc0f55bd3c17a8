"""Every standard resource: create, fetch, list, update, delete, and the errors of each."""

from __future__ import annotations

import pytest

from botkit.testing import EDITABLE, MINIMAL, assert_error, create, prefix_for, route_prefix, tables

TABLES = tables()
IDS = [t.noun for t in TABLES]


def test_every_core_resource_is_served():
    assert {
        "bot",
        "conversation",
        "message",
        "dataset",
        "record",
        "skillset",
        "ability",
        "contact",
        "secret",
        "memory",
        "file",
        "task",
    } <= set(IDS)


@pytest.mark.parametrize("table", TABLES, ids=IDS)
def test_crud_roundtrip(api, table):
    prefix = prefix_for(api, table)
    item_id = create(api, prefix, table.noun, meta={"origin": "test"})

    fetched = api.get(f"{prefix}/{item_id}/fetch")
    assert fetched.status_code == 200, fetched.text
    item = fetched.json()
    assert item["id"] == item_id and item["meta"] == {"origin": "test"}
    assert isinstance(item["createdAt"], int) and item["createdAt"] == item["updatedAt"]
    for key in MINIMAL.get(table.noun, {}):
        assert item[key] == MINIMAL[table.noun][key]

    listed = api.get(f"{prefix}/list").json()
    assert [i["id"] for i in listed["items"]] == [item_id]
    assert listed["cursor"] == item_id  # the last item's id on every page with items
    assert api.get(f"{prefix}/list", params={"cursor": item_id}).json() == {"items": [], "cursor": ""}  # the end

    field, value = EDITABLE.get(table.noun) or ("name", "renamed")
    updated = api.post(f"{prefix}/{item_id}/update", json={field: value})
    assert updated.status_code == 200, updated.text
    assert updated.json() == {"id": item_id}
    after = api.get(f"{prefix}/{item_id}/fetch").json()
    assert after[field] == value
    assert after["meta"] == {"origin": "test"}  # fields not sent are left alone
    assert after["updatedAt"] >= item["updatedAt"]

    deleted = api.post(f"{prefix}/{item_id}/delete")
    assert deleted.status_code == 200 and deleted.json() == {"id": item_id}
    assert_error(api.get(f"{prefix}/{item_id}/fetch"), 404, "NOT_FOUND")
    assert_error(api.post(f"{prefix}/{item_id}/update", json={}), 404, "NOT_FOUND")
    assert_error(api.post(f"{prefix}/{item_id}/delete"), 404, "NOT_FOUND")
    assert api.get(f"{prefix}/list").json()["items"] == []


@pytest.mark.parametrize("table", TABLES, ids=IDS)
def test_another_accounts_resource_is_not_found(api, other, table):
    prefix = prefix_for(api, table)
    item_id = create(api, prefix, table.noun)
    for response in (
        other.get(f"{prefix}/{item_id}/fetch"),
        other.post(f"{prefix}/{item_id}/update", json={"meta": {"x": "y"}}),
        other.post(f"{prefix}/{item_id}/delete"),
    ):
        assert_error(response, 404, "NOT_FOUND")
    if table.parent is None:
        assert other.get(f"{prefix}/list").json()["items"] == []
    else:  # the parent itself is another account's: as if it did not exist
        assert_error(other.get(f"{prefix}/list"), 404, "NOT_FOUND")
        assert_error(other.post(f"{prefix}/create", json=MINIMAL.get(table.noun, {})), 404, "NOT_FOUND")
    # and the owner still has it, unchanged
    assert api.get(f"{prefix}/{item_id}/fetch").json()["meta"] == {}


@pytest.mark.parametrize("table", [t for t in TABLES if t.parent], ids=[t.noun for t in TABLES if t.parent])
def test_nested_resources_need_their_parent(api, table):
    missing = route_prefix(table).replace("{" + table.parent.param + "}", "01m84tf0w9f3se992gd2fj0kwb")
    assert_error(api.get(f"{missing}/list"), 404, "NOT_FOUND")
    assert_error(api.post(f"{missing}/create", json=MINIMAL.get(table.noun, {})), 404, "NOT_FOUND")
    prefix = prefix_for(api, table)
    item_id = create(api, prefix, table.noun)
    # the right child id under the wrong parent is not found either
    other_parent = prefix_for(api, table)
    assert_error(api.get(f"{other_parent}/{item_id}/fetch"), 404, "NOT_FOUND")


@pytest.mark.parametrize("table", TABLES, ids=IDS)
def test_wrong_types_are_bad_requests_naming_the_field(api, table):
    prefix = prefix_for(api, table)
    body = {**MINIMAL.get(table.noun, {}), "meta": "not an object"}
    error = assert_error(api.post(f"{prefix}/create", json=body), 400, "BAD_REQUEST")
    assert "meta" in error["message"]


def test_required_fields(api):
    conversation = api.post("conversation/create", json={}).json()["id"]
    error = assert_error(
        api.post(f"conversation/{conversation}/message/create", json={"text": "x"}), 400, "BAD_REQUEST"
    )
    assert "type" in error["message"]
    error = assert_error(
        api.post(f"conversation/{conversation}/message/create", json={"type": "robot", "text": "x"}), 400, "BAD_REQUEST"
    )
    assert "type" in error["message"]


def test_unknown_fields_are_ignored(api):
    bot = api.post("bot/create", json={"name": "x", "somethingNew": [1, 2]})
    assert bot.status_code == 200
    assert "somethingNew" not in api.get(f"bot/{bot.json()['id']}/fetch").json()


def test_oversized_strings_are_refused(api):
    error = assert_error(api.post("bot/create", json={"name": "x" * 257}), 400, "BAD_REQUEST")
    assert "name" in error["message"]


def test_null_clears_an_optional_field(api):
    bot = create(api, "bot", "bot", name="x", description="d")
    api.post(f"bot/{bot}/update", json={"description": None})
    assert "description" not in api.get(f"bot/{bot}/fetch").json()
    # but a field the resource always has cannot be nulled
    conversation = api.post("conversation/create", json={}).json()["id"]
    message = create(api, f"conversation/{conversation}/message", "message")
    assert_error(
        api.post(f"conversation/{conversation}/message/{message}/update", json={"text": None}), 400, "BAD_REQUEST"
    )


def test_references_must_be_in_the_same_account(api, other):
    dataset = api.post("dataset/create", json={}).json()["id"]
    assert api.post("bot/create", json={"datasetId": dataset}).status_code == 200
    error = assert_error(other.post("bot/create", json={"datasetId": dataset}), 404, "NOT_FOUND")
    assert "datasetId" in error["message"]
    bot = other.post("bot/create", json={}).json()["id"]
    assert_error(other.post(f"bot/{bot}/update", json={"datasetId": dataset}), 404, "NOT_FOUND")


def test_secret_value_is_write_only(api):
    secret = api.post("secret/create", json={"name": "k", "type": "bearer", "value": "s3cr3t-value"})
    secret_id = secret.json()["id"]
    assert "s3cr3t-value" not in api.get(f"secret/{secret_id}/fetch").text
    assert "s3cr3t-value" not in api.get("secret/list").text
    assert "s3cr3t-value" not in api.get("secret/list", headers={"Accept": "application/jsonl"}).text
    assert api.post(f"secret/{secret_id}/verify").json() == {"id": secret_id, "status": "authenticated"}
    assert api.post(f"secret/{secret_id}/revoke").json() == {"id": secret_id}
    assert api.post(f"secret/{secret_id}/verify").json()["status"] == "unauthenticated"


def test_contact_ensure_is_idempotent(api, other):
    first = api.post("contact/ensure", json={"fingerprint": "user-42", "name": "Ada"}).json()["id"]
    again = api.post("contact/ensure", json={"fingerprint": "user-42", "name": "Other"}).json()["id"]
    assert first == again
    assert api.get(f"contact/{first}/fetch").json()["name"] == "Ada"
    assert other.post("contact/ensure", json={"fingerprint": "user-42"}).json()["id"] != first
    assert_error(api.post("contact/ensure", json={}), 400, "BAD_REQUEST")
    # a fingerprint taken by create is a conflict, not a duplicate
    assert_error(api.post("contact/create", json={"fingerprint": "user-42"}), 409, "CONFLICT")
    assert api.get(f"contact/{first}/fetch").json()["fingerprint"] == "user-42"
    assert api.post("contact/create", json={}).json()["id"]  # a fingerprint is made when absent


def test_contact_ensure_concurrently(api):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: api.post("contact/ensure", json={"fingerprint": "race"}).json()["id"], range(16)))
    assert len(ids) == 1


def test_conversation_with_seed_messages(api):
    created = api.post(
        "conversation/create",
        json={"name": "c", "messages": [{"type": "user", "text": "hi"}, {"type": "bot", "text": "hello"}]},
    ).json()
    assert created["messages"] == [{"type": "user", "text": "hi"}, {"type": "bot", "text": "hello"}]
    listed = api.get(f"conversation/{created['id']}/message/list", params={"order": "asc"}).json()["items"]
    assert [(m["type"], m["text"]) for m in listed] == [("user", "hi"), ("bot", "hello")]
    # a bad seed message writes nothing at all
    assert_error(api.post("conversation/create", json={"messages": [{"type": "user"}]}), 400, "BAD_REQUEST")


def test_message_create_returns_entities(api):
    conversation = api.post("conversation/create", json={}).json()["id"]
    created = api.post(
        f"conversation/{conversation}/message/create",
        json={
            "type": "user",
            "text": "mail ada@example.com",
            "entities": [{"type": "email", "begin": 5, "end": 20, "text": "ada@example.com"}],
        },
    ).json()
    assert created["entities"][0]["text"] == "ada@example.com"


def test_votes_are_ratings_of_the_contact(api, other):
    contact = api.post("contact/create", json={}).json()["id"]
    bot = api.post("bot/create", json={}).json()["id"]
    conversation = api.post("conversation/create", json={"contactId": contact, "botId": bot}).json()["id"]
    message = create(api, f"conversation/{conversation}/message", "message")
    assert api.post(f"bot/{bot}/upvote", json={}).json() == {"id": bot}
    assert api.post(f"conversation/{conversation}/downvote", json={"reason": "meh"}).json() == {"id": conversation}
    assert api.post(f"conversation/{conversation}/message/{message}/upvote", json={"value": 50}).json() == {
        "id": message
    }
    ratings = api.get(f"contact/{contact}/rating/list", params={"order": "asc"}).json()["items"]
    assert [(r["value"], r.get("reason")) for r in ratings] == [(-100, "meh"), (50, None)]
    assert ratings[1]["messageId"] == message and ratings[1]["botId"] == bot
    assert_error(api.post(f"bot/{bot}/upvote", json={"value": 0}), 400, "BAD_REQUEST")
    assert_error(other.post(f"bot/{bot}/upvote", json={}), 404, "NOT_FOUND")


def test_bot_clone(api, other):
    bot = api.post("bot/create", json={"name": "orig", "backstory": "b", "meta": {"k": "v"}}).json()["id"]
    clone = api.post(f"bot/{bot}/clone").json()["id"]
    assert clone != bot
    copy = api.get(f"bot/{clone}/fetch").json()
    assert (copy["name"], copy["backstory"], copy["meta"]) == ("orig", "b", {"k": "v"})
    assert_error(other.post(f"bot/{bot}/clone"), 404, "NOT_FOUND")


def test_contact_lists(api, other):
    contact = api.post("contact/create", json={}).json()["id"]
    conversation = api.post("conversation/create", json={"contactId": contact}).json()["id"]
    memory = api.post("memory/create", json={"text": "likes tea", "contactId": contact}).json()["id"]
    task = api.post("task/create", json={"contactId": contact}).json()["id"]
    api.post("conversation/create", json={})  # not the contact's
    assert [c["id"] for c in api.get(f"contact/{contact}/conversation/list").json()["items"]] == [conversation]
    assert [m["id"] for m in api.get(f"contact/{contact}/memory/list").json()["items"]] == [memory]
    assert [t["id"] for t in api.get(f"contact/{contact}/task/list").json()["items"]] == [task]
    assert api.get(f"contact/{contact}/secret/list").json()["items"] == []
    assert_error(other.get(f"contact/{contact}/conversation/list"), 404, "NOT_FOUND")


def test_task_list_filters(api):
    bot = api.post("bot/create", json={}).json()["id"]
    mine = api.post("task/create", json={"botId": bot}).json()["id"]
    api.post("task/create", json={})
    assert [t["id"] for t in api.get("task/list", params={"botId": bot}).json()["items"]] == [mine]
    assert len(api.get("task/list", params={"status": "idle"}).json()["items"]) == 2
    assert api.get(f"task/{mine}/fetch").json()["status"] == "idle"


def test_dataset_files(api, other):
    dataset = api.post("dataset/create", json={}).json()["id"]
    assert api.get(f"dataset/{dataset}/fetch").json()["store"] == "default"
    files = [api.post("file/create", json={"name": f"f{i}"}).json()["id"] for i in range(3)]
    for f in files:
        assert api.post(f"dataset/{dataset}/file/{f}/attach", json={}).json() == {"id": dataset}
    listed = api.get(f"dataset/{dataset}/file/list", params={"order": "asc", "take": 2}).json()
    assert [f["id"] for f in listed["items"]] == files[:2] and listed["cursor"] == files[1]
    rest = api.get(f"dataset/{dataset}/file/list", params={"order": "asc", "cursor": listed["cursor"]}).json()
    assert [f["id"] for f in rest["items"]] == files[2:]
    api.post(f"dataset/{dataset}/file/{files[0]}/detach", json={"deleteRecords": True})
    assert len(api.get(f"dataset/{dataset}/file/list").json()["items"]) == 2
    other_file = other.post("file/create", json={}).json()["id"]
    assert_error(api.post(f"dataset/{dataset}/file/{other_file}/attach", json={}), 404, "NOT_FOUND")
    assert_error(other.post(f"dataset/{dataset}/file/{other_file}/attach", json={}), 404, "NOT_FOUND")


def test_conversation_contact_upsert(api, other):
    conversation = api.post("conversation/create", json={}).json()["id"]
    made = api.post(f"conversation/{conversation}/contact/upsert", json={"name": "Ada"}).json()["id"]
    assert api.get(f"conversation/{conversation}/fetch").json()["contactId"] == made
    same = api.post(f"conversation/{conversation}/contact/upsert", json={"email": "ada@example.com"}).json()["id"]
    assert same == made
    contact = api.get(f"contact/{made}/fetch").json()
    assert (contact["name"], contact["email"]) == ("Ada", "ada@example.com")
    known = api.post("contact/ensure", json={"fingerprint": "fp-1"}).json()["id"]
    assert api.post(f"conversation/{conversation}/contact/upsert", json={"fingerprint": "fp-1"}).json()["id"] == known
    assert api.get(f"conversation/{conversation}/fetch").json()["contactId"] == known
    assert_error(other.post(f"conversation/{conversation}/contact/upsert", json={}), 404, "NOT_FOUND")


def test_contact_secrets(api):
    contact = api.post("contact/create", json={}).json()["id"]
    secret = api.post("secret/create", json={"value": "v"}).json()["id"]
    assert_error(api.post(f"contact/{contact}/secret/{secret}/verify"), 404, "NOT_FOUND")  # not the contact's
    assert api.post(f"secret/{secret}/verify").json()["status"] == "authenticated"
    personal = api.post("secret/create", json={"value": "v", "kind": "personal", "contactId": contact}).json()["id"]
    assert [s["id"] for s in api.get(f"contact/{contact}/secret/list").json()["items"]] == [personal]
    assert api.post(f"contact/{contact}/secret/{personal}/verify").json()["status"] == "authenticated"
    assert api.post(f"contact/{contact}/secret/{personal}/revoke").json() == {"id": personal}
    assert api.post(f"contact/{contact}/secret/{personal}/verify").json()["status"] == "unauthenticated"


def test_task_cancel(api, other):
    task = api.post("task/create", json={}).json()["id"]
    assert_error(other.post(f"task/{task}/cancel"), 404, "NOT_FOUND")
    assert api.post(f"task/{task}/cancel").json() == {"id": task}
    assert api.get(f"task/{task}/fetch").json()["status"] == "canceled"
    assert [t["id"] for t in api.get("task/list", params={"status": "canceled"}).json()["items"]] == [task]
