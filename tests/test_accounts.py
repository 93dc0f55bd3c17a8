"""Partner sub-accounts, run-as, scoped tokens, session tokens, limits and rate limits."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from botkit.testing import assert_error, start_app

_CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def client(server, token: str, run_as: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"}
    if run_as:
        headers["X-RunAs-UserId"] = run_as
    made = httpx.Client(base_url=server.url + "/v1/", headers=headers, timeout=30)
    _CLIENTS.append(made)
    return made


def make_child(api, **fields) -> str:
    response = api.post("partner/user/create", json=fields)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def child_token(api, child: str, **fields) -> str:
    response = api.post(f"partner/user/{child}/token/create", json=fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "token", "createdAt"}
    return body["token"]


# --- partner users and their tokens --------------------------------------------


def test_partner_users_and_tokens(api, other, server):
    child = make_child(api, name="Kid", email="kid@example.com", limits={"conversations": 10})
    fetched = api.get(f"partner/user/{child}/fetch").json()
    assert (fetched["name"], fetched["email"], fetched["limits"]) == ("Kid", "kid@example.com", {"conversations": 10})
    assert [u["id"] for u in api.get("partner/user/list").json()["items"]] == [child]
    assert api.get("partner/user/list", headers={"Accept": "application/jsonl"}).text.count("\n") == 1
    assert_error(other.get(f"partner/user/{child}/fetch"), 404, "NOT_FOUND")

    secret = child_token(api, child, name="app")
    tokens = api.get(f"partner/user/{child}/token/list").json()["items"]
    assert len(tokens) == 1 and tokens[0]["name"] == "app"
    assert secret not in api.get(f"partner/user/{child}/token/list").text  # shown once, never again
    token_id = tokens[0]["id"]
    assert api.post(f"partner/user/{child}/token/{token_id}/update", json={"name": "renamed"}).json() == {
        "id": token_id
    }
    assert api.get(f"partner/user/{child}/token/list").json()["items"][0]["name"] == "renamed"
    assert_error(other.post(f"partner/user/{child}/token/create", json={}), 404, "NOT_FOUND")
    assert_error(other.get(f"partner/user/{child}/token/list"), 404, "NOT_FOUND")
    assert_error(other.post(f"partner/user/{child}/token/{token_id}/delete"), 404, "NOT_FOUND")

    as_child = client(server, secret)
    bot = as_child.post("bot/create", json={"name": "child's"}).json()["id"]
    assert_error(api.get(f"bot/{bot}/fetch"), 404, "NOT_FOUND")  # the parent's own account is another
    assert api.post(f"partner/user/{child}/token/{token_id}/delete").json() == {"id": token_id}
    assert_error(as_child.get("bot/list"), 401, "NOT_AUTHENTICATED")


def test_run_as(api, other, server, make_api):
    first, second = make_child(api), make_child(api)
    first_token = child_token(api, first)
    as_first = client(server, api.token, run_as=first)
    bot = as_first.post("bot/create", json={"name": "made by parent"}).json()["id"]
    assert client(server, first_token).get(f"bot/{bot}/fetch").json()["name"] == "made by parent"
    assert_error(api.get(f"bot/{bot}/fetch"), 404, "NOT_FOUND")
    # header name is case-insensitive
    lower = api.get(f"bot/{bot}/fetch", headers={"x-runas-userid": first})
    assert lower.status_code == 200
    refused = [
        client(server, first_token, run_as=second),  # a sibling
        client(server, first_token, run_as=api.account_id),  # its parent
        client(server, other.token, run_as=first),  # a stranger
        client(server, api.token, run_as="01m84tf0w9f3se992gd2fj0kwb"),  # unknown
        client(server, api.token, run_as=api.account_id),  # itself is not its child
    ]
    grandchild = client(server, first_token).post("partner/user/create", json={}).json()["id"]
    refused.append(client(server, api.token, run_as=grandchild))  # not a direct child
    refused.append(client(server, first_token, run_as=grandchild))  # a child's token cannot run as anyone
    for c in refused:
        assert_error(c.get("bot/list"), 401, "NOT_AUTHORIZED")
    # the SDKs' spelling, and a direct child by email (case-insensitive)
    assert api.get(f"bot/{bot}/fetch", headers={"X-RunAs-User-Id": first}).status_code == 200
    api.post(f"partner/user/{first}/update", json={"email": "First.Child@example.com"})
    by_email = api.get(f"bot/{bot}/fetch", headers={"x-runas-child-user-email": "first.child@EXAMPLE.com"})
    assert by_email.status_code == 200, by_email.text
    for email in ("nobody@example.com", "", "first.child@example.com.evil"):
        assert_error(api.get("bot/list", headers={"x-runas-child-user-email": email}), 401, "NOT_AUTHORIZED")
    assert_error(
        other.get("bot/list", headers={"x-runas-child-user-email": "first.child@example.com"}), 401, "NOT_AUTHORIZED"
    )


def test_deleting_a_child_deletes_what_it_owns(api, server, database):
    child = make_child(api)
    secret = child_token(api, child)
    as_child = client(server, secret)
    bot = as_child.post("bot/create", json={}).json()["id"]
    assert api.post(f"partner/user/{child}/delete").json() == {"id": child}
    assert_error(as_child.get("bot/list"), 401, "NOT_AUTHENTICATED")
    assert_error(client(server, api.token, run_as=child).get(f"bot/{bot}/fetch"), 401, "NOT_AUTHORIZED")
    assert_error(api.get(f"partner/user/{child}/fetch"), 404, "NOT_FOUND")


def test_child_limits(api, server):
    child = make_child(api, limits={"conversations": 2, "messages": 3, "bots": 1, "database": {"datasets": 1}})
    as_child = client(server, api.token, run_as=child)
    assert as_child.post("bot/create", json={}).status_code == 200
    error = assert_error(as_child.post("bot/create", json={}), 429, "LIMITS_REACHED")
    assert "bots" in error["message"]
    assert as_child.post("dataset/create", json={}).status_code == 200
    assert "datasets" in assert_error(as_child.post("dataset/create", json={}), 429, "LIMITS_REACHED")["message"]
    conversation = as_child.post("conversation/create", json={"messages": [{"type": "user", "text": "a"}] * 2}).json()[
        "id"
    ]
    assert (
        "messages"
        in assert_error(
            as_child.post("conversation/create", json={"messages": [{"type": "user", "text": "a"}] * 2}),
            429,
            "LIMITS_REACHED",
        )["message"]
    )
    assert (
        as_child.post(f"conversation/{conversation}/message/create", json={"type": "user", "text": "3"}).status_code
        == 200
    )
    assert_error(
        as_child.post(f"conversation/{conversation}/message/create", json={"type": "user", "text": "4"}),
        429,
        "LIMITS_REACHED",
    )
    assert as_child.post("conversation/create", json={}).status_code == 200
    assert (
        "conversations" in assert_error(as_child.post("conversation/create", json={}), 429, "LIMITS_REACHED")["message"]
    )
    # raising the limit lets it go on; the parent itself has no limits
    api.post(f"partner/user/{child}/update", json={"limits": {"bots": 5}})
    assert as_child.post("bot/create", json={}).status_code == 200
    assert api.post("bot/create", json={}).status_code == 200


# --- scoped tokens ----------------------------------------------------------------


def test_scoped_tokens(api, server):
    child = make_child(api)
    as_child = client(server, api.token, run_as=child)
    bot, other_bot = (as_child.post("bot/create", json={}).json()["id"] for _ in range(2))
    read_only = client(server, child_token(api, child, scopes=[{"resource": "bot", "actions": ["fetch", "list"]}]))
    assert read_only.get("bot/list").status_code == 200
    assert read_only.get(f"bot/{bot}/fetch").status_code == 200
    assert_error(read_only.post("bot/create", json={}), 401, "NOT_AUTHORIZED")
    assert_error(read_only.post(f"bot/{bot}/delete"), 401, "NOT_AUTHORIZED")
    assert_error(read_only.get("dataset/list"), 401, "NOT_AUTHORIZED")
    one_bot = client(server, child_token(api, child, scopes=[{"resource": "bot", "ids": [bot]}]))
    assert one_bot.post(f"bot/{bot}/update", json={"name": "ok"}).status_code == 200
    assert_error(one_bot.get(f"bot/{other_bot}/fetch"), 401, "NOT_AUTHORIZED")
    assert_error(one_bot.get("bot/list"), 401, "NOT_AUTHORIZED")
    assert_error(
        api.post(f"partner/user/{child}/token/create", json={"scopes": [{"actions": ["x"]}]}), 400, "BAD_REQUEST"
    )


@pytest.mark.parametrize(
    "scope, route, body",
    [  # the review's findings: a scope read by a route's first and last words reached these
        ({"resource": "conversation", "actions": ["create"]}, "conversation/{conversation}/session/create", {}),
        (
            {"resource": "conversation", "actions": ["create"]},
            "conversation/{conversation}/message/create",
            {"type": "user", "text": "x"},
        ),
        ({"resource": "dataset", "actions": ["create"]}, "dataset/{dataset}/record/create", {"text": "x"}),
        ({"resource": "contact", "actions": ["list"]}, "contact/{contact}/secret/list", None),
        ({"resource": "contact", "actions": ["list"]}, "contact/{contact}/memory/list", None),
        ({"resource": "contact", "actions": ["list"]}, "contact/{contact}/conversation/list", None),
        ({"resource": "contact", "actions": ["list"]}, "contact/{contact}/task/list", None),
        ({"resource": "conversation", "actions": ["list"]}, "conversation/{conversation}/message/list", None),
        ({"resource": "skillset", "actions": ["list"]}, "skillset/{skillset}/ability/list", None),
        ({"resource": "bot", "actions": ["fetch"]}, "bot/{bot}/usage/fetch", None),
    ],
)
def test_nested_routes_need_their_own_scope(api, server, scope, route, body):
    child = make_child(api)
    as_child = client(server, api.token, run_as=child)
    own = {
        "conversation": as_child.post("conversation/create", json={}).json()["id"],
        "dataset": as_child.post("dataset/create", json={}).json()["id"],
        "contact": as_child.post("contact/create", json={}).json()["id"],
        "skillset": as_child.post("skillset/create", json={}).json()["id"],
        "bot": as_child.post("bot/create", json={}).json()["id"],
    }
    path = route.format(**own)
    nested = scope["resource"] + "/" + route.split("/")[2]

    def call(c):
        return c.post(path, json=body) if body is not None or path.endswith("create") else c.get(path)

    assert_error(call(client(server, child_token(api, child, scopes=[scope]))), 401, "NOT_AUTHORIZED")
    allowed = client(server, child_token(api, child, scopes=[{**scope, "resource": nested}]))
    assert call(allowed).status_code == 200, (nested, call(allowed).text)
    # and the nested scope reaches nothing of its parent's
    assert_error(allowed.get(f"{scope['resource']}/list"), 401, "NOT_AUTHORIZED")


@pytest.mark.parametrize(
    "scopes",
    [
        [],
        [{"resource": "bot", "actions": []}],
        [{"resource": "bot", "ids": []}],
        [{"resource": "bots"}],
        [{"resource": "conversation", "actions": ["subscribe"]}],
        [{"resource": "*", "actions": ["frobnicate"]}],
    ],
)
def test_scopes_that_name_nothing_are_refused(api, scopes):
    """An empty list used to mean "no restriction"; a typo granted nothing, silently."""
    child = make_child(api)
    assert_error(api.post(f"partner/user/{child}/token/create", json={"scopes": scopes}), 400, "BAD_REQUEST")


# --- session tokens ---------------------------------------------------------------


def test_conversation_session(api, server):
    conversation = api.post("conversation/create", json={"messages": [{"type": "user", "text": "hi"}]}).json()["id"]
    other_conversation = api.post("conversation/create", json={}).json()["id"]
    created = api.post(f"conversation/{conversation}/session/create", json={"durationInSeconds": 60}).json()
    assert set(created) == {"id", "token", "expiresAt"}
    assert abs(created["expiresAt"] - (time.time() + 60) * 1000) < 5000
    widget = client(server, created["token"])
    routes = jwt.decode(created["token"], options={"verify_signature": False})["routes"]
    assert {r.rsplit("/", 1)[1] for r in routes} == {
        "fetch",
        "list",
        "complete",
        "dispatch",
        "send",
        "receive",
        "publish",
        "subscribe",
        "upload",
    }
    assert all(r.startswith((f"/conversation/{conversation}/", f"/channel/{conversation}:*/")) for r in routes), routes
    assert widget.get(f"conversation/{conversation}/fetch").json()["id"] == conversation
    assert widget.get(f"conversation/{conversation}/message/list").json()["items"][0]["text"] == "hi"
    for response in (
        widget.get(f"conversation/{other_conversation}/fetch"),
        widget.get("conversation/list"),
        widget.get("bot/list"),
        widget.post(f"conversation/{conversation}/update", json={"name": "x"}),
        widget.post(f"conversation/{conversation}/delete"),
        widget.post(f"conversation/{conversation}/session/create", json={}),
        client(server, created["token"], run_as=api.account_id).get(f"conversation/{conversation}/fetch"),
    ):
        assert_error(response, 401, "NOT_AUTHORIZED")
    assert created["id"] == conversation  # the reference: the session's id is the conversation's
    longest = api.post(f"conversation/{conversation}/session/create", json={"durationInSeconds": 10**9}).json()
    assert abs(longest["expiresAt"] - (time.time() + 86_400) * 1000) < 5000  # clamped to 24 h
    assert_error(
        api.post(f"conversation/{conversation}/session/create", json={"durationInSeconds": 0}), 400, "BAD_REQUEST"
    )
    assert_error(api.post("conversation/01m84tf0w9f3se992gd2fj0kwb/session/create", json={}), 404, "NOT_FOUND")


def test_bot_session_creates_the_conversation(api, server, other):
    bot = api.post("bot/create", json={"name": "helper"}).json()["id"]
    created = api.post(
        f"bot/{bot}/session/create",
        json={"messages": [{"type": "bot", "text": "How can I help?"}], "meta": {"page": "/pricing"}},
    ).json()
    assert created["id"] == bot and created["messages"] == [{"type": "bot", "text": "How can I help?"}]
    widget = client(server, created["token"])
    conversation = widget.get(f"conversation/{created['conversationId']}/fetch").json()
    assert conversation["botId"] == bot and conversation["meta"] == {"page": "/pricing"}
    assert_error(other.post(f"bot/{bot}/session/create", json={}), 404, "NOT_FOUND")


def test_forged_session_tokens_are_refused(api, server):
    conversation = api.post("conversation/create", json={}).json()["id"]
    good = api.post(f"conversation/{conversation}/session/create", json={}).json()["token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    key = server.app.state.botkit.session_key
    route = f"conversation/{conversation}/fetch"

    def forged(**changes):
        return {**claims, **changes}

    cases = {
        "wrong signature": jwt.encode(claims, b"not the server key" * 2, algorithm="HS256"),
        "another server": jwt.encode(claims, b"x" * 32, algorithm="HS256"),
        "wrong audience": jwt.encode(forged(aud="someone-else"), key, algorithm="HS256"),
        "expired": jwt.encode(forged(exp=int(time.time()) - 10), key, algorithm="HS256"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "tampered payload": good.split(".")[0]
        + "."
        + jwt.encode(forged(routes=["/bot/list"]), key, algorithm="HS256").split(".")[1]
        + "."
        + good.split(".")[2],
        "no expiry": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, key, algorithm="HS256"),
    }
    for name, token in cases.items():
        response = client(server, token).get(route)
        assert response.status_code == 401, name
        assert response.json()["code"] == "NOT_AUTHENTICATED", name
    # a valid token for another conversation, or with routes it was not given
    other_conversation = api.post("conversation/create", json={}).json()["id"]
    assert_error(client(server, good).get(f"conversation/{other_conversation}/fetch"), 401, "NOT_AUTHORIZED")
    assert client(server, good).get(route).status_code == 200


# --- rate limits --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def limited(database):
    srv = start_app(
        database,
        rate_limit=5,
        rate_limit_account=8,
        rate_limit_messages=2,
        rate_limit_history=3,
        rate_limit_auth_failures=4,
    )
    clock = Clock()
    srv.app.state.botkit.limiter.clock = clock
    yield srv, clock
    srv.stop()


def test_rate_limit_headers_count_down_and_reset(limited, make_api):
    srv, clock = limited
    api = make_api()
    c = client(srv, api.token)
    remaining = []
    for _ in range(5):
        r = c.get("bot/list")
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit"] == "5"
        remaining.append(int(r.headers["x-ratelimit-remaining"]))
        assert int(r.headers["x-ratelimit-reset"]) % 60 == 0
    assert remaining == [4, 3, 2, 1, 0]
    refused = c.get("bot/list")
    assert_error(refused, 429, "TOO_MANY_REQUESTS")
    assert 1 <= int(refused.headers["retry-after"]) <= 120  # until enough of this minute slides out
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert_error(c.get("bot/nothing/fetch"), 429, "TOO_MANY_REQUESTS")
    # a sliding window: the last minute's five still count at the next minute's start,
    # half of them half a minute later, none a minute after that
    clock.now += 60
    assert_error(c.get("bot/list"), 429, "TOO_MANY_REQUESTS")
    clock.now += 30
    assert c.get("bot/list").headers["x-ratelimit-remaining"] == "1"  # 5 - (2.5 + 1) - 1
    clock.now += 60
    assert c.get("bot/list").headers["x-ratelimit-remaining"] == "3"  # the one just before counts half


@settings(max_examples=30, deadline=None)
@given(
    start=st.floats(0, 59.9),
    gaps=st.lists(st.floats(0, 20), min_size=1, max_size=40),
)
def test_no_minute_passes_the_limit(start, gaps):
    """Any 60 s holds at most the limit's requests (plus the two-counter estimate's slack
    at most the limit once), and a fixed window's trick — the limit at a minute's end,
    again at the next one's start — gets through no more than the limit."""
    from botkit.actions.base import Principal
    from botkit.resources import ROUTES
    from botkit.transport.ratelimit import Limits, RateLimiter

    clock = Clock()
    clock.now += start
    action = next(a for a in ROUTES if a.path == "/bot/list")
    limiter = RateLimiter(Limits(per_token=30, per_account=0, messages=0, history=0), clock=clock)
    who = Principal(account_id="a", token_id="t")
    allowed = []
    for gap in gaps:
        clock.now += gap
        for _ in range(40):  # a burst at each moment
            if limiter.hit(who, action)[0]:
                allowed.append(clock.now)
    for i, at in enumerate(allowed):
        within = sum(1 for t in allowed[i:] if t < at + 60)
        assert within <= 2 * 30, within
    # the boundary: 30 in the last second of a minute, then the first seconds of the next
    limiter = RateLimiter(Limits(per_token=30, per_account=0, messages=0, history=0), clock=clock)
    clock.now = 1_800_000_000.0 + 59.5
    first = sum(limiter.hit(who, action)[0] for _ in range(40))
    clock.now += 2.1
    second = sum(limiter.hit(who, action)[0] for _ in range(40))
    assert first == 30 and second <= 1, (first, second)


