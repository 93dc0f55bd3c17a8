"""The wire protocol: routes, methods, auth, errors, headers, body limits, JSONL, spec."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import asyncpg
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botkit.actions.base import Stream
from botkit.resources import ROUTES
from botkit.testing import assert_error, start_app


def test_both_prefixes_serve_the_same_routes(make_api):
    v1 = make_api()
    api_v1 = httpx.Client(base_url=str(v1.base_url).replace("/v1/", "/api/v1/"), headers=v1.headers)
    bot = api_v1.post("bot/create", json={"name": "x"}).json()["id"]
    assert v1.get(f"bot/{bot}/fetch").json()["name"] == "x"


def test_unknown_route_and_wrong_method(api, anon):
    assert_error(api.get("nothing/here"), 404, "NOT_FOUND")
    assert_error(api.get("bot/create"), 405, "METHOD_NOT_ALLOWED")
    assert_error(api.post("bot/list"), 405, "METHOD_NOT_ALLOWED")
    assert_error(api.put("bot/create"), 405, "METHOD_NOT_ALLOWED")
    assert_error(api.delete("bot/list"), 405, "METHOD_NOT_ALLOWED")
    assert_error(httpx.get(str(anon.base_url.copy_with(path="/elsewhere"))), 404, "NOT_FOUND")
    assert_error(httpx.post(str(anon.base_url.copy_with(path="/healthz"))), 405, "METHOD_NOT_ALLOWED")
    assert api.get("bot/create").headers["allow"] == "POST, OPTIONS"
    assert api.post("bot/list").headers["allow"] == "GET, HEAD, OPTIONS"
    assert api.post("spec.json").headers["allow"] == "GET, HEAD, OPTIONS"
    assert httpx.post(str(anon.base_url.copy_with(path="/healthz"))).headers["allow"] == "GET, HEAD"
    assert api.options("bot/create").headers["allow"] == "POST, OPTIONS"
    assert api.options("bot/list").headers["allow"] == "GET, HEAD, OPTIONS"


def test_authentication(anon, api, database):
    assert_error(anon.get("bot/list"), 401, "NOT_AUTHENTICATED")
    for header in (
        "Bearer",
        "Basic abc",
        "Bearer nope",
        "Token nope",
        "bk_x",
        "Bearer " + "x" * 600,
        "Bearer " + "x" * 5000,
    ):
        assert_error(anon.get("bot/list", headers={"Authorization": header}), 401, "NOT_AUTHENTICATED")
    assert anon.get("bot/list", headers={"Authorization": f"Token {api.token}"}).status_code == 200
    assert anon.get("bot/list", headers={"Authorization": f"bearer {api.token}"}).status_code == 200

    async def expire_and_revoke():
        from botkit.resources.token import issue_token

        conn = await asyncpg.connect(database)
        try:
            _, expired = await issue_token(conn, api.account_id, expires_at=int(time.time() * 1000) - 1)
            revoked_id, revoked = await issue_token(conn, api.account_id)
            await conn.execute("UPDATE tokens SET revoked_at = 1 WHERE id = $1", revoked_id)
            return expired, revoked
        finally:
            await conn.close()

    expired, revoked = asyncio.run(expire_and_revoke())
    assert (
        "expired"
        in assert_error(anon.get("bot/list", headers={"Authorization": f"Bearer {expired}"}), 401, "NOT_AUTHENTICATED")[
            "message"
        ]
    )
    assert (
        "revoked"
        in assert_error(anon.get("bot/list", headers={"Authorization": f"Bearer {revoked}"}), 401, "NOT_AUTHENTICATED")[
            "message"
        ]
    )


def test_request_id_and_server_timing(api):
    response = api.get("bot/list", headers={"X-Request-Id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.headers["server-timing"].startswith("app;dur=")
    generated = api.get("bot/list").headers["x-request-id"]
    assert len(generated) == 32
    error = api.get("bot/nope/fetch", headers={"X-Request-Id": "err-1"})
    assert error.headers["x-request-id"] == "err-1"
    junk = api.get("bot/list", headers={"X-Request-Id": "x" * 300})
    assert len(junk.headers["x-request-id"]) == 32  # refused, replaced


def test_an_unexpected_failure_is_a_500_with_the_request_id(api, monkeypatch, caplog):
    fetch = next(a for a in ROUTES if a.path == "/bot/{botId}/fetch")

    async def boom(ctx, call):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(fetch, "run", boom)
    response = api.get("bot/x/fetch", headers={"X-Request-Id": "trace-me"})
    body = assert_error(response, 500, "INTERNAL_SERVER_ERROR")
    assert body["requestId"] == "trace-me"
    assert "kaboom" not in response.text  # no internals on the wire


def test_body_limits_and_bad_json(api):
    assert_error(api.post("bot/create", content=b"{not json"), 400, "BAD_REQUEST")
    assert_error(api.post("bot/create", content=b"[1, 2]"), 400, "BAD_REQUEST")
    assert_error(api.post("bot/create", content=b"\xff\xfe"), 400, "BAD_REQUEST")
    big = json.dumps({"name": "x", "backstory": "y" * 70_000}).encode()  # the test server allows 64 KiB
    assert_error(api.post("bot/create", content=big), 413, "CONTENT_TOO_LARGE")

    def chunks():  # no Content-Length: the limit holds while reading
        yield b'{"backstory": "'
        for _ in range(80):
            yield b"z" * 1024
        yield b'"}'

    assert_error(api.post("bot/create", content=chunks()), 413, "CONTENT_TOO_LARGE")
    # an empty body is an empty object, so `curl -X POST` works
    assert api.post("bot/create").status_code == 200
    assert (
        api.post(
            "bot/create", content=b"name=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
        ).status_code
        == 400
    )


def test_meta_limits_name_the_key(api):
    bot = api.post("bot/create", json={}).json()["id"]
    too_many = {f"k{i}": "v" for i in range(51)}
    assert "50" in assert_error(api.post("bot/create", json={"meta": too_many}), 400, "BAD_REQUEST")["message"]
    long_key = "k" * 41
    assert long_key in assert_error(api.post("bot/create", json={"meta": {long_key: 1}}), 400, "BAD_REQUEST")["message"]
    assert (
        "colour"
        in assert_error(api.post(f"bot/{bot}/update", json={"meta": {"colour": "x" * 501}}), 400, "BAD_REQUEST")[
            "message"
        ]
    )
    assert (
        "nested"
        in assert_error(api.post("bot/create", json={"meta": {"nested": {"a": "x" * 600}}}), 400, "BAD_REQUEST")[
            "message"
        ]
    )
    assert (
        "deep"
        in assert_error(api.post(f"bot/{bot}/update", json={"$update": {"deep": "x" * 501}}), 400, "BAD_REQUEST")[
            "message"
        ]
    )
    # merging 30 keys into 30 keys would make 60: refused, and nothing is written
    api.post(f"bot/{bot}/update", json={"meta": {f"a{i}": i for i in range(30)}})
    error = assert_error(
        api.post(f"bot/{bot}/update", json={"$update": {f"b{i}": i for i in range(30)}}), 400, "BAD_REQUEST"
    )
    assert "50" in error["message"]
    assert len(api.get(f"bot/{bot}/fetch").json()["meta"]) == 30
    assert api.post(f"bot/{bot}/update", json={"meta": {"k": "x" * 500}}).status_code == 200
    assert_error(api.post(f"bot/{bot}/update", json={"meta": {"$update": {}, "other": 1}}), 400, "BAD_REQUEST")
    assert_error(api.post(f"bot/{bot}/update", json={"meta": {"a": 1}, "$update": {"b": 1}}), 400, "BAD_REQUEST")


def test_health(server):
    for path in ("/healthz", "/readyz"):
        response = httpx.get(server.url + path)
        assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_spec_is_valid_and_covers_every_route(anon):
    from openapi_spec_validator import validate

    spec = anon.get("spec.json").json()
    validate(spec)
    assert httpx.get(str(anon.base_url.copy_with(path="/api/v1/spec.json"))).json() == spec
    served = {(a.method.lower(), a.path) for a in ROUTES}
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops if m in ("get", "post", "put")}
    assert served <= documented
    assert documented - served == {("get", "/spec.json"), ("get", "/healthz"), ("get", "/readyz")}
    assert spec["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    listing = spec["paths"]["/bot/list"]["get"]
    take = next(p for p in listing["parameters"] if p["name"] == "take")
    assert "100" in (take.get("description", "") + take["schema"].get("description", ""))
    # larger is clamped, not refused (a query's digits are never a JSON number: no bound)
    assert take["schema"]["default"] == 25 and "maximum" not in take["schema"]
    assert "application/jsonl" in listing["responses"]["200"]["content"]
    assert "requestBody" in spec["paths"]["/bot/create"]["post"]
    create = spec["components"]["schemas"]["BotCreate"]["properties"]
    assert create["meta"]["anyOf"][0]["maxProperties"] == 50
    assert spec["paths"]["/bot/{botId}/fetch"]["get"]["responses"]["404"]


def test_every_documented_route_is_served(anon):
    """Each path of the spec reaches an action (401 without a token), none is a 404."""
    spec = anon.get("spec.json").json()
    for path, ops in spec["paths"].items():
        if path in ("/healthz", "/readyz"):
            continue
        concrete = path.replace("{", "").replace("}", "")
        for method in ops:
            if method not in ("get", "post", "put"):
                continue
            response = anon.request(method.upper(), concrete.lstrip("/"))
            assert response.status_code in (200, 401), (method, path, response.text)


def test_jsonl_stream_stops_when_the_client_goes_away(api, server):
    conversation = api.post(
        "conversation/create", json={"messages": [{"type": "user", "text": "x" * 10} for _ in range(1000)]}
    ).json()["id"]
    pool = server.app.state.botkit.pool
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            (
                f"GET /v1/conversation/{conversation}/message/list HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {api.token}\r\nAccept: application/jsonl\r\n\r\n"
            ).encode()
        )
        assert b"200 OK" in sock.recv(4096)
    deadline = time.monotonic() + 2
    while len(pool._idle) != pool.size:  # every connection back in the pool
        assert time.monotonic() < deadline, "the stream kept a database connection"
        time.sleep(0.02)
    assert api.get("bot/list").status_code == 200


def test_stream_is_cancelled_on_disconnect():
    """The transport's stream loop ends within a second of http.disconnect, and the
    producer (an endless generator) is closed, not left running."""
    from botkit.transport.app import Dispatcher

    state = {"closed": False, "chunks": 0}

    async def endless():
        try:
            while True:
                state["chunks"] += 1
                yield b'{"type":"item","data":{}}\n'
                await asyncio.sleep(0.01)
        finally:
            state["closed"] = True

    async def main():
        sent = []
        disconnect = asyncio.Event()

        async def send(message):
            sent.append(message)

        async def receive():
            await disconnect.wait()
            return {"type": "http.disconnect"}

        task = asyncio.create_task(Dispatcher._stream(None, {}, receive, send, Stream(endless()), "rid", 0.0))
        await asyncio.sleep(0.1)
        disconnect.set()
        await asyncio.wait_for(task, 1)
        return sent

    sent = asyncio.run(main())
    assert state["closed"]
    produced = state["chunks"]
    time.sleep(0.05)
    assert state["chunks"] == produced
    assert sent[0]["status"] == 200


def test_error_after_the_first_byte_is_an_error_line():
    from botkit.errors import BadRequest
    from botkit.transport.app import Dispatcher

    async def failing():
        yield b'{"type":"item","data":{}}\n'
        raise BadRequest("gone wrong")

    async def main():
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            await asyncio.sleep(10)

        await Dispatcher._stream(None, {}, receive, send, Stream(failing()), "rid", 0.0)
        return b"".join(m.get("body", b"") for m in sent[1:])

    body = asyncio.run(main())
    lines = body.decode().split("\n")
    assert lines[-1] == ""
    assert json.loads(lines[1]) == {"type": "error", "data": {"message": "gone wrong", "code": "BAD_REQUEST"}}


# --- what browsers and the official SDKs need of every route ---------------------------


def test_cors_preflight_and_headers(api, anon):
    preflight = anon.request(
        "OPTIONS",
        "conversation/01m84tf0w9f3se992gd2fj0kwb/complete",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-runas-user-id",
        },
    )
    assert preflight.status_code == 204 and preflight.content == b""
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "x-runas-user-id" in preflight.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in preflight.headers  # bearer headers, never cookies
    for response in (
        api.get("bot/list", headers={"Origin": "https://app.example.com"}),
        anon.get("bot/list", headers={"Origin": "https://app.example.com"}),  # errors too
    ):
        assert response.headers["access-control-allow-origin"] == "*"
        assert "x-request-id" in response.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in api.get("bot/list").headers  # not a browser


def test_cors_origins_can_be_narrowed(database):
    srv = start_app(database, cors_origins="https://a.example, https://b.example")
    try:
        with httpx.Client(base_url=srv.url + "/v1/") as c:
            ok = c.get("bot/list", headers={"Origin": "https://b.example"})
            assert ok.headers["access-control-allow-origin"] == "https://b.example" and ok.headers["vary"] == "origin"
            assert (
                "access-control-allow-origin"
                not in c.get("bot/list", headers={"Origin": "https://evil.example"}).headers
            )
    finally:
        srv.stop()


def test_head_on_every_get_route(api):
    bot = api.post("bot/create", json={"name": "h"}).json()["id"]
    got, head = api.get(f"bot/{bot}/fetch"), api.head(f"bot/{bot}/fetch")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    assert api.head("bot/list").status_code == 200
    assert_error(api.post(f"bot/{bot}/fetch"), 405, "METHOD_NOT_ALLOWED")


def test_fields_the_sdks_read_as_always_there(api):
    models = api.get("platform/model/list").json()["items"]
    assert all(m["type"] == "language" and isinstance(m["default"], bool) for m in models)
    assert api.get("bot/list", params={"meta.none": "x"}).json() == {"items": [], "cursor": ""}
    contact = api.post("contact/create", json={}).json()["id"]
    api.post("secret/create", json={"contactId": contact, "value": "s"})
    assert api.get(f"contact/{contact}/secret/list").json()["items"][0]["type"] == "plain"


def test_integers_stay_integers(api):
    child = api.post("partner/user/create", json={"limits": {"conversations": 5, "database": {"datasets": 3}}})
    fetched = api.get(f"partner/user/{child.json()['id']}/fetch")
    assert b'"conversations":5' in fetched.content and b"5.0" not in fetched.content


SAFE = 2**53
BEYOND = st.one_of(st.integers(min_value=SAFE + 1), st.integers(max_value=-SAFE - 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    big=BEYOND,
    where=st.sampled_from(
        [
            ("partner/user/create", lambda n: {"limits": {"conversations": n}}),
            ("partner/user/create", lambda n: {"limits": {"database": {"datasets": n}}}),
            ("bot/create", lambda n: {"meta": {"n": n}}),
            ("bot/create", lambda n: {"meta": {"deep": {"list": [1, n]}}}),
            ("contact/create", lambda n: {"verifiedAt": n}),
            ("conversation/create", lambda n: {"messages": [{"type": "user", "text": "x", "meta": {"n": n}}]}),
            ("task/create", lambda n: {"maxCalls": n}),
        ]
    ),
)
def test_integers_beyond_2_53_are_refused(api, big, where):
    """Was: 9007199254740993 read back as 9007199254740992.0, an Amount's float branch
    rounding what its int branch refused, and meta keeping what JavaScript rounds."""
    route, body = where
    assert_error(api.post(route, json=body(big)), 400, "BAD_REQUEST")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(min_value=-SAFE, max_value=SAFE), text=st.text(alphabet="0123456789", min_size=16, max_size=40))
def test_integers_up_to_2_53_read_back_exactly(api, n, text):
    """And the check does not refuse long digit runs in strings, nor safe integers."""
    made = api.post("bot/create", json={"name": text, "meta": {"n": n, "s": text}})
    assert made.status_code == 200, made.text
    fetched = api.get(f"bot/{made.json()['id']}/fetch").json()
    assert fetched["meta"] == {"n": n, "s": text} and type(fetched["meta"]["n"]) is int and fetched["name"] == text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(min_value=0, max_value=SAFE), fraction=st.sampled_from([0.5, 0.25, 0.1]))
def test_an_integral_float_is_an_integer(api, n, fraction):
    """JSON has one number type and JSON Schema calls 1.0 an integer (schemathesis sent
    `verifiedAt: 1.0`): an integer field takes it as the integer; 1.5 stays refused."""
    written = b'{"verifiedAt": %s, "meta": {"n": %s}}' % (repr(float(n)).encode(), repr(float(n)).encode())
    made = api.post("contact/create", content=written, headers={"Content-Type": "application/json"})
    assert made.status_code == 200, made.text
    fetched = api.get(f"contact/{made.json()['id']}/fetch").json()
    assert fetched["verifiedAt"] == n and type(fetched["verifiedAt"]) is int
    assert fetched["meta"] == {"n": n}
    if n < 2**40:  # (beyond, n + 0.1 rounds to an integer)
        refused = b'{"verifiedAt": %s}' % repr(n + fraction).encode()
        assert_error(api.post("contact/create", content=refused), 400, "BAD_REQUEST")


def test_spec_and_server_agree_on_the_edges(api, anon):
    """Schemathesis found these: an empty query value is the parameter's absence (the last
    page answers `"cursor": ""` and clients send it back); `meta` and `$update` together
    are refused, and the spec says so; a stateless completion needs a message to answer."""
    assert api.get("bot/list", params={"cursor": "", "meta": "", "take": ""}).status_code == 200
    spec = anon.get("spec.json").json()
    cursor = next(p for p in spec["paths"]["/bot/list"]["get"]["parameters"] if p["name"] == "cursor")
    assert cursor["allowEmptyValue"] and re.fullmatch(cursor["schema"]["pattern"].strip("^$"), "")
    update = spec["paths"]["/bot/{botId}/update"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert spec["components"]["schemas"][update["$ref"].rsplit("/", 1)[1]]["not"] == {"required": ["meta", "$update"]}
    bot = api.post("bot/create", json={}).json()["id"]
    assert_error(api.post(f"bot/{bot}/update", json={"meta": {}, "$update": {}}), 400, "BAD_REQUEST")
    complete = spec["paths"]["/conversation/complete"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body = spec["components"]["schemas"][complete["$ref"].rsplit("/", 1)[1]]
    assert body["properties"]["messages"]["contains"]["properties"]["type"]["enum"] == ["user", "bot"]
    assert_error(api.post("conversation/complete", json={"messages": []}), 400, "BAD_REQUEST")


def test_what_schemathesis_found_the_server_takes_as_the_spec_says(api):
    """The acceptance checks' finds, each as the server now answers it: NUL characters
    (PostgreSQL stores none) are dropped, not a 400 from the database; a message's
    `entities: null` on update is `[]`; a number beyond 2**53 is refused in exponent form
    too (JSON Schema calls 1e20 an integer); a query key given twice is refused."""
    made = api.post("bot/create", content=b'{"name": "a\\u0000b", "meta": {"k\\u0000": "v\\u0000"}}')
    assert made.status_code == 200, made.text
    assert api.get(f"bot/{made.json()['id']}/fetch").json()["name"] == "ab"
    assert api.get("bot/list", params={"meta[k\x00]": "v\x00"}).json()["items"][0]["id"] == made.json()["id"]
    conversation = api.post("conversation/create", json={}).json()["id"]
    message = api.post(f"conversation/{conversation}/message/create", json={"type": "user", "text": "hi"}).json()
    updated = api.post(f"conversation/{conversation}/message/{message['id']}/update", json={"entities": None})
    assert updated.status_code == 200, updated.text
    assert api.get(f"conversation/{conversation}/message/{message['id']}/fetch").json().get("entities", []) == []
    for number in (b"1e20", b"-9.1E+15", b"12345678901234567890.5"):
        assert_error(api.post("bot/create", content=b'{"meta": {"n": %s}}' % number), 400, "BAD_REQUEST")
    assert api.post("bot/create", content=b'{"meta": {"n": 1e15, "m": 1.5e-20}}').status_code == 200
    assert_error(api.get("bot/list?take=1&take=2"), 400, "BAD_REQUEST")
    # a body of what Python calls whitespace but JSON does not (a form feed) is not `{}`
    assert_error(api.post("bot/create", content=b"\x0c\t"), 400, "BAD_REQUEST")
    assert api.post("bot/create", content=b" \t\r\n").status_code == 200  # JSON's whitespace: `{}`
    assert_error(api.get("bot/list?meta.a=1&meta[a]=2"), 400, "BAD_REQUEST")


def _spec_property(anon, component: str, name: str) -> dict:
    schema = anon.get("spec.json").json()["components"]["schemas"][component]["properties"][name]
    return next((o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"), schema)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_schedule_and_time_zone_the_spec_describes_is_taken(api, anon, data):
    schedule = _spec_property(anon, "TaskCreate", "schedule")
    timezone = _spec_property(anon, "TaskCreate", "timezone")
    body = {
        "schedule": data.draw(st.from_regex(schedule["pattern"], fullmatch=True)),
        "timezone": data.draw(st.sampled_from(timezone["enum"])),
    }
    made = api.post("task/create", json=body)
    assert made.status_code == 200, (body, made.text)


def test_a_scope_the_spec_describes_names_a_route(api, anon):
    """The spec lists, per resource path, the actions a scope may name (what
    check_scopes takes): each one makes a token; an action of another resource does not."""
    choices = anon.get("spec.json").json()["components"]["schemas"]["Scope"]["anyOf"]
    child = api.post("partner/user/create", json={}).json()["id"]

    def resources(choice: dict) -> list[str]:  # one resource path (const) or several sharing the actions
        named = choice["properties"]["resource"]
        return [named["const"]] if "const" in named else named["enum"]

    for choice in choices[:: max(1, len(choices) // 12)]:
        actions = choice["properties"]["actions"]["anyOf"][0]["items"]["enum"]
        for resource in resources(choice)[:3]:
            scope = {"resource": resource, "actions": actions[:1]}
            answer = api.post(f"partner/user/{child}/token/create", json={"scopes": [scope]})
            assert answer.status_code == 200, (scope, answer.text)
    bot = next(c for c in choices if "bot" in resources(c))
    assert "publish" not in bot["properties"]["actions"]["anyOf"][0]["items"]["enum"]
    refused = api.post(
        f"partner/user/{child}/token/create", json={"scopes": [{"resource": "bot", "actions": ["publish"]}]}
    )
    assert_error(refused, 400, "BAD_REQUEST")


def test_a_path_parameter_the_server_checks_has_its_shape_in_the_spec(api, anon):
    """channelId is held to a shape (a 400 otherwise), so the spec states it; ids that
    name nothing are a 404 and stay plain strings."""
    spec = anon.get("spec.json").json()["paths"]
    (channel,) = spec["/channel/{channelId}/publish"]["post"]["parameters"]
    assert channel["schema"]["pattern"] and channel["schema"]["type"] == "string"
    (bot,) = spec["/bot/{botId}/fetch"]["get"]["parameters"]
    assert bot["schema"] == {"type": "string"}
    assert api.post("channel/" + "c" * 16 + "/publish", json={"message": {"a": 1}}).status_code == 200
    assert_error(api.post("channel/short/publish", json={"message": {}}), 400, "BAD_REQUEST")
