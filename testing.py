"""Test support that ships with the package, so tests import it rather than each
other: the real app under uvicorn in a thread on 127.0.0.1, an HTTP client per
account, the error assertion, the tables the standard actions serve, and a fake
OpenAI-compatible model server (every byte botkit sends and reads is real HTTP).

The fake server: each request takes the next scripted `Reply` (or the default
one): its tokens, the pause between chunks, tool calls, the finish reason, a status
(429, 500 ...), a pause before the headers (a slow provider), a connection that
breaks after N chunks, an error chunk. It records every request body and whether
each stream was finished or abandoned by the client (and when)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import math
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field

import asyncpg
import httpx
import uvicorn
import uvloop

from .actions.standard import CreateAction, Table
from .config import Settings, default_data_dir
from .engine.models import Registry
from .engine.provider import ModelInfo, Timeouts
from .resources import ROUTES, services
from .resources.account import create_account
from .resources.token import issue_token
from .transport.app import create_app
from .transport.server import GuardedProtocol

# --- the app under test ---------------------------------------------------------------


class ServerThread:
    """The app under uvicorn, on its own event loop in a thread, on 127.0.0.1."""

    def __init__(self, app) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.app = app
        settings = app.state.botkit.settings
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                lifespan="on",
                log_level="warning",
                access_log=False,
                http=GuardedProtocol.configured(settings),  # as `botkit serve` runs it
                timeout_keep_alive=settings.keepalive_timeout,
            )
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = uvloop.new_event_loop()  # as in production (and asyncio here adds 40 ms per request)
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def call(self, coro):
        """Run a coroutine on the server's loop (e.g. with the app's pool)."""
        assert self.loop is not None, "the server is not running"
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_app(dsn: str, **overrides) -> ServerThread:
    """The app with every route, on a small pool, for this database; failed
    authentication is not throttled (the suite sends bad tokens from one address)."""
    settings = Settings(
        database_url=dsn,
        **{"data_dir": default_data_dir(), "pool_size": 4, "rate_limit_auth_failures": 0, **overrides},
    )
    return ServerThread(create_app(settings, ROUTES, services)).start()


def use_models(server: ServerThread, models: Registry) -> Registry:
    """Serve with these models from now on; returns the ones served before."""
    state = server.app.state.botkit
    previous, state.models = state.models, models
    return previous


# --- accounts and their clients -----------------------------------------------------


async def suite_server_problem(url: str) -> str | None:
    """What keeps the suite from using the server at `url` (it makes a database per
    run, so its role needs CREATEDB), or None."""
    from .errors import StartupError
    from .store.connect import connect

    try:
        conn = await connect(url)
    except StartupError as exc:
        return f"TEST_DATABASE_URL / DATABASE_URL: {exc}"
    try:
        if await conn.fetchval("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"):
            return None
        role = await conn.fetchval("SELECT current_user")
        return (
            f"the suite creates a database per run, and the role {role!r} of TEST_DATABASE_URL / "
            f"DATABASE_URL may not: `ALTER ROLE {role} CREATEDB`, or unset both to use the embedded PostgreSQL"
        )
    finally:
        await conn.close()


async def new_account(dsn: str, name: str | None, parent_id: str | None) -> tuple[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        account = await create_account(conn, name=name, parent_id=parent_id)
        _, secret = await issue_token(conn, account)
        return account, secret
    finally:
        await conn.close()


class Api(httpx.Client):
    """An HTTP client for one account: `api.post("bot/create", json=...)`."""

    account_id: str
    token: str


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


# --- the tables the standard actions serve ---------------------------------------------

# The smallest valid create body of each resource.
MINIMAL = {
    "message": {"type": "user", "text": "hello"},
    "record": {"text": "hello"},
    "memory": {"text": "remember this"},
    "policy": {"type": "retention"},
}

# A field each resource lets us change and read back.
EDITABLE = {
    "message": ("text", "changed"),
    "record": ("text", "changed"),
    "memory": ("text", "changed"),
    "rating": None,
}


def tables() -> list[Table]:
    """Every table whose rows the standard create action makes."""
    seen: dict[str, Table] = {}
    for action in ROUTES:
        if isinstance(action, CreateAction) and action.operation == "create":
            seen.setdefault(action.table.name, action.table)
    return list(seen.values())


def route_prefix(table: Table) -> str:
    """`table`'s route prefix, e.g. "dataset/{datasetId}/record" (its create route less /create)."""
    create = next(a for a in ROUTES if isinstance(a, CreateAction) and a.operation == "create" and a.table is table)
    return create.path.strip("/").removesuffix("/create")