def test_failed_authentication_is_throttled(limited, make_api):
    """Bad tokens from one address, or guesses at one token from anywhere: after a few
    failures in a minute they get 429 with Retry-After, without a database query."""
    srv, clock = limited
    clock.now += 600
    for _ in range(4):
        assert_error(client(srv, "bk_wrong-token-number-1").get("bot/list"), 401, "NOT_AUTHENTICATED")
    refused = assert_error(client(srv, "bk_wrong-token-number-2").get("bot/list"), 429, "TOO_MANY_REQUESTS")
    assert "authentication" in refused["message"]
    # a good token from the same address is throttled too (the address failed), until the minute slides by
    api = make_api()
    assert client(srv, api.token).get("bot/list").status_code == 429
    clock.now += 120
    assert client(srv, api.token).get("bot/list").status_code == 200
    # session tokens of one account share one budget, besides the account's
    conversation = client(srv, api.token).post("conversation/create", json={}).json()["id"]
    clock.now += 120
    tokens = [
        client(srv, api.token).post(f"conversation/{conversation}/session/create", json={}).json()["token"]
        for _ in range(2)
    ]
    clock.now += 120
    codes = [client(srv, tokens[n % 2]).get(f"conversation/{conversation}/fetch").status_code for n in range(8)]
    assert codes == [200] * 5 + [429] * 3, codes  # the per-token 5, not 2 x 5 capped by the account's 8


