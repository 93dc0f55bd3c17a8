"""Conversation compaction over real HTTP: `conversation/{id}/compact` summarises the
messages since the last checkpoint into a `checkpoint` message (the fake provider's
request asserted exactly; the built-in responder's extractive summary), completions
then start from it, nothing to compact answers the conversation's id, another
account's conversation is NOT_FOUND, the stateless `conversation/compact`, and the
official Node and Python SDKs driving it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from chatbotkit import ChatBotKit, types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sdk import root_url, run_node

from botkit.config import Settings
from botkit.engine import compaction, responder, tokens
from botkit.engine import models as engine_models
from botkit.resources import conversation as conversations
from botkit.testing import Reply, assert_error, use_models


@pytest.fixture
def embedded(server):
    """No provider configured: the embedded retrieval responder is the one model."""
    previous = use_models(
        server, engine_models.from_settings(Settings(database_url="x", models="", model_base_url=None))
    )
    yield
    use_models(server, previous)


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def messages_of(api, conversation: str) -> list[dict]:
    return ok(api.get(f"conversation/{conversation}/message/list", params={"order": "asc", "take": 100}))["items"]


SEED = [
    {"type": "user", "text": "My name is Ada and I am planning a trip to Lisbon in May."},
    {"type": "bot", "text": "Lisbon in May is lovely. What is your budget?"},
    {"type": "user", "text": "About 2000 euros."},
    {"type": "bot", "text": "Then a week in Alfama fits."},
]


def conversation_with(api, model: str | None = "fake-model", **fields) -> str:
    body = {"messages": SEED, "backstory": "You are a travel agent.", **fields}
    if model:
        body["model"] = model
    return ok(api.post("conversation/create", json=body))["id"]


# --- with a model ------------------------------------------------------------------


def test_compaction_sends_the_history_and_the_next_completion_starts_from_the_checkpoint(api, models):
    conversation = conversation_with(api)
    newest = messages_of(api, conversation)[-1]["id"]
    models.push(Reply(tokens=["Ada plans", " a week in Lisbon", " (Alfama), budget 2000 euros."]))
    done = ok(api.post(f"conversation/{conversation}/compact"))
    summary = "Ada plans a week in Lisbon (Alfama), budget 2000 euros."
    assert done["text"] == summary and done["usage"] == {"token": 18}  # the fake reports 11 + 7
    assert done["id"] != conversation
    sent = models.bodies[-1]
    assert sent["model"] == "upstream-fake-model" and "tools" not in sent
    assert sent["messages"] == [
        {"role": "system", "content": compaction.INSTRUCTIONS},
        {"role": "user", "content": "\n\n".join(f"{m['type'].title()}: {m['text']}" for m in SEED)},
    ]
    listed = messages_of(api, conversation)  # every message is still listed, the checkpoint last
    assert [m["type"] for m in listed] == ["user", "bot", "user", "bot", "checkpoint"]
    checkpoint = listed[-1]
    assert checkpoint["id"] == done["id"] and checkpoint["text"] == summary
    assert checkpoint["meta"]["compacted"] == {"through": newest, "messages": 4, "omitted": False}
    assert checkpoint["meta"]["model"] == "fake-model"
    (row,) = [u for u in ok(api.get("usage/list"))["items"] if u.get("messageId") == done["id"]]
    assert row["conversationId"] == conversation and row["count"] == 18
    created = ok(api.get("event/log/list", params={"type": "message.create", "meta.messageId": done["id"]}))
    assert len(created["items"]) == 1

    models.push(Reply(tokens=["Ada."]))
    answer = ok(api.post(f"conversation/{conversation}/complete", json={"text": "What is my name?"}))
    assert answer["text"] == "Ada."
    sent = models.bodies[-1]["messages"]
    assert sent == [
        {
            "role": "system",
            "content": f"You are a travel agent.\n\nSummary of the conversation so far:\n{summary}",
        },
        {"role": "user", "content": "What is my name?"},
    ]
    assert not any(m["text"] in str(sent) for m in SEED)  # nothing before the checkpoint is read


def test_a_second_compaction_starts_from_the_first_checkpoint(api, models):
    conversation = conversation_with(api)
    models.push(Reply(tokens=["First summary."]))
    first = ok(api.post(f"conversation/{conversation}/compact"))["id"]
    models.push(Reply(tokens=["Sure."]))
    ok(api.post(f"conversation/{conversation}/complete", json={"text": "Book the flight."}))
    models.push(Reply(tokens=["Second summary."]))
    second = ok(api.post(f"conversation/{conversation}/compact"))
    assert second["id"] not in (first, conversation) and second["text"] == "Second summary."
    assert models.bodies[-1]["messages"][1]["content"] == (
        "Earlier: First summary.\n\nUser: Book the flight.\n\nBot: Sure."
    )
    models.push(Reply(tokens=["ok"]))
    ok(api.post(f"conversation/{conversation}/complete", json={"text": "Thanks"}))
    system = models.bodies[-1]["messages"][0]["content"]
    assert "Second summary." in system and "First summary." not in system
    assert [m["role"] for m in models.bodies[-1]["messages"]] == ["system", "user"]


def test_nothing_to_compact_answers_the_conversation_id(api, models):
    empty = ok(api.post("conversation/create", json={"model": "fake-model"}))["id"]
    assert ok(api.post(f"conversation/{empty}/compact")) == {"id": empty, "text": "", "usage": {"token": 0}}
    conversation = conversation_with(api)
    models.push(Reply(tokens=["Summary."]))
    ok(api.post(f"conversation/{conversation}/compact"))
    calls = len(models.seen)
    again = ok(api.post(f"conversation/{conversation}/compact"))  # nothing since the checkpoint
    assert again == {"id": conversation, "text": "", "usage": {"token": 0}}
    assert len(models.seen) == calls and len(messages_of(api, conversation)) == 5
    assert messages_of(api, empty) == []


def test_newest_messages_fill_the_window_and_the_rest_is_said_to_be_left_out(api, models):
    long = [{"type": "user" if i % 2 == 0 else "bot", "text": f"message {i}: " + "word " * 60} for i in range(8)]
    conversation = ok(api.post("conversation/create", json={"model": "fake-small", "messages": long}))["id"]
    models.push(Reply(tokens=["Short."]))
    done = ok(api.post(f"conversation/{conversation}/compact"))
    transcript = models.bodies[-1]["messages"][1]["content"]
    assert "message 7:" in transcript and "message 0:" not in transcript  # newest-weighted
    meta = messages_of(api, conversation)[-1]["meta"]["compacted"]
    assert meta["omitted"] is True and 0 < meta["messages"] < 8
    assert transcript.startswith("(Earlier messages did not fit and are left out.)\n\n")
    assert transcript.count("\n\n") == meta["messages"]
    assert done["text"] == "Short."
    assert models.bodies[-1]["max_tokens"] == 100  # the model's own output limit


def test_a_checkpoint_covers_what_its_meta_names_and_a_client_checkpoint_covers_itself(api, models):
    conversation = conversation_with(api)
    ids = [m["id"] for m in messages_of(api, conversation)]
    # a compaction that summarised up to the second message, finished after the fourth was stored
    ok(
        api.post(
            f"conversation/{conversation}/message/create",
            json={"type": "checkpoint", "text": "Ada, Lisbon.", "meta": {"compacted": {"through": ids[1]}}},
        )
    )
    models.push(Reply(tokens=["ok"]))
    ok(api.post(f"conversation/{conversation}/complete", json={"text": "Go on"}))
    sent = models.bodies[-1]["messages"]
    assert [m["content"] for m in sent[1:]] == ["About 2000 euros.", "Then a week in Alfama fits.", "Go on"]
    assert sent[0]["content"].endswith("Summary of the conversation so far:\nAda, Lisbon.")
    ok(api.post(f"conversation/{conversation}/message/create", json={"type": "checkpoint", "text": "All of it."}))
    models.push(Reply(tokens=["ok"]))
    ok(api.post(f"conversation/{conversation}/complete", json={"text": "And now?"}))
    sent = models.bodies[-1]["messages"]
    assert [m["content"] for m in sent[1:]] == ["And now?"] and "All of it." in sent[0]["content"]


def test_a_failed_or_empty_summary_stores_nothing(api, models):
    conversation = conversation_with(api)
    models.push(Reply(status=400, body=b'{"error": {"message": "context too long"}}'))
    assert_error(api.post(f"conversation/{conversation}/compact"), 400, "MODEL_BAD_REQUEST")
    models.push(Reply(tokens=["  "]))
    assert_error(api.post(f"conversation/{conversation}/compact"), 502, "MODEL_ERROR")
    assert [m["type"] for m in messages_of(api, conversation)] == ["user", "bot", "user", "bot"]


def test_ownership(api, other, models):
    conversation = conversation_with(api)
    assert_error(other.post(f"conversation/{conversation}/compact"), 404, "NOT_FOUND")
    assert_error(api.post("conversation/nope/compact"), 404, "NOT_FOUND")
    bot = ok(api.post("bot/create", json={"model": "fake-model"}))["id"]
    body = {"botId": bot, "messages": SEED}
    assert_error(other.post("conversation/compact", json=body), 404, "NOT_FOUND")
    assert len(models.seen) == 0 and len(messages_of(api, conversation)) == 4


def test_the_bots_model_summarises_a_conversation_with_a_bot(api, models):
    bot = ok(api.post("bot/create", json={"model": "fake-small"}))["id"]
    conversation = ok(api.post("conversation/create", json={"botId": bot, "messages": SEED}))["id"]
    models.push(Reply(tokens=["Summary."]))
    ok(api.post(f"conversation/{conversation}/compact"))
    assert models.bodies[-1]["model"] == "upstream-fake-small"


def test_stateless_compact(api, models):
    messages = [{"type": "checkpoint", "text": "Ada, Lisbon."}, *SEED[2:], {"type": "reasoning", "text": "hmm"}]
    models.push(Reply(tokens=["Ada, Lisbon, 2000 euros."]))
    done = ok(api.post("conversation/compact", json={"model": "fake-model", "messages": [*SEED[:2], *messages]}))
    assert done == {"text": "Ada, Lisbon, 2000 euros.", "usage": {"token": 18}}
    assert models.bodies[-1]["messages"][1]["content"] == (
        "Earlier: Ada, Lisbon.\n\nUser: About 2000 euros.\n\nBot: Then a week in Alfama fits."
    )
    calls = len(models.seen)
    assert ok(api.post("conversation/compact", json={"messages": []})) == {"text": "", "usage": {"token": 0}}
    assert len(models.seen) == calls
    assert_error(
        api.post("conversation/compact", json={"messages": [{"type": "nope", "text": "x"}]}), 400, "BAD_REQUEST"
    )


def test_the_reads_are_served_by_indexes(database):
    """The last checkpoint, what follows it and what a compaction reads are backward
    index ranges, never a scan of the table or a sort (the partial index
    messages_checkpoint and messages_conversation serve them on a real table)."""

    async def plans() -> list[str]:
        conn = await asyncpg.connect(database)
        try:
            await conn.execute("SET enable_seqscan = off")
            out = []
            for sql, args in (
                (conversations._LAST_CHECKPOINT, ("c", "a")),
                (conversations._AFTER, ("c", "a", "m", 10)),
                (conversations._TO_COMPACT, ("c", "a", "m", 10, 1000)),
            ):
                out.append("\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args)))
            return out
        finally:
            await conn.close()

    for plan in asyncio.run(plans()):  # (which index an empty table's planner picks is its choice)
        assert "Index Scan Backward" in plan and "Seq Scan" not in plan and "Sort" not in plan, plan


# --- the built-in responder --------------------------------------------------------


def test_the_built_in_responder_quotes_the_most_informative_sentences(api, embedded):
    conversation = conversation_with(api, model=None)
    done = ok(api.post(f"conversation/{conversation}/compact"))
    lines = done["text"].split("\n")
    assert lines[0] == responder.SUMMARY_HEADER
    assert "User: My name is Ada and I am planning a trip to Lisbon in May." in lines
    for line in lines[1:]:  # every line quotes a sentence of the conversation
        label, _, quoted = line.partition(": ")
        assert label in ("User", "Bot") and any(quoted in m["text"] for m in SEED), line
    again = ok(api.post("conversation/compact", json={"messages": SEED}))
    assert again["text"] == done["text"]  # deterministic
    assert done["usage"]["token"] > 0
    answer = ok(api.post(f"conversation/{conversation}/complete", json={"text": "What about hotels?"}))
    assert answer["text"]
    assert [m["type"] for m in messages_of(api, conversation)] == [
        "user",
        "bot",
        "user",
        "bot",
        "checkpoint",
        "user",
        "bot",
    ]


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["User", "Bot", "Instruction", "Earlier"]), texts), max_size=12),
    st.integers(0, 400),
)
def test_extractive_summary_is_quoted_bounded_and_deterministic(lines, budget):
    out = responder.summary(lines, budget)
    assert out == responder.summary(lines, budget)
    if not out:
        return
    assert tokens.count(out) <= max(budget, tokens.count(responder.SUMMARY_HEADER)) + len(out.split("\n"))
    source = " ".join(" ".join(t.split()) for _, t in lines)
    for line in out.split("\n")[1:]:
        quoted = line.partition(": ")[2].removesuffix("…")
        assert quoted in source, (line, lines)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["user", "bot", "checkpoint", "activity", "context", "junk"]), "text": texts}
        ),
        max_size=8,
    )
)
def test_junk_is_never_a_500(api, embedded, messages):
    response = api.post("conversation/compact", json={"messages": messages})
    assert response.status_code in (200, 400), response.text


# --- the official SDKs ---------------------------------------------------------------


def test_the_node_sdk_drives_compaction(server, api, other, embedded):
    out = run_node("compaction.mjs", root_url(server), api.token, env={"BOTKIT_OTHER_TOKEN": other.token})
    assert out.count("ok ") == 4, out


async def _python_sdk(base: str, token: str, models) -> None:
    """The Python SDK types both compact routes (ConversationCompactResponse,
    ConversationStatelessCompactResponse) but has no method for them: an app calls
    them through its client_fetch, with the SDK's own parsers."""
    client = ChatBotKit(secret=token, base_url=base)
    created = await client.conversation.create({"model": "fake-model", "messages": SEED})
    models.push(Reply(tokens=["Ada, Lisbon."]))
    compacted = await client.client_fetch(
        f"/api/v1/conversation/{created.id}/compact",
        endpoint="/api/v1/conversation/{conversationId}/compact",
        record={},
        parse=types.ConversationCompactResponse.from_dict,
    )
    assert isinstance(compacted, types.ConversationCompactResponse)
    assert compacted.text == "Ada, Lisbon." and compacted.usage.token == 18
    models.push(Reply(tokens=["Hello Ada."]))
    answer = await client.conversation.complete(created.id, {"text": "Hi again"})
    assert answer.text == "Hello Ada."
    assert models.bodies[-1]["messages"][0]["content"].endswith("Ada, Lisbon.")
    page = await client.client_fetch(
        f"/api/v1/conversation/{created.id}/message/list",
        endpoint="/api/v1/conversation/{conversationId}/message/list",
        query={"take": 100, "order": "asc"},
        parse=types.ConversationMessageListResponse.from_dict,
    )
    assert [m.type.value for m in page.items] == ["user", "bot", "user", "bot", "checkpoint", "user", "bot"]
    models.push(Reply(tokens=["Stateless."]))
    stateless = await client.client_fetch(
        "/api/v1/conversation/compact",
        record={"model": "fake-model", "messages": SEED},
        parse=types.ConversationStatelessCompactResponse.from_dict,
    )
    assert stateless.text == "Stateless."


def test_the_python_sdk_drives_compaction(server, api, models):
    asyncio.run(_python_sdk(root_url(server), api.token, models))
