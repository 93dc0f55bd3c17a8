"""The action framework: what an action (one route) is, the request context it runs
in, and decoding a request's body and query string into their msgspec structs.

Resource modules export their actions as lists; resources/__init__.py puts them in
one ordered route list, which transport and the spec builder are both handed."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec

from ..errors import BadRequest
from .fields import SAFE_INTEGER, field_names
from .query import gather

if TYPE_CHECKING:  # types only: actions never reach into the store or engine at import
    from ..engine.models import Registry
    from ..store.pool import Pool

API_TOKEN_PREFIX = "bk_"


@dataclass(slots=True)
class Principal:
    """Who is calling: the account acted in and the token that proved it."""

    account_id: str
    token_id: str
    scopes: Any = None  # list of scope dicts, None = everything
    limits: Any = None  # the acting account's limits (dict) or None
    session_routes: frozenset | None = None  # set for session tokens: the only routes allowed
    child_token: bool = False  # the token belongs to a child account: it cannot run as anyone
    expires_at: int | None = None  # a session token's expiry (ms)


class Services(Protocol):
    """What the app lends its actions besides the pool (transport/app.py provides it)."""

    models: Registry
    channels: Any  # store.channels.Hub: listen to a channel of an account
    events: Any  # resources.event.EventLog: record an event on a connection
    jobs: Any  # store.queue.Runner: kick() when work was queued
    storage: Any  # store.files.Storage: file content
    fetch_policy: Any  # engine.fetch.FetchPolicy: which addresses botkit may fetch
    session_key: bytes | None  # signs session tokens and the local storage's URLs
    settings: Any  # config.Settings
    scope_catalogue: dict[str, frozenset[str]]  # the resource paths a token's scopes may name
    finishing: set  # asyncio tasks of completions whose client left (actions.stream.finished_anyway)

    def issue_session(self, account_id: str, conversation_id: str, seconds: float) -> tuple[str, str, int]:
        """(session id, token, expiresAt ms): a session token for one conversation."""
        ...

    def forget_credentials(self) -> None:
        """This process drops what it cached about tokens and accounts."""
        ...


@dataclass(slots=True)
class Context:
    """What an action may use: the caller, the database pool, the app's services."""

    principal: Principal | None
    pool: Pool
    request_id: str
    services: Services
    started: float = field(default_factory=time.perf_counter)

    @property
    def account_id(self) -> str:
        assert self.principal is not None
        return self.principal.account_id


@dataclass(slots=True)
class Call:
    """One call of an action: path parameters, the decoded query and body."""

    params: dict[str, str]
    query: Any = None  # an instance of the action's `query` struct (None when it has none)
    body: Any = None  # an instance of the action's `body` struct
    jsonl: bool = False  # the client asked for application/jsonl
    end: bool = False  # ... with `end=true`: a list stream closes with an `end` line
    upload: Upload | None = None  # a streamed body that is not JSON (actions with streams_body)
    headers: dict[bytes, bytes] | None = None  # the request's headers (actions with streams_body or raw answers)


class Stream:
    """An action's JSONL answer: an async iterator of encoded chunks (whole lines)."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks


class Raw:
    """An action's answer as bytes of its own type (a file's content): the status, the
    headers it sets (content-type among them) and the body, whole or as chunks."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes | AsyncIterator[bytes]) -> None:
        self.status, self.headers, self.body = status, headers, body


class Upload:
    """A request body that is not JSON, read as it arrives (actions with
    `streams_body`): its content type, its declared length, and its chunks (once)."""

    __slots__ = ("content_type", "length", "headers", "_chunks")

    def __init__(self, content_type: str, length: int | None, headers: dict[bytes, bytes], chunks) -> None:
        self.content_type, self.length, self.headers, self._chunks = content_type, length, headers, chunks

    def chunks(self) -> AsyncIterator[bytes]:
        return self._chunks


_FRAMEWORK = os.path.dirname(os.path.abspath(__file__))


def _declared_at(action: Action) -> tuple[str, int]:
    """The file and line that made the action: the first frame that is neither in
    actions/ nor one of the action's own `__init__`s."""
    frame = sys._getframe(2)
    while frame.f_back is not None and (
        os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _FRAMEWORK
        or (frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is action)
    ):
        frame = frame.f_back
    return frame.f_code.co_filename, frame.f_lineno