def prefix_for(api, table: Table) -> str:
    """The route prefix of `table` with its parent made (in api's account) when nested."""
    if table.parent is None:
        return route_prefix(table)
    parent_id = api.post(f"{table.parent.noun}/create", json={}).json()["id"]
    return route_prefix(table).replace("{" + table.parent.param + "}", parent_id)


def create(api, prefix: str, noun: str, **fields) -> str:
    response = api.post(f"{prefix}/create", json={**MINIMAL.get(noun, {}), **fields})
    assert response.status_code == 200, response.text
    return response.json()["id"]


# --- a fake OpenAI-compatible model server ----------------------------------------------


@dataclass
class Reply:
    tokens: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    reasoning: list[str] = field(default_factory=list)  # streamed first, as delta.reasoning_content
    finish: str = "stop"
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments JSON)
    status: int = 200
    delay: float = 0.0  # seconds between chunks
    headers_delay: float = 0.0  # seconds before the response starts
    stall_after: int | None = None  # after N token chunks, wait `stall` seconds
    stall: float = 0.0
    break_after: int | None = None  # after N token chunks, the connection breaks
    error_after: int | None = None  # after N token chunks, an SSE error chunk
    usage: tuple[int, int] | None = (11, 7)
    body: bytes = b'{"error": {"message": "scripted failure"}}'


@dataclass
class Seen:
    body: dict
    started: float
    ended: float | None = None
    finished: bool = False  # the whole reply was sent
    abandoned: bool = False  # the client went away first
    client: tuple | None = None  # the connection's (address, port): the same one when it was reused


class Broken(Exception):
    pass


SYNONYMS = {"automobile": "car", "vehicle": "car", "cars": "car", "auto": "car"}


def fake_embedding(text: str, dims: int = 64) -> list[float]:
    """Bag of words hashed into `dims` numbers, synonyms folded: texts that share
    (synonymous) words are near, others far. Deterministic."""
    v = [0.0] * dims
    for word in re.findall(r"[a-z]+", text.lower()):
        word = SYNONYMS.get(word, word)
        v[zlib.crc32(word.encode()) % dims] += 1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