def test_rate_limits_per_account_and_for_messages(limited, make_api, database):
    srv, clock = limited
    clock.now += 120
    api = make_api()

    async def second_token():
        import asyncpg

        from botkit.resources.token import issue_token

        conn = await asyncpg.connect(database)
        try:
            return (await issue_token(conn, api.account_id))[1]
        finally:
            await conn.close()

    import asyncio

    first, second = client(srv, api.token), client(srv, asyncio.run(second_token()))
    assert [first.get("bot/list").status_code for _ in range(6)] == [200] * 5 + [429]  # the token's 5
    assert [second.get("bot/list").status_code for _ in range(4)] == [200] * 3 + [429]  # the account's 8
    clock.now += 120
    conversation = client(srv, api.token).post("conversation/create", json={}).json()["id"]
    sends = [
        client(srv, api.token)
        .post(f"conversation/{conversation}/message/create", json={"type": "user", "text": "x"})
        .status_code
        for _ in range(3)
    ]
    assert sends == [200, 200, 429]


def test_rate_limiter_shares_the_limit_between_processes():
    from botkit.actions.base import Principal
    from botkit.resources import ROUTES
    from botkit.transport.ratelimit import Limits, RateLimiter

    action = next(a for a in ROUTES if a.path == "/bot/list")
    limiter = RateLimiter(Limits(per_token=10, per_account=0, messages=0, history=0, processes=3), clock=lambda: 0.0)
    who = Principal(account_id="a", token_id="t")
    allowed = [limiter.hit(who, action)[0] for _ in range(6)]
    assert allowed == [True] * 4 + [False] * 2  # ceil(10 / 3) per process


