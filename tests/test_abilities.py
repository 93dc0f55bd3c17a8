"""Abilities that act (issue 13): an ability's fenced action block runs (fetch through
the safe fetcher with the account's secrets, dataset search, calling a bot), in
`skillset/{id}/ability/{id}/execute`, in completions and in task executions; an
unknown action is a 400 when the ability is saved; a secret's value never reaches a
message, an event or a response."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tasks import messages, wait_execution

from botkit.engine.fetch import FetchPolicy
from botkit.testing import Reply, assert_error

SECRET_VALUE = "s3cr3t-weather-key-0451"


class Upstream:
    """A local HTTP API on 127.0.0.1 that records what it was sent and echoes it."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                seen = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                outer.seen.append(seen)
                if self.path.startswith("/moved"):  # a redirect elsewhere: a secret must not follow it
                    self.send_response(302)
                    self.send_header("Location", "http://localhost:1/steal")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 404 if self.path.startswith("/missing") else 200
                data = json.dumps(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "got": body, "forecast": "sunny"}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def upstream():
    u = Upstream()
    yield u
    u.stop()


@pytest.fixture
def local_fetch(server):
    """The session server may fetch from 127.0.0.1 for this test."""
    state = server.app.state.botkit
    previous, state.fetch_policy = state.fetch_policy, FetchPolicy.parse("127.0.0.1")
    yield
    state.fetch_policy = previous


def ability(api, instruction: str, **fields) -> tuple[str, str]:
    skillset = api.post("skillset/create", json={"name": "tools"}).json()["id"]
    answer = api.post(
        f"skillset/{skillset}/ability/create",
        json={"name": fields.pop("name", "weather"), "description": "Looks up the weather", "instruction": instruction}
        | fields,
    )
    assert answer.status_code == 200, answer.text
    return skillset, answer.json()["id"]


def execute(api, skillset: str, ability_id: str, input: str | None = None) -> dict:
    answer = api.post(f"skillset/{skillset}/ability/{ability_id}/execute", json={"input": input} if input else {})
    assert answer.status_code == 200, answer.text
    return answer.json()


def weather_secret(api, **fields) -> str:
    body = {"name": "Weather Key", "type": "bearer", "value": SECRET_VALUE} | fields
    return api.post("secret/create", json=body).json()["id"]


def weather_instruction(upstream, auth: str = "${SECRET_WEATHER_KEY}") -> str:
    return (
        "Use this to answer questions about the weather.\n"
        f"```fetch\nGET {upstream.url}/weather?city=$[city! the city to look up] HTTP/1.1\n"
        f"Authorization: {auth}\nAccept: application/json\n```\n"
    )


def test_a_fetch_ability_sends_the_secret_and_the_model_sees_neither_it_nor_a_echo(api, upstream, local_fetch):
    weather_secret(api)
    skillset, ability_id = ability(api, weather_instruction(upstream))
    result = execute(api, skillset, ability_id, json.dumps({"city": "New York"}))
    assert result["usage"] == {"token": 0} and "error" not in result
    sent = upstream.seen[-1]
    assert sent["path"] == "/weather?city=New%20York" and sent["headers"]["Authorization"] == f"Bearer {SECRET_VALUE}"
    assert result["result"]["status"] == 200
    echoed = json.loads(result["result"]["body"])
    assert echoed["forecast"] == "sunny" and echoed["auth"] == "[secret]"
    assert SECRET_VALUE not in json.dumps(result)
    # an ability of one parameter takes plain text for it; YAML works as JSON does
    assert execute(api, skillset, ability_id, "Paris")["result"]["status"] == 200
    assert upstream.seen[-1]["path"] == "/weather?city=Paris"
    execute(api, skillset, ability_id, "city: Oslo & Bergen")
    assert upstream.seen[-1]["path"] == "/weather?city=Oslo%20%26%20Bergen"  # a value cannot add a query field