class FakeOpenAI:
    def __init__(self) -> None:
        self.replies: collections.deque[Reply] = collections.deque()
        self.default = Reply()
        self.seen: list[Seen] = []
        self.embedded: list[str] = []  # every text /embeddings was asked for
        self.spoken: list[dict] = []  # every /audio/speech request
        self.embeddings_status = 200
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app, lifespan="off", log_level="critical", interface="asgi3", access_log=False, http="h11"
            )
        )
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the fake OpenAI server did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def push(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def reset(self) -> None:
        self.replies.clear()
        self.seen.clear()
        self.embedded.clear()
        self.spoken.clear()
        self.embeddings_status = 200
        self.default = Reply()

    @property
    def bodies(self) -> list[dict]:
        return [s.body for s in self.seen]

    async def app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/v1/embeddings":
            body = json.loads(raw)
            self.embedded.extend(body["input"])
            answer = {
                "object": "list",
                "model": body["model"],
                "data": [
                    {"object": "embedding", "index": i, "embedding": fake_embedding(t)}
                    for i, t in enumerate(body["input"])
                ],
            }
            await send(
                {
                    "type": "http.response.start",
                    "status": self.embeddings_status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": json.dumps(answer).encode()})
            return
        if scope["path"] == "/v1/audio/speech":  # "audio": the text's bytes after a marker
            body = json.loads(raw)
            self.spoken.append(body)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"audio/mpeg")]})
            await send({"type": "http.response.body", "body": b"FAKE-MP3:" + body["input"].encode()})
            return
        if scope["path"] != "/v1/chat/completions":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        body = json.loads(raw)
        seen = Seen(body=body, started=time.monotonic(), client=tuple(scope.get("client") or ()))
        self.seen.append(seen)
        reply = self.replies.popleft() if self.replies else self.default
        if reply.headers_delay:
            await asyncio.sleep(reply.headers_delay)
        if reply.status != 200:
            await send(
                {
                    "type": "http.response.start",
                    "status": reply.status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": reply.body})
            seen.ended, seen.finished = time.monotonic(), True
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.create_task(watch())
        try:
            await self._stream(reply, send, disconnected, body.get("model", "fake"))
            seen.finished = True
        except (Broken, OSError):
            seen.abandoned = disconnected.is_set()
            if not disconnected.is_set():
                raise  # the scripted break: uvicorn drops the connection mid-body
        finally:
            seen.ended = time.monotonic()
            watcher.cancel()

    async def _stream(self, reply: Reply, send, disconnected: asyncio.Event, model: str) -> None:
        async def chunk(payload: dict | str) -> None:
            if disconnected.is_set():
                raise Broken("client went away")
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await send({"type": "http.response.body", "body": f"data: {data}\n\n".encode(), "more_body": True})

        async def pause(seconds: float) -> None:
            if seconds:
                try:
                    await asyncio.wait_for(disconnected.wait(), seconds)
                except TimeoutError:
                    return
                raise Broken("client went away")

        def delta(d: dict, finish: str | None = None) -> dict:
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
            }

        await chunk(delta({"role": "assistant", "content": ""}))
        for piece in reply.reasoning:
            await chunk(delta({"reasoning_content": piece}))
        for i, token in enumerate(reply.tokens):
            if reply.break_after is not None and i == reply.break_after:
                raise RuntimeError("scripted connection break")
            if reply.error_after is not None and i == reply.error_after:
                await chunk({"error": {"message": "scripted mid-stream failure", "type": "server_error"}})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if reply.stall_after is not None and i == reply.stall_after:
                await pause(reply.stall)
            await pause(reply.delay)
            await chunk(delta({"content": token}))
        for i, (name, args) in enumerate(reply.tool_calls):
            # split the arguments over two chunks, as real providers do
            half = len(args) // 2
            await chunk(
                delta(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": f"call_{i}_{name}",
                                "type": "function",
                                "function": {"name": name, "arguments": args[:half]},
                            }
                        ]
                    }
                )
            )
            await chunk(delta({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]}))
        await chunk(delta({}, "tool_calls" if reply.tool_calls else reply.finish))
        if reply.usage is not None:
            await chunk(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": {
                        "prompt_tokens": reply.usage[0],
                        "completion_tokens": reply.usage[1],
                        "total_tokens": sum(reply.usage),
                    },
                }
            )
        await chunk("[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def registry_for(fake: FakeOpenAI, **kw) -> Registry:
    """The fake provider's models: fake-model (8192 tokens) and fake-small (400)."""

    def model(name, window, out):
        return ModelInfo(
            name=name,
            provider="openai-compatible",
            family="fake",
            max_tokens=window,
            max_input_tokens=window - out,
            max_output_tokens=out,
            upstream="upstream-" + name,
            base_url=fake.base_url,
            api_key="sk-test",
        )

    models = {
        "fake-model": model("fake-model", 8192, 512),
        "fake-small": model("fake-small", 400, 100),
        "fake-vision": dataclasses.replace(model("fake-vision", 8192, 512), vision=True),
    }
    return Registry(
        models=models,
        default="fake-model",
        configured=True,
        timeouts=Timeouts(connect=2, read=kw.get("read_timeout", 1.5), retries=2),
    )


def events(response) -> list[dict]:
    """The lines of a JSONL answer (held to the JSONL rules)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/jsonl")
    body = response.content
    assert body.endswith(b"\n") and b"\n\n" not in body
    return [json.loads(line) for line in body.decode().split("\n")[:-1]]
