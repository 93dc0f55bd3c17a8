"""The official clients, unchanged, against the real server: the Node SDK
(@chatbotkit/sdk, pinned in tests/sdk/node, installed by `make test`), the Python SDK
(chatbotkit, pinned in the test extra, with its typed parsers) and a page in headless
Chromium calling botkit cross-origin with a session token. The only thing that differs
from an app written for the hosted API is the base URL.

A missing Node or Chromium is said loudly; under CI (CI=true) it fails the run."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from chatbotkit import APIError, ChatBotKit, types

NODE_DIR = Path(__file__).resolve().parent / "sdk" / "node"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    message = f"{what} — `make test` installs it (as root for Chromium); this run does not test it"
    if CI:
        pytest.fail(f"under CI: {message}")
    pytest.skip(f"NOT TESTED: {message}")


def root_url(server) -> str:
    return server.url  # the SDKs add /api/v1 themselves


def run_node(script: str, url: str, token: str, *, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    """Run a script of tests/sdk/node (the official Node SDK) against botkit at `url`
    (BOTKIT_URL, BOTKIT_TOKEN and `env`); its output, after it exited 0."""
    node = shutil.which("node")
    if node is None:
        missing("Node.js is not installed")
    if not (NODE_DIR / "node_modules" / "@chatbotkit" / "sdk").is_dir():
        missing("the Node SDK is not installed in tests/sdk/node")
    done = subprocess.run(
        [str(node), script],
        cwd=NODE_DIR,
        env={**os.environ, "BOTKIT_URL": url, "BOTKIT_TOKEN": token, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# --- Node --------------------------------------------------------------------------


def test_the_node_sdk(server, make_api):
    out = run_node("drive.mjs", root_url(server), make_api().token)
    assert out.count("\nok ") + out.startswith("ok ") >= 10, out


# --- Python ------------------------------------------------------------------------


async def _page_to_the_end(list_page, order: str) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        page = await list_page({"take": 2, "order": order, **({"cursor": cursor} if cursor else {})})
        assert isinstance(page.cursor, str)  # the SDK's parser asserts it too
        if not page.items:
            return seen
        seen += [item.id for item in page.items]
        cursor = page.cursor
    raise AssertionError("paging never ended")


async def _python_sdk(base: str, token: str) -> None:
    client = ChatBotKit(secret=token, base_url=base)
    tag = os.urandom(4).hex()

    bot = await client.bot.create({"name": "Ada", "backstory": "You are helpful.", "meta": {"tag": tag}})
    fetched = await client.bot.fetch(bot.id)
    assert isinstance(fetched, types.BotFetchResponse) and fetched.name == "Ada"
    await client.bot.update(bot.id, {"name": "Ada L."})
    assert (await client.bot.fetch(bot.id)).name == "Ada L."
    for i in range(4):
        await client.bot.create({"name": f"b{i}", "meta": {"tag": tag, "i": str(i)}})
    desc = await _page_to_the_end(lambda q: client.bot.list({**q, "meta": {"tag": tag}}), "desc")
    asc = await _page_to_the_end(lambda q: client.bot.list({**q, "meta": {"tag": tag}}), "asc")
    assert len(desc) == 5 and asc == desc[::-1]
    assert len((await client.bot.list({"meta": {"tag": tag, "i": "2"}})).items) == 1
    streamed = [item async for item in client.bot.list({"meta": {"tag": tag}}).stream()]
    assert [s.data.id for s in streamed] == desc
    empty = await client.bot.list({"meta": {"tag": "nothing-has-this"}})
    assert empty.items == [] and empty.cursor == ""
    gone = await client.bot.create({"name": "gone"})
    await client.bot.delete(gone.id)
    with pytest.raises(APIError) as e:
        await client.bot.fetch(gone.id)
    assert e.value.code == "NOT_FOUND" and e.value.status_code == 404

    dataset = await client.dataset.create({"name": "handbook"})
    await client.dataset.record.create(dataset.id, {"text": "Refunds are possible within 30 days of purchase."})
    await client.dataset.record.create(dataset.id, {"text": "Our office is open Monday to Friday."})
    assert len((await client.dataset.record.list(dataset.id)).items) == 2
    found = await client.dataset.search(dataset.id, {"search": "refund"})
    assert "Refunds" in found.records[0].text

    body = {"messages": [{"type": "user", "text": "When can I get a refund?"}], "datasetId": dataset.id}
    answer = await client.conversation.complete(None, body)
    assert "30 days" in answer.text and answer.end.reason.value == "stop"
    events = [e async for e in client.conversation.complete(None, body).stream()]
    assert events[-1].type.value == "result" and any(e.type.value == "token" for e in events)

    await client.bot.update(bot.id, {"datasetId": dataset.id})
    conversation = await client.conversation.create({"botId": bot.id})
    answer = await client.conversation.complete(conversation.id, {"text": "When can I get a refund?"})
    assert "30 days" in answer.text
    events = [e async for e in client.conversation.complete(conversation.id, {"text": "Office?"}).stream()]
    assert events[-1].type.value == "result"
    await client.conversation.send(conversation.id, {"text": "Monday?"})
    received = await client.conversation.receive(conversation.id, {})
    assert received.text

    # a background completion, its events on a channel; the event log
    dispatched = await client.conversation.dispatch(conversation.id, {"text": "Refund?"})
    published = []
    async for line in client.channel.subscribe(dispatched.channel_id, {"historyLength": 1000}).stream():
        published.append(line.data)
        if published[-1]["type"] in ("result", "error"):
            break
    assert published[0]["type"] == "completeBegin" and published[-1]["type"] == "result"
    assert "30 days" in published[-1]["data"]["text"]
    logged = await client.event.log.list({"take": 100})
    assert any(e.type == "completion.finish" and e.conversation_id == conversation.id for e in logged.items)

    # partner users through the /user routes (this SDK's names), run-as by id and by email
    email = f"{tag}@example.com"
    child = await client.user.create({"name": "Customer A", "email": email})
    assert (await client.user.fetch(child.id)).name == "Customer A"
    as_child = ChatBotKit(secret=token, base_url=base, run_as_user_id=child.id)
    theirs = await as_child.bot.create({"name": "their bot"})
    by_email = ChatBotKit(secret=token, base_url=base, run_as_child_user_email=email.upper())
    assert (await by_email.bot.fetch(theirs.id)).name == "their bot"
    with pytest.raises(APIError) as e:
        await client.bot.fetch(theirs.id)
    assert e.value.code == "NOT_FOUND"
    stranger = ChatBotKit(secret=token, base_url=base, run_as_user_id="01m84tf0w9f3se992gd2fj0kwb")
    with pytest.raises(APIError) as e:
        await stranger.bot.list()
    assert e.value.code == "NOT_AUTHORIZED"
    child_token = await client.user.token.create(child.id, {"name": "their app"})
    own = ChatBotKit(secret=child_token.token, base_url=base)
    assert len((await own.bot.list()).items) == 1
    assert child.id in await _page_to_the_end(lambda q: client.user.list(q), "asc")
    await client.user.delete(child.id)

    # the other families, each through its typed parser
    skillset = await client.skillset.create({"name": "tools"})
    await client.skillset.ability.create(skillset.id, {"name": "a", "description": "d", "instruction": "i"})
    assert len((await client.skillset.ability.list(skillset.id)).items) == 1
    contact = await client.contact.create({"name": "Ann"})
    assert (await client.contact.fetch(contact.id)).name == "Ann"
    await client.secret.create({"name": "k", "value": "v", "contactId": contact.id})
    assert (await client.contact.secret.list(contact.id)).items[0].type == "plain"
    memory = await client.memory.create({"text": "Ann likes tea."})
    assert (await client.memory.fetch(memory.id)).text == "Ann likes tea."
    task = await client.task.create({"name": "t", "description": "do it", "botId": bot.id})
    assert (await client.task.fetch(task.id)).name == "t"
    # a task run in the background on the default model, with no configuration
    greet = await client.task.create({"name": "greet", "description": "Greet the team."})
    assert (await client.task.trigger(greet.id)).id == greet.id
    for _ in range(300):
        executions = (await client.task.execution.list(greet.id)).items
        if executions and executions[0].outcome.value != "pending":
            break
        await asyncio.sleep(0.1)
    assert executions[0].outcome.value == "success" and executions[0].summary and executions[0].completed_at
    file = await client.file.create({"name": "notes.txt"})
    assert (await client.file.fetch(file.id)).name == "notes.txt"
    assert (await client.usage.fetch()).tokens >= 0
    assert len((await client.platform.model.list()).items) >= 1
    for lister in (client.contact.list, client.memory.list, client.task.list, client.secret.list, client.file.list):
        await _page_to_the_end(lambda q, lister=lister: lister(q), "asc")  # typed pages to the empty end

    nobody = ChatBotKit(secret="bk_not_a_token", base_url=base)
    with pytest.raises(APIError) as e:
        await nobody.bot.list()
    assert e.value.code == "NOT_AUTHENTICATED" and e.value.status_code == 401


def test_the_python_sdk(server, make_api):
    api = make_api()
    asyncio.run(_python_sdk(root_url(server), api.token))


# --- a browser -----------------------------------------------------------------------

PAGE = """<!doctype html>
<html><body><pre id="out">running</pre>
<script type="module">
const api = %(api)r, token = %(token)r, conversation = %(conversation)r
async function run() {
  const response = await fetch(`${api}/api/v1/conversation/${conversation}/complete`, {
    method: 'POST',
    headers: {authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/jsonl'},
    body: JSON.stringify({text: 'When can I get a refund?'}),
  })
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
  let text = '', tokens = 0
  for (;;) {
    const {value, done} = await reader.read()
    if (done) break
    text += value
  }
  const events = text.trim().split('\\n').map((line) => JSON.parse(line))
  tokens = events.filter((e) => e.type === 'token').length
  const result = events.find((e) => e.type === 'result')
  return {status: response.status, tokens, result: result && result.data.text,
          requestId: response.headers.get('x-request-id')}
}
run().then(
  (report) => fetch('/report', {method: 'POST', body: JSON.stringify(report)}),
  (error) => fetch('/report', {method: 'POST', body: JSON.stringify({error: String(error)})}),
)
</script></body></html>
"""


def test_a_browser_widget_streams_a_completion_with_a_session_token(server, api):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        missing("Chromium is not installed (Debian's chromium package)")
    dataset = api.post("dataset/create", json={}).json()["id"]
    api.post(f"dataset/{dataset}/record/create", json={"text": "Refunds are possible within 30 days."})
    bot = api.post("bot/create", json={"datasetId": dataset}).json()["id"]
    session = api.post(f"bot/{bot}/session/create", json={}).json()
    page = PAGE % {"api": server.url, "token": session["token"], "conversation": session["conversationId"]}
    reports: list[bytes] = []
    arrived = threading.Event()

    class Page(BaseHTTPRequestHandler):  # another origin: another port
        def do_GET(self):
            body = page.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            reports.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(204)
            self.end_headers()
            arrived.set()

        def log_message(self, *args):
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="botkit-chromium-")
    browser = subprocess.Popen(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"http://127.0.0.1:{site.server_address[1]}/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert arrived.wait(90), "the page never reported"
    finally:
        browser.kill()
        browser.wait()
        site.shutdown()
        site.server_close()
        shutil.rmtree(profile, ignore_errors=True)
    report = json.loads(reports[0])
    assert "error" not in report, report
    assert report["status"] == 200 and report["tokens"] > 0 and "30 days" in report["result"], report
    assert report["requestId"], "X-Request-Id is not exposed to the page"