# --- who may read or change what: a model of ownership -------------------------------

SCOPES = st.one_of(
    st.none(),
    st.just([{"resource": "bot", "actions": ["fetch", "list"]}]),
    st.just([{"resource": "bot"}]),
    st.just([{"resource": "dataset"}]),
)


class Ownership(RuleBasedStateMachine):
    """A parent, two children and a stranger call bot routes as themselves and as each
    other, with randomly scoped tokens; the oracle knows who owns which bot."""

    def __init__(self):
        super().__init__()
        parent, stranger = self.make_api(), self.make_api()
        self.accounts = {"parent": parent.account_id, "stranger": stranger.account_id}
        self.children = {"c1": make_child(parent), "c2": make_child(parent)}
        self.accounts.update(self.children)
        self.tokens = {"parent": (parent.token, None), "stranger": (stranger.token, None)}
        for name, child in self.children.items():
            self.tokens[name] = (child_token(parent, child), None)
        self.parent_api = parent
        self.bots: dict[str, str] = {}  # bot id -> owning account id

    def caller(self, data):
        name = data.draw(st.sampled_from(sorted(self.tokens)))
        token, scopes = self.tokens[name]
        run_as = data.draw(st.sampled_from([None, "c1", "c2", "parent", "stranger"]))
        own = self.accounts.get(name.split(":")[0])
        acting = own
        refused = None
        if run_as is not None:
            target = self.accounts[run_as]
            if name.split(":")[0] == "parent" and run_as in self.children:
                acting = target
            else:
                refused = "NOT_AUTHORIZED"
        return client(self.server, token, self.accounts[run_as] if run_as else None), acting, scopes, refused

    @rule(data=st.data(), scopes=SCOPES, child=st.sampled_from(["c1", "c2"]))
    def scoped_token(self, data, scopes, child):
        token = child_token(self.parent_api, self.children[child], scopes=scopes)
        self.tokens[f"{child}:{len(self.tokens)}"] = (token, scopes)

    def allowed(self, scopes, operation):
        return not scopes or any(s["resource"] == "bot" and operation in s.get("actions", [operation]) for s in scopes)

    @rule(data=st.data())
    def create(self, data):
        c, acting, scopes, refused = self.caller(data)
        response = c.post("bot/create", json={})
        if refused or not self.allowed(scopes, "create"):
            assert_error(response, 401, "NOT_AUTHORIZED")
        else:
            assert response.status_code == 200, response.text
            self.bots[response.json()["id"]] = acting

    @precondition(lambda self: self.bots)
    @rule(data=st.data(), operation=st.sampled_from(["fetch", "update", "delete"]))
    def touch(self, data, operation):
        c, acting, scopes, refused = self.caller(data)
        bot = data.draw(st.sampled_from(sorted(self.bots)))
        if operation == "fetch":
            response = c.get(f"bot/{bot}/fetch")
        else:
            response = c.post(f"bot/{bot}/{operation}", json={"name": "changed"} if operation == "update" else {})
        if refused or not self.allowed(scopes, operation):
            assert_error(response, 401, "NOT_AUTHORIZED")
        elif self.bots[bot] != acting:
            assert_error(response, 404, "NOT_FOUND")
        else:
            assert response.status_code == 200, response.text
            if operation == "delete":
                del self.bots[bot]

    @rule(data=st.data())
    def list(self, data):
        c, acting, scopes, refused = self.caller(data)
        response = c.get("bot/list", params={"take": 100})
        if refused or not self.allowed(scopes, "list"):
            assert_error(response, 401, "NOT_AUTHORIZED")
        else:
            assert {b["id"] for b in response.json()["items"]} == {b for b, o in self.bots.items() if o == acting}