def test_the_abilitys_own_secret_is_the_authorization_and_secret_default_names_it(api, upstream, local_fetch):
    secret = weather_secret(api, name="anything", type="basic", value="user:pw")
    skillset, plain = ability(api, f"```fetch\n{upstream.url}/plain\n```", secretId=secret)
    assert execute(api, skillset, plain)["result"]["status"] == 200
    assert upstream.seen[-1]["headers"]["Authorization"] == "Basic dXNlcjpwdw=="
    skillset, named = ability(api, f"```fetch\nGET {upstream.url}/d\nX-Key: ${{SECRET_DEFAULT}}\n```", secretId=secret)
    assert execute(api, skillset, named)["result"]["status"] == 200
    assert upstream.seen[-1]["headers"]["X-Key"] == "Basic dXNlcjpwdw=="
    assert "Authorization" not in upstream.seen[-1]["headers"]


def test_a_yaml_fetch_posts_a_typed_json_body_and_a_failing_status_is_the_result(api, upstream, local_fetch):
    instruction = (
        "```fetch\n"
        f"url: {upstream.url}/orders\nmethod: POST\n"
        "body:\n  count: $[count! number how many]\n  note: for $[who]\n```"
    )
    skillset, ability_id = ability(api, instruction, name="order")
    result = execute(api, skillset, ability_id, '{"count": "3", "who": "Ann"}')
    assert json.loads(upstream.seen[-1]["body"]) == {"count": 3, "note": "for Ann"}
    assert upstream.seen[-1]["headers"]["Content-Type"] == "application/json"
    assert result["result"]["status"] == 200
    skillset, missing = ability(api, f"```fetch\n{upstream.url}/missing\n```")
    result = execute(api, skillset, missing)["result"]
    assert result["status"] == 404 and result["error"] == "Status code: 404"
    # a required parameter left out is the answer's error, not a 500
    assert "count" in execute(api, *ability(api, instruction, name="order2"), "{}")["error"]


def test_fetching_is_bounded_by_the_safe_fetcher_and_secrets_go_only_to_named_hosts(api, upstream):
    weather_secret(api)
    skillset, ability_id = ability(api, weather_instruction(upstream))
    result = execute(api, skillset, ability_id, "Paris")  # the default policy: loopback is refused
    assert "loopback" in result["error"] and "result" not in result
    skillset, chosen = ability(api, "```fetch\nGET https://$[host]/x\nAuthorization: ${SECRET_WEATHER_KEY}\n```")
    assert "only sent to a host the ability names" in execute(api, skillset, chosen, "example.com")["error"]
    skillset, unknown = ability(api, "```fetch\nGET https://example.com/\nAuthorization: ${SECRET_NOPE}\n```")
    assert "NOPE" in execute(api, skillset, unknown)["error"]


def test_a_request_with_a_secret_follows_no_redirect_and_one_without_does(api, upstream, local_fetch):
    weather_secret(api)
    skillset, moved = ability(api, f"```fetch\nGET {upstream.url}/moved\nX-Key: ${{SECRET_WEATHER_KEY}}\n```")
    assert "redirected" in execute(api, skillset, moved)["error"]
    skillset, plain = ability(api, f"```fetch\nGET {upstream.url}/moved\n```")
    assert "localhost" in execute(api, skillset, plain)["error"]  # followed, and refused there (loopback by name)


def test_an_unknown_action_or_a_block_that_cannot_run_is_a_400_when_saved(api):
    skillset = api.post("skillset/create", json={}).json()["id"]
    for instruction in (
        "```email/send\nto: a@b.c\n```",
        "```fetch\nnot a request at all\n```",
        "```dataset/search\n```",
    ):
        answer = api.post(f"skillset/{skillset}/ability/create", json={"name": "x", "instruction": instruction})
        assert_error(answer, 400, "BAD_REQUEST")
        assert "instruction" in answer.json()["message"]
    ok = api.post(f"skillset/{skillset}/ability/create", json={"instruction": "Say hi.\n```json\n{}\n```"}).json()
    answer = api.post(f"skillset/{skillset}/ability/{ok['id']}/update", json={"instruction": "```shell/run\nls\n```"})
    assert_error(answer, 400, "BAD_REQUEST")
    inline = {"abilities": [{"name": "x", "description": "d", "instruction": "```mail\nx\n```"}]}
    answer = api.post(
        "conversation/complete",
        json={"messages": [{"type": "user", "text": "hi"}], "extensions": {"skillsets": [inline]}},
    )
    assert_error(answer, 400, "BAD_REQUEST")
    # a free-text ability runs as its instruction
    assert execute(api, skillset, ok["id"])["result"] == {"instruction": "Say hi.\n```json\n{}\n```"}


