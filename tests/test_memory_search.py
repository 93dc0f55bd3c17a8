"""Memory search (issue 14): memory/search (narrowed by botId and contactId),
bot/{id}/memory/search and contact/{id}/memory/search, on the retrieval engine of
dataset records: the best matches first, typos forgiven, other accounts' never."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botkit.testing import assert_error


def remember(api, text: str, **fields) -> str:
    answer = api.post("memory/create", json={"text": text, **fields})
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def found(answer) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [m["text"] for m in answer.json()["items"]]


def test_memory_search_finds_the_best_matches_of_the_account_bot_and_contact(api, other):
    bot = api.post("bot/create", json={}).json()["id"]
    contact = api.post("contact/create", json={"name": "Ann"}).json()["id"]
    tea = remember(api, "Ann prefers green tea in the afternoon.", contactId=contact, botId=bot, meta={"k": "v"})
    remember(api, "Ann's dog is called Biscuit.", contactId=contact)
    remember(api, "The office coffee machine is broken.", botId=bot)
    remember(other, "Ann prefers black tea.")  # another account's: never found

    answer = api.post("memory/search", json={"search": "what tea does Ann prefer"})
    assert found(answer)[0] == "Ann prefers green tea in the afternoon."
    assert answer.json()["items"][0] == {
        "id": tea,
        "text": "Ann prefers green tea in the afternoon.",
        "meta": {"k": "v"},
    }
    assert "Ann prefers black tea." not in found(answer)
    assert found(api.post("memory/search", json={"search": "tea", "botId": bot})) == [
        "Ann prefers green tea in the afternoon."
    ]
    assert (
        found(api.post(f"contact/{contact}/memory/search", json={"search": "dog"}))[0] == "Ann's dog is called Biscuit."
    )
    assert found(api.post(f"bot/{bot}/memory/search", json={"search": "coffee"})) == [
        "The office coffee machine is broken."
    ]
    assert found(api.post(f"bot/{bot}/memory/search", json={"search": "dog"})) == []
    assert (
        found(api.post("memory/search", json={"search": "cofee machin"}))[0] == "The office coffee machine is broken."
    )


def test_memory_search_of_a_missing_or_foreign_parent_is_404_and_bad_bodies_400(api, other):
    bot = api.post("bot/create", json={}).json()["id"]
    contact = api.post("contact/create", json={}).json()["id"]
    assert_error(other.post(f"bot/{bot}/memory/search", json={"search": "x"}), 404, "NOT_FOUND")
    assert_error(other.post(f"contact/{contact}/memory/search", json={"search": "x"}), 404, "NOT_FOUND")
    assert_error(api.post("bot/nope/memory/search", json={"search": "x"}), 404, "NOT_FOUND")
    for body in ({}, {"search": ""}, {"search": 3}, {"search": "x" * 3000}):
        assert_error(api.post("memory/search", json=body), 400, "BAD_REQUEST")


@pytest.fixture(scope="module")
def two_accounts(make_api):
    mine, theirs = make_api(), make_api()
    remember(mine, "Ann prefers green tea.")
    remember(theirs, "Bob prefers coffee.")
    return mine, theirs


@settings(max_examples=40, deadline=None)
@given(query=st.text(min_size=1, max_size=200))
def test_any_query_is_answered_and_only_with_the_accounts_memories(two_accounts, query):
    mine, _ = two_accounts
    answer = mine.post("memory/search", json={"search": query})
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 200:
        assert set(found(answer)) <= {"Ann prefers green tea."}