def test_nobody_reads_or_changes_what_they_may_not(make_api, server):
    class Machine(Ownership):
        pass

    Machine.make_api = staticmethod(make_api)
    Machine.server = server
    run_state_machine_as_test(Machine, settings=settings(max_examples=10, stateful_step_count=30, deadline=None))


def test_cached_tokens_are_forgotten_when_changed_elsewhere(api, make_api, database):
    """A token revoked or an account limited outside this process (CLI, SQL, another
    API process) stops working / applies within moments: the database announces it."""
    import asyncio

    import asyncpg

    user = make_api()
    assert user.get("bot/list").status_code == 200  # now cached

    async def sql(statement, *args):
        conn = await asyncpg.connect(database)
        try:
            await conn.execute(statement, *args)
        finally:
            await conn.close()

    asyncio.run(sql("UPDATE accounts SET limits = '{\"bots\": 0}' WHERE id = $1", user.account_id))
    deadline = time.monotonic() + 3
    while user.post("bot/create", json={}).status_code != 429:
        assert time.monotonic() < deadline, "the account's new limits were not applied"
        time.sleep(0.05)
    asyncio.run(sql("UPDATE tokens SET revoked_at = 1 WHERE account_id = $1", user.account_id))
    deadline = time.monotonic() + 3
    while user.get("bot/list").status_code != 401:
        assert time.monotonic() < deadline, "a revoked token kept working"
        time.sleep(0.05)
    assert_error(user.get("bot/list"), 401, "NOT_AUTHENTICATED")