def test_a_dataset_search_ability_returns_the_datasets_records(api):
    dataset = api.post("dataset/create", json={"name": "handbook"}).json()["id"]
    for text in ("Refunds are paid within 14 days.", "The office opens at nine."):
        api.post(f"dataset/{dataset}/record/create", json={"text": text})
    skillset, ability_id = ability(api, f"Search the handbook.\n```dataset/search/id={dataset}\n```", name="handbook")
    records = execute(api, skillset, ability_id, "refunds")["result"]["records"]
    assert records and records[0]["text"] == "Refunds are paid within 14 days."
    assert "not found" in execute(api, *ability(api, "```dataset/search/id=nosuchdataset\n```"), "x")["error"]


def test_a_bot_call_ability_asks_another_bot(api, models):
    helper = api.post("bot/create", json={"model": "fake-model", "backstory": "You are the expert."}).json()["id"]
    skillset, ability_id = ability(api, "Ask the expert.\n```bot/call\n$[question! the question]\n```", botId=helper)
    models.push(Reply(tokens=["The expert says: 42."]))
    result = execute(api, skillset, ability_id, "What is the answer?")
    assert result["result"] == {"text": "The expert says: 42."} and result["usage"]["token"] == 18
    sent = models.bodies[-1]["messages"]
    assert sent[0]["content"].startswith("You are the expert.") and sent[-1]["content"] == "What is the answer?"


def test_abilities_of_another_account_are_404(api, other):
    skillset, ability_id = ability(api, "```fetch\nhttps://example.com/\n```")
    assert_error(other.post(f"skillset/{skillset}/ability/{ability_id}/execute", json={}), 404, "NOT_FOUND")
    other_skillset = other.post("skillset/create", json={}).json()["id"]
    assert_error(other.post(f"skillset/{other_skillset}/ability/{ability_id}/execute", json={}), 404, "NOT_FOUND")


def test_in_a_completion_the_model_calls_the_ability_and_no_secret_is_stored_or_sent(
    api, models, upstream, local_fetch
):
    weather_secret(api)
    skillset, _ = ability(api, weather_instruction(upstream))
    bot = api.post("bot/create", json={"model": "fake-model", "skillsetId": skillset}).json()["id"]
    conversation = api.post("conversation/create", json={"botId": bot}).json()["id"]
    models.push(Reply(tokens=[], tool_calls=[("weather", '{"city": "Paris"}')]), Reply(tokens=["Sunny in Paris."]))
    answer = api.post(f"conversation/{conversation}/complete", json={"text": "Weather in Paris?"})
    assert answer.status_code == 200 and answer.json()["text"] == "Sunny in Paris.", answer.text
    offered = models.bodies[0]["tools"]
    weather = next(t["function"] for t in offered if t["function"]["name"] == "weather")
    assert (
        weather["parameters"]["required"] == ["city"] and "answer questions about the weather" in weather["description"]
    )
    assert upstream.seen[-1]["path"] == "/weather?city=Paris"
    result_sent = models.bodies[1]["messages"][-1]
    assert result_sent["role"] == "tool" and "sunny" in result_sent["content"]
    everything = json.dumps(
        [
            api.get(f"conversation/{conversation}/message/list", params={"take": 100}).json(),
            api.get("event/log/list", params={"take": 100}).json(),
            models.bodies,
        ]
    )
    assert SECRET_VALUE not in everything and "[secret]" in everything
    assert [t for t, _ in messages(api, conversation)] == ["user", "activity", "bot"]