class Action:
    """One route. A subclass sets what is fixed for it as class attributes and
    implements `run`; the flags that vary per route are given where it is made."""

    method: str = "POST"
    path: str = ""  # under /v1, e.g. "/bot/{botId}/fetch"
    summary: str = ""
    tag: str = ""
    body: type | None = None  # msgspec Struct of the JSON body
    query: type | None = None  # msgspec Struct of the query string
    response: type | None = None  # msgspec Struct of the JSON answer
    item: type | None = None  # lists: the JSONL `item` data
    events: Any = None  # streams: a tagged struct (or union) per JSONL line
    public: bool = False  # served without a token
    # A conversation-bound session token (widgets) may call this action for its own
    # conversation: the route's {conversationId} must be the session's conversation.
    session: bool = False
    budget: str | None = None  # "messages" or "history": a rate-limit budget besides the general one
    changes_credentials: bool = False  # changes tokens or accounts: the token cache forgets at once
    # A body that is not JSON arrives as `call.upload`, streamed, beyond the JSON body
    # limit (the action bounds it); a JSON body is decoded into `body` up to json_max_bytes.
    streams_body: bool = False
    body_types: tuple[str, ...] = ()  # the request content types besides JSON (the spec lists them)
    json_max_bytes: int | None = None  # None: BOTKIT_MAX_BODY_BYTES
    raw_response: str | None = None  # the content type of a Raw answer (the spec documents it)
    reads_headers: bool = False  # the action reads the request's headers (call.headers)
    # a path parameter's type when the action holds it to one (the spec states its schema;
    # others are strings: an id that names nothing is a 404)
    path_types: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        path: str | None = None,
        *,
        summary: str | None = None,
        session: bool | None = None,
        budget: str | None = None,
        changes_credentials: bool | None = None,
    ) -> None:
        if path is not None:
            self.path = path
        if not self.path.startswith("/"):
            raise ValueError(f"{type(self).__name__}: a route path starts with / (got {self.path!r})")
        if summary is not None:
            self.summary = summary
        if session is not None:
            self.session = session
        if budget is not None:
            self.budget = budget
        if changes_credentials is not None:
            self.changes_credentials = changes_credentials
        self.declared_at = _declared_at(self)

    @property
    def operation(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[1]

    async def run(self, ctx: Context, call: Call) -> Any:
        raise NotImplementedError


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# 16 digits in a row: the only way to write an integer beyond 2**53 (SAFE_INTEGER).
# ... or an exponent of two digits (1e16, 9.1E+15), the only ways to write a number
# beyond 2**53 at all. (One leading digit, then the alternatives: sre scans for it
# fast; an alternation at the top tried both at every byte, 4 µs on a small body.)
_LONG_DIGITS = re.compile(rb"[0-9](?:[0-9]{15}|[eE]\+?[0-9]{2})")


def _unsafe_integer(value: Any) -> int | float | None:
    """The first integer in a decoded JSON value that a JavaScript client would round,
    or number beyond 2**53 (JSON Schema calls 1e20 an integer: it is refused too)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is int or type(item) is float:
            if abs(item) > SAFE_INTEGER:
                return item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _normal(value: Any) -> Any:
    """The value with each integral float (`1.0`, `2e3`) as the integer it is (JSON has
    one number type, and JSON Schema calls 1.0 an integer, so an integer field takes it)
    and without NUL characters (PostgreSQL stores none, in text or in jsonb)."""
    if type(value) is float:
        return int(value) if value.is_integer() and abs(value) <= SAFE_INTEGER else value
    if type(value) is str:
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_normal(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def decode(data: bytes | str | Any, type_: type) -> Any:
    """JSON bytes (or already-decoded values) into a struct; errors name the field.

    An integer beyond 2**53 is refused anywhere in a body, free-form values (meta,
    config, schemas) too: stored, it would come back rounded to most clients. The
    typed fields say so in their bounds; the rest is checked only when the body holds
    16 digits in a row, which is rare. An integral float is taken as an integer, and
    NUL characters are dropped (see _normal)."""
    try:
        if isinstance(data, (bytes, str)):
            raw = data.encode() if isinstance(data, str) else data
            slow = b"\\u0000" in raw  # rare: the slow path drops NULs
            if not slow:
                try:
                    value: Any = msgspec.json.decode(raw, type=type_)
                except msgspec.ValidationError as exc:
                    if "got `float`" not in str(exc):
                        raise
                    slow = True  # rare: an integer written as 1.0; the slow path converts it
            long = _LONG_DIGITS.search(raw) is not None
            loose = msgspec.json.decode(raw) if slow or long else None  # the body as plain values, once
            if slow:
                value = msgspec.convert(_normal(loose), type=type_)
            if long and (big := _unsafe_integer(loose)) is not None:
                raise BadRequest(
                    f"invalid request: the number {big} is beyond 2**53; send it as a string (JSON clients round it)"
                )
            return value
        return msgspec.convert(data, type=type_)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:  # invalid UTF-8 inside a JSON string
        raise BadRequest("the request body is not valid UTF-8") from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None


def decode_query(pairs: list[tuple[str, str]], type_: type) -> Any:
    """Query pairs into the action's query struct (strings converted: strict=False).

    `meta.<key>=value` and `meta[key]=value` are taken out first into one `meta`
    object (the dot form is what the official SDKs send). A key given twice is
    refused; keys the struct does not name are ignored."""
    values = gather(pairs, "meta" in field_names(type_))
    try:
        return msgspec.convert(values, type=type_, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid query: {exc}") from None