def test_token_cache_expiry_and_eviction():
    from botkit.actions.auth import TokenCache
    from botkit.actions.base import Principal

    now = [0.0]
    cache = TokenCache(10, clock=lambda: now[0])
    who = Principal(account_id="a", token_id="t")
    cache.put(b"d", who, None)
    assert cache.get(b"d") is None  # off until the invalidation channel listens
    cache.enabled = True
    cache.put(b"d", who, None)
    assert cache.get(b"d") is who
    now[0] = 11
    assert cache.get(b"d") is None
    cache.put(b"d", who, None)
    cache.evict("account:a")
    assert cache.get(b"d") is None
    cache.put(b"d", who, None)
    cache.evict("token:t")
    assert cache.get(b"d") is None
    cache.put(b"d", who, int(time.time() * 1000) - 1)  # the token itself expired
    assert cache.get(b"d") is None


# --- run-as, as a property ------------------------------------------------------


@pytest.fixture(scope="module")
def family(make_api, server):
    """Two partner families: P with children C1 (with a grandchild G) and C2; O with OC.
    Each account owns one bot named after it, so a list says where a call acted."""
    p, o = make_api(), make_api()
    tag = p.account_id[-6:]
    accounts = {"P": p.account_id, "O": o.account_id}
    emails = {"C1": f"c1-{tag}@example.com", "C2": f"c2-{tag}@example.com", "OC": f"oc-{tag}@example.com"}
    accounts["C1"] = make_child(p, email=emails["C1"])
    accounts["C2"] = make_child(p, email=emails["C2"])
    accounts["OC"] = make_child(o, email=emails["OC"])
    tokens = {"P": p.token, "O": o.token, "C1": child_token(p, accounts["C1"])}
    as_c1 = client(server, tokens["C1"])
    emails["G"] = f"g-{tag}@example.com"
    accounts["G"] = as_c1.post("partner/user/create", json={"email": emails["G"]}).json()["id"]
    acting = {
        "P": client(server, p.token),
        "O": client(server, o.token),
        "C1": client(server, p.token, run_as=accounts["C1"]),
        "C2": client(server, p.token, run_as=accounts["C2"]),
        "OC": client(server, o.token, run_as=accounts["OC"]),
        "G": client(server, child_token(as_c1, accounts["G"])),
    }
    for name, c in acting.items():
        assert c.post("bot/create", json={"name": name}).status_code == 200
    children = {"P": {"C1", "C2"}, "O": {"OC"}, "C1": set()}  # a child's token runs as nobody
    return accounts, emails, tokens, children