def test_a_task_fetches_searches_and_finishes_with_its_abilities(api, models, upstream, local_fetch):
    weather_secret(api)
    dataset = api.post("dataset/create", json={}).json()["id"]
    api.post(f"dataset/{dataset}/record/create", json={"text": "Ship umbrellas when it rains."})
    skillset, _ = ability(api, weather_instruction(upstream))
    api.post(
        f"skillset/{skillset}/ability/create",
        json={
            "name": "policy",
            "description": "The shipping policy",
            "instruction": f"```dataset/search/id={dataset}\n```",
        },
    )
    bot = api.post("bot/create", json={"model": "fake-model", "skillsetId": skillset}).json()["id"]
    task = api.post("task/create", json={"botId": bot, "description": "Decide whether to ship umbrellas"}).json()["id"]
    models.push(
        Reply(tokens=[], tool_calls=[("weather", '{"city": "Oslo"}')]),
        Reply(tokens=[], tool_calls=[("policy", '{"query": "umbrellas"}')]),
        Reply(tokens=[], tool_calls=[("exit", '{"code": 0, "message": "Ship them: rain in Oslo"}')]),
        Reply(tokens=["Done."]),
    )
    api.post(f"task/{task}/trigger", json={})
    execution = wait_execution(api, task)
    assert (execution["outcome"], execution["summary"]) == ("success", "Ship them: rain in Oslo"), execution
    assert upstream.seen[-1]["path"] == "/weather?city=Oslo"
    searched = models.bodies[2]["messages"][-1]
    assert searched["role"] == "tool" and "Ship umbrellas" in searched["content"]
    transcript = json.dumps(messages(api, execution["conversationId"]))
    assert SECRET_VALUE not in transcript and "Oslo" in transcript
    with api.stream("POST", f"task/{task}/subscribe", json={"historyLength": 10}) as r:
        begun = []
        for line in r.iter_lines():
            event = json.loads(line)
            if event["type"] == "operationBegin":
                begun.append((event["data"]["action"]["name"], event["data"]["action"]["kind"]))
            if len(begun) == 3:
                break
    assert begun == [("weather", "skillset"), ("policy", "skillset"), ("exit", "function")]


_INFO = st.sampled_from(
    ["fetch", "dataset/search/id=x", "bot/call", "http/fetch", "json", "", "mail/send", "fetch/a=b"]
)
_BODY = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda method, path, header, param: f"{method} http://127.0.0.1:9/{path}$[{param}]\n{header}\n\nbody",
        st.sampled_from(["GET", "POST", "BREW", "get"]),
        st.text(alphabet="abc/?=&%$[] ", max_size=20),
        st.text(max_size=40),
        st.text(max_size=30),
    ),
    st.builds(lambda k, v: f"url: http://127.0.0.1:9/x\n{k}: {v}", st.text(max_size=10), st.text(max_size=30)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(info=_INFO, body=_BODY, text=st.text(max_size=100), given_input=st.one_of(st.none(), st.text(max_size=100)))
def test_any_instruction_is_saved_or_refused_and_any_input_answered_never_a_500(api, info, body, text, given_input):
    skillset = api.post("skillset/create", json={}).json()["id"]
    instruction = f"{text}\n```{info}\n{body}\n```\n"
    created = api.post(f"skillset/{skillset}/ability/create", json={"name": "a", "instruction": instruction})
    assert created.status_code in (200, 400), created.text
    if created.status_code == 400:
        assert created.json()["code"] == "BAD_REQUEST"
        return
    answer = api.post(
        f"skillset/{skillset}/ability/{created.json()['id']}/execute",
        json={"input": given_input} if given_input is not None else {},
    )
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 200:
        assert "usage" in answer.json() and ("result" in answer.json() or "error" in answer.json())


def test_platform_action_list_names_the_kinds_botkit_runs_and_their_examples_save(api):
    listed = api.get("platform/action/list", params={"order": "asc"}).json()
    kinds = [a["id"] for a in listed["items"]]
    assert kinds == sorted(["fetch", "dataset/search", "bot/call"]) and listed["cursor"] == kinds[-1]
    skillset = api.post("skillset/create", json={}).json()["id"]
    for action in listed["items"]:
        assert action["name"] == action["id"] and action["description"] and action["examples"]
        for example in action["examples"]:  # what the catalogue shows is an instruction botkit takes
            answer = api.post(f"skillset/{skillset}/ability/create", json={"name": "x", "instruction": example})
            assert answer.status_code == 200, (example, answer.text)
    page = api.get("platform/action/list", params={"take": 1, "order": "asc"}).json()
    assert [a["id"] for a in page["items"]] == [kinds[0]]
    rest = api.get("platform/action/list", params={"order": "asc", "cursor": kinds[0]}).json()
    assert [a["id"] for a in rest["items"]] == kinds[1:]
    fetch = next(a for a in listed["items"] if a["id"] == "fetch")
    assert "http/fetch" in fetch["meta"]["aliases"]
