"""The action framework: what an action is, the request context it runs in, and the
registry that transport's route table and the spec are both built from."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, ClassVar

import msgspec


API_TOKEN_PREFIX = "bk_"


@dataclass(slots=True)
class Principal:
    """Who is calling: the account acted in and the token that proved it."""
    account_id: str
    token_id: str
    scopes: Any = None                      # list of scope dicts, None = everything
    limits: Any = None                      # the acting account's limits (dict) or None
    session_routes: frozenset | None = None  # set for session tokens: the only routes allowed
    acting_for: str | None = None           # X-RunAs-UserId: the token's own account


@dataclass(slots=True)
class Context:
    """What an action may use: the caller, the database pool, the request id."""
    principal: Principal | None
    pool: Any  # store.pool.Pool
    request_id: str
    services: Any = None  # the app's shared state: settings, session key, ... (transport.app.AppState)
    started: float = field(default_factory=time.perf_counter)

    @property
    def account_id(self) -> str:
        assert self.principal is not None
        return self.principal.account_id


@dataclass(slots=True)
class Call:
    """One call of an action: path parameters, query pairs, decoded body."""
    params: dict[str, str]
    query: list[tuple[str, str]]
    body: Any = None
    jsonl: bool = False  # the client asked for application/jsonl


@dataclass(slots=True)
class Param:
    """A query parameter, for the spec (validation is the action's job)."""
    name: str
    schema: dict
    description: str = ""
    style: str | None = None


class Stream:
    """An action's JSONL answer: an async iterator of encoded chunks (whole lines)."""
    __slots__ = ("chunks",)

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks


class Action:
    """One route. Subclasses set the class attributes and implement `run`."""
    method: ClassVar[str] = "POST"
    path: ClassVar[str]               # under /v1, e.g. "/bot/{botId}/fetch"
    summary: ClassVar[str] = ""
    tag: ClassVar[str] = ""
    body: ClassVar[type | None] = None      # msgspec Struct of the JSON body
    response: ClassVar[type | None] = None  # msgspec Struct of the JSON answer
    item: ClassVar[type | None] = None      # set on lists: the JSONL `item` data
    query_params: ClassVar[tuple[Param, ...]] = ()
    public: ClassVar[bool] = False          # served without a token
    # A conversation-bound session token (widgets) may call this action for its own
    # conversation: the route's {conversationId} must be the session's conversation.
    session: ClassVar[bool] = False

    @property
    def resource(self) -> str:
        return self.path.strip("/").rsplit("/", 1)[0]

    @property
    def operation(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[1]

    async def run(self, ctx: Context, call: Call) -> Any:
        raise NotImplementedError


REGISTRY: list[Action] = []


def register(*actions: Action) -> None:
    for action in actions:
        if any(a.path == action.path for a in REGISTRY):
            raise RuntimeError(f"route registered twice: {action.path}")
        REGISTRY.append(action)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def decode(data: bytes | str | Any, type_: type) -> Any:
    """JSON bytes (or already-decoded values) into a struct; errors name the field."""
    from ..errors import BadRequest
    try:
        if isinstance(data, (bytes, str)):
            return msgspec.json.decode(data, type=type_)
        return msgspec.convert(data, type=type_)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:  # invalid UTF-8 inside a JSON string
        raise BadRequest("the request body is not valid UTF-8") from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