HEADERS = ["x-runas-user-id", "X-RunAs-User-Id", "x-runas-userid", "X-RunAs-UserId", "x-runas-child-user-email"]
PRINTABLE = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=80)


@st.composite
def run_as_case(draw, family):
    accounts, emails, tokens, _ = family
    caller = draw(st.sampled_from(sorted(tokens)))
    header = draw(st.sampled_from(HEADERS))
    if header.endswith("email"):
        value = draw(
            st.one_of(
                st.sampled_from(sorted(emails)).map(lambda n: emails[n]),
                st.sampled_from(sorted(emails)).map(lambda n: emails[n].upper()),
                st.sampled_from(sorted(emails)).map(lambda n: emails[n].title()),
                st.sampled_from(sorted(emails)).map(lambda n: emails[n] + ".evil"),
                PRINTABLE,
            )
        )
    else:
        value = draw(
            st.one_of(
                st.sampled_from(sorted(accounts)).map(lambda n: accounts[n]),
                st.sampled_from(sorted(accounts)).map(lambda n: accounts[n].upper()),
                st.from_regex(r"[0-9a-z]{26}", fullmatch=True),
                PRINTABLE,
            )
        )
    path = draw(st.sampled_from(["bot/list", "partner/user/list", "user/list"]))
    return caller, header, value, path


def test_run_as_acts_only_in_a_direct_child(server, family):
    """No run-as value (ids, a sibling, a grandchild, the parent, strangers, garbage, each
    header spelling, email variants) acts anywhere but in a direct child of the caller;
    a child's own token runs as nobody."""
    accounts, emails, tokens, children = family
    by_id = {v: k for k, v in accounts.items()}

    @given(case=run_as_case(family))
    @settings(max_examples=80, deadline=None)
    def check(case):
        caller, header, value, path = case
        c = client(server, tokens[caller])
        response = c.get(path, headers={header: value})
        assert response.status_code in (200, 401), response.text
        if header.endswith("email"):
            target = next((n for n, e in emails.items() if e.lower() == value.strip().lower()), None)
        else:
            target = by_id.get(value.strip())
        allowed = target in children[caller]
        if not allowed:
            assert response.status_code == 401 and response.json()["code"] == "NOT_AUTHORIZED", (case, response.text)
            return
        assert response.status_code == 200, (case, response.text)
        if path == "bot/list":
            assert [b["name"] for b in response.json()["items"]] == [target], case

    check()
