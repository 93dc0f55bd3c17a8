"""The ASGI app: Starlette runs the lifespan; every request goes to the dispatcher,
plain ASGI, so an API request costs one dict walk, one token check and one action."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any
from urllib.parse import parse_qsl

import anyio
import msgspec
from starlette.applications import Starlette

from ..actions.auth import TokenCache, authenticate, authorize, issue_session, run_as, scope_catalogue, session_routes
from ..actions.base import Action, Call, Context, Principal, Raw, Stream, Upload, decode, decode_query
from ..actions.stream import PING_LINE, end_line, error_line
from ..config import Settings
from ..engine.models import Registry, from_settings
from ..errors import (
    ApiError,
    BadRequest,
    ContentTooLarge,
    InternalError,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
)
from ..spec.openapi import build_spec
from ..store import keys
from ..store.channels import Hub
from ..store.connect import connect
from ..store.listen import Listener
from ..store.pool import Disconnected, Pool
from .cors import METHODS, Cors
from .idempotency import Keys, Replay, key_of, request_hash
from .ratelimit import Limits, RateLimiter
from .routes import RouteTable

log = logging.getLogger("botkit")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_ENCODE = msgspec.json.Encoder().encode
# A route's methods, as Allow names them (an OPTIONS answer, a 405).
_ALLOW = {"GET": b"GET, HEAD, OPTIONS", "POST": b"POST, OPTIONS", "PUT": b"PUT, OPTIONS"}
JSON = b"application/json"
JSONL = b"application/jsonl"
FINISH_GRACE_SECONDS = 10  # at shutdown, for completions whose client left (as uvicorn's grace)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every log record (as %(request_id)s)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def error_body(exc: ApiError, request_id: str) -> bytes:
    """The one shape of an error answer: {message, code}, and the request id on a 5xx."""
    body = {"message": exc.message, "code": exc.code}
    if exc.status >= 500:
        body["requestId"] = request_id
    return _ENCODE(body)


# Generated request ids: a random per-process prefix and a counter (unique without a
# syscall per request), 32 hex digits like a UUID.
_REQUEST_PREFIX = os.urandom(8).hex()
_request_counter = itertools.count(int.from_bytes(os.urandom(4), "big"))


def request_id_of(value: bytes | None) -> str:
    """The request's X-Request-Id if it sent a usable one, else a new one."""
    if value:
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if 0 < len(text) <= 128 and text.isprintable():
            return text
    return f"{_REQUEST_PREFIX}{next(_request_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def _without_body(send):
    """HEAD: the GET's status and headers (its Content-Length too), no body."""

    async def head_send(message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return head_send


class Dispatcher:
    """POST/GET /v1/<resource>/<action> → the action of that route."""

    def __init__(self, state: AppState, routes: list[Action]) -> None:
        self.state = state
        self.routes = RouteTable(routes)
        self.spec = _ENCODE(build_spec(routes))
        self.cors = Cors(state.settings.cors_origins)

    async def dispatch(self, scope, receive, send, path: str, api: bool = True) -> None:
        """Answer one HTTP request; `path` is below /v1 (or, with api=False, the whole path)."""
        started = time.perf_counter()
        headers = dict(scope["headers"])  # last value wins; the headers we read are single
        request_id = request_id_of(headers.get(b"x-request-id"))
        token = request_id_var.set(request_id)
        streaming = False
        principal: Principal | None = None
        # CORS, then the rate-limit headers once the caller is known
        origin = headers.get(b"origin")
        extra: list[tuple[bytes, bytes]] = self.cors.headers(origin)
        method = scope["method"]
        if method == "HEAD":
            send = _without_body(send)
        try:
            if method == "OPTIONS" and api:
                matched = self.routes.match(path)
                allow = _ALLOW[matched[0].method] if matched else METHODS
                allowed = self.cors.preflight(origin, extra, headers.get(b"access-control-request-headers"), allow)
                await self._send(send, 204, b"", request_id, started, allowed, content=False)
                return
            if not api:
                await self._outside_api(send, scope["method"], path, request_id, started)
                return
            if path == "/spec.json":
                if scope["method"] not in ("GET", "HEAD"):
                    raise MethodNotAllowed("use GET", allow=_ALLOW["GET"].decode())
                await self._send(send, 200, self.spec, request_id, started)
                return
            action, params = self._route(method, path)
            if not action.public:
                client = scope.get("client")
                principal = await self._principal(action, path, params, headers, extra, client and client[0])
            call = await self._call(action, params, scope, receive, headers)
            state = self.state
            assert state.pool is not None
            ctx = Context(principal=principal, pool=state.pool, request_id=request_id, services=state)
            key = headers.get(b"idempotency-key") if action.method == "POST" and principal is not None else None
            result = await (_run(action, ctx, call) if key is None else self._run_keyed(action, ctx, call, key, scope))
            if action.changes_credentials:
                state.forget_credentials()
            if isinstance(result, (Raw, Stream)):
                streaming = True
                await self._send_streamed(scope, receive, send, action, call, result, request_id, started, extra)
            elif isinstance(result, Replay):
                extra.append((b"idempotent-replayed", b"true"))
                await self._send(send, result.status, result.body, request_id, started, extra)
            else:
                await self._send(send, 200, _ENCODE(result), request_id, started, extra)
        except ApiError as exc:
            if streaming:
                raise
            self._failed(exc, principal, path, extra)
            await self._send(send, exc.status, error_body(exc, request_id), request_id, started, extra)
        except Exception:
            if streaming:
                raise
            log.exception("unhandled error")
            await self._send(
                send, 500, error_body(InternalError("internal server error"), request_id), request_id, started, extra
            )
        finally:
            request_id_var.reset(token)

    async def _run_keyed(self, action: Action, ctx: Context, call: Call, raw_key: bytes, scope) -> Any:
        """The action under an Idempotency-Key (transport/idempotency.py): run once, its
        first answer replayed to retries."""
        key = key_of(raw_key)
        if action.streams_body:  # an upload's bytes are not read twice to compare them
            raise BadRequest("Idempotency-Key: not taken on uploads (an upload of the same bytes is idempotent)")
        digest = request_hash(
            scope["path"], scope["query_string"], _ENCODE(call.body) if call.body is not None else b""
        )
        keys, pool = self.state.idempotency, ctx.pool
        replay = await keys.claim(pool, ctx.account_id, key, digest)
        if replay is not None:
            return replay
        try:
            result = await _run(action, ctx, call)
        except BaseException:
            try:
                await asyncio.shield(keys.forget(pool, ctx.account_id, key))
            except Exception as exc:  # the database went away too: the key frees itself after a while
                log.warning("Idempotency-Key: could not free the key: %s", exc)
            raise
        streamed = isinstance(result, (Raw, Stream))
        await keys.done(pool, ctx.account_id, key, 200, None if streamed else _ENCODE(result))
        return result

    def _failed(self, exc: ApiError, principal: Principal | None, path: str, extra: list) -> None:
        """What an error answer says besides itself: the log, the event log, its headers."""
        if exc.status >= 500:  # a busy or absent database (Retry-After) is a warning, the rest errors
            (log.warning if exc.retry_after is not None else log.error)("%s: %s", exc.code, exc.message)
        elif exc.code == "LIMITS_REACHED" and principal is not None and self.state.events is not None:
            self.state.events.refused(principal.account_id, exc.code, path)  # the event log says so
        extra.extend(exc.headers())

    def _route(self, method: str, path: str) -> tuple[Action, dict[str, str]]:
        matched = self.routes.match(path)
        if matched is None:
            raise NotFound(f"no route {path[:200]}")
        action, params = matched
        if method != action.method and not (method == "HEAD" and action.method == "GET"):
            raise MethodNotAllowed(f"{action.path} takes {action.method}", allow=_ALLOW[action.method].decode())
        return action, params

    async def _call(self, action: Action, params: dict[str, str], scope, receive, headers) -> Call:
        """The request as the action's structs: its query and body, decoded and validated."""
        accept = headers.get(b"accept", b"")
        jsonl = JSONL in accept and scope["method"] != "HEAD"
        call = Call(params=params, jsonl=jsonl, end=jsonl and _asks_end(accept))
        if action.query is not None:
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            call.query = decode_query(pairs, action.query)
        # an export tells from Accept whether to answer CSV (actions.standard.ExportAction)
        csv = getattr(action, "answers_csv", False) and scope["method"] != "HEAD"
        if action.streams_body or action.raw_response is not None or csv or action.reads_headers:
            call.headers = headers
        if action.streams_body:
            content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
            if action.body is None or content_type not in ("", "application/json"):
                declared = headers.get(b"content-length", b"")
                length = int(declared) if declared.isdigit() else None
                call.upload = Upload(content_type, length, headers, _body_chunks(receive))
                return call
        if action.body is not None:
            raw = await self._read_body(receive, headers, action.json_max_bytes)
            call.body = decode(raw.strip(b" \t\r\n") or b"{}", action.body)  # JSON's whitespace only
        return call

    async def _principal(
        self,
        action: Action,
        path: str,
        params: dict[str, str],
        headers: dict[bytes, bytes],
        extra: list[tuple[bytes, bytes]],
        address: str | None = None,
    ) -> Principal:
        """The caller (token, run-as), counted against its rate limits (their headers
        go into `extra`), allowed this route. Failed authentication is throttled by the
        client's address and the token's first characters."""
        state = self.state
        secret = _bearer(headers.get(b"authorization"))
        wait = state.limiter.throttled(address, secret)
        if wait:
            raise TooManyRequests(f"too many failed authentications; retry in {wait} s", retry_after=wait)
        try:
            principal = await authenticate(state.pool, secret, state.session_key, state.token_cache)
        except NotAuthenticated:
            state.limiter.failed(address, secret)
            raise
        # Both spellings of the header (the SDKs send x-runas-user-id), or a child by email.
        child = headers.get(b"x-runas-user-id", headers.get(b"x-runas-userid"))
        email = headers.get(b"x-runas-child-user-email")
        if child is not None or email is not None:
            principal = await run_as(
                state.pool,
                principal,
                child.decode("latin-1").strip() if child is not None else None,
                email.decode("latin-1").strip() if email is not None else None,
            )
        allowed, limit_headers, reset_in = state.limiter.hit(principal, action)
        extra.extend(limit_headers)
        if not allowed:
            if state.events is not None:
                state.events.refused(principal.account_id, "TOO_MANY_REQUESTS", path)  # the event log says so
            raise TooManyRequests(f"rate limit reached; retry in {reset_in} s", retry_after=reset_in)
        authorize(principal, action, path, params)
        return principal

    async def _outside_api(self, send, method: str, path: str, request_id: str, started: float) -> None:
        """/healthz (alive: answered without the database, so a busy pool cannot make a
        balancer drop the node) and /readyz (the database answers, on a connection of its
        own); any other path is 404."""
        if path not in ("/healthz", "/readyz"):
            raise NotFound(f"no route {path[:200]}")
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{path} takes GET", allow="GET, HEAD")
        if path == "/readyz":
            problem = await self.state.database_problem()
            if problem is not None:
                unready = ServiceUnavailable(f"database unavailable: {problem}", retry_after=2)
                await self._send(send, 503, error_body(unready, request_id), request_id, started, unready.headers())
                return
        await self._send(send, 200, b'{"status":"ok"}', request_id, started)

    async def _read_body(self, receive, headers, limit: int | None = None) -> bytes:
        limit = limit or self.state.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ContentTooLarge(f"the request body is larger than {limit} bytes")
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ContentTooLarge(f"the request body is larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _send(
        send,
        status: int,
        body: bytes,
        request_id: str,
        started: float,
        extra: Sequence[tuple[bytes, bytes]] = (),
        content: bool = True,
    ) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        typed = [(b"content-type", JSON), (b"content-length", str(len(body)).encode())] if content else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *typed,
                    (b"x-request-id", request_id.encode()),
                    (b"server-timing", b"app;dur=%.3f" % elapsed),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _send_streamed(
        self, scope, receive, send, action: Action, call: Call, result, request_id, started, extra
    ) -> None:
        if isinstance(result, Raw):
            await self._send_raw(send, result, request_id, started, extra)
            return
        # event streams (completions) keep proxies from cutting a long silence
        keepalive = self.state.settings.stream_keepalive_seconds if action.events is not None else 0
        content_type = getattr(result, "content_type", JSONL)  # a CSV export's is text/csv
        end = action.item is not None and call.end and content_type == JSONL  # lists close with `end` if asked
        await self._stream(scope, receive, send, result, request_id, started, extra, keepalive, end, content_type)

    async def _send_raw(self, send, result: Raw, request_id: str, started: float, extra) -> None:
        """A Raw answer: its status, its headers, its bytes as they come."""
        elapsed = (time.perf_counter() - started) * 1000
        headers = [
            *result.headers,
            (b"x-request-id", request_id.encode()),
            (b"server-timing", b"app;dur=%.3f" % elapsed),
            *extra,
        ]
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
        if isinstance(result.body, bytes):
            await send({"type": "http.response.body", "body": result.body})
            return
        async for chunk in result.body:  # a client that goes away ends the send with an OSError
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _stream(
        self,
        scope,
        receive,
        send,
        result: Stream,
        request_id: str,
        started: float,
        extra: Sequence[tuple[bytes, bytes]] = (),
        keepalive: float = 0,
        end: bool = False,
        content_type: bytes = JSONL,
    ) -> None:
        """JSONL: lines as the action yields them; stops when the client goes away;
        an error after the first byte becomes an `error` line; with `keepalive`, a
        `{"type":"ping"}` line after that many idle seconds (as the hosted platform
        sends; clients ignore types they do not know); with `end`, a closing
        `{"type":"end","data":{"count":N}}` line when every line was written. Another
        content type (a CSV export) has no error line: a failure cuts the answer short."""
        elapsed = (time.perf_counter() - started) * 1000
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type),
                    (b"x-request-id", request_id.encode()),
                    (b"server-timing", b"app;dur=%.3f" % elapsed),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    *extra,
                ],
            }
        )

        # Two tasks per stream, so that thousands of idle ones stay light: this one
        # produces the lines; a watcher waits for the client to leave (then ends this
        # one's `left` scope, stopping the producer at its await) and, with
        # `keepalive`, sends the pings in the silences.
        sending = asyncio.Lock()  # the pinger and the producer take turns
        # The first ping comes after a random part of the interval: streams opened together
        # (clients reconnecting after a deploy) do not all ping in the same instant forever.
        last_sent = time.monotonic() - random.uniform(0, keepalive / 2)
        gone = False
        chunks = result.chunks

        async def emit(chunk: bytes, more: bool = True) -> None:
            nonlocal last_sent
            async with sending:
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                last_sent = time.monotonic()

        async def watch(left: asyncio.Timeout) -> None:
            nonlocal gone
            while True:
                if keepalive > 0:
                    idle_for = last_sent + keepalive - time.monotonic()
                    if idle_for <= 0:
                        await emit(PING_LINE)
                        continue
                    try:
                        async with asyncio.timeout(idle_for):
                            message = await receive()
                    except TimeoutError:
                        continue
                else:
                    message = await receive()
                if message["type"] == "http.disconnect":
                    break
            gone = True
            left.reschedule(-1)  # the client went away: stop reading the database

        try:
            async with asyncio.timeout(None) as left:
                watcher = asyncio.get_running_loop().create_task(watch(left))
                try:
                    try:
                        lines = 0
                        async for chunk in chunks:
                            await emit(chunk)
                            lines += chunk.count(b"\n") if end else 0
                        if end:
                            await emit(end_line(lines))
                    except Exception as exc:
                        if content_type != JSONL:
                            raise
                        await emit(_failure_line(exc, request_id))
                finally:
                    watcher.cancel()
                await emit(b"", more=False)
        except TimeoutError:
            if not gone:
                raise
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()  # its `finally`s run now (it may be waiting at a `yield`)


def _failure_line(exc: Exception, request_id: str) -> bytes:
    """The `error` line of a JSONL stream that failed after its first byte."""
    if isinstance(exc, ApiError):
        return error_line(exc.message, exc.code)
    log.error("stream failed", exc_info=exc)
    return error_line("internal server error", "INTERNAL_SERVER_ERROR", request_id)


def _asks_end(accept: bytes) -> bool:
    """`Accept: application/jsonl; end=true`: the client wants the closing `end` line
    (opt-in: the official Python SDK refuses line types other than `item`)."""
    for media in accept.lower().split(b","):
        kind, *params = media.split(b";")
        if kind.strip() == JSONL:
            return any(p.replace(b" ", b"") in (b"end=true", b"end=1") for p in params)
    return False


async def _body_chunks(receive):
    """A request body's chunks as they arrive; a client that leaves mid-body is a 400."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client went away before the body ended")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _run(action: Action, ctx: Context, call: Call) -> Any:
    try:
        return await action.run(ctx, call)
    except Disconnected:
        if action.method != "GET":
            raise
        return await action.run(ctx, call)  # a read whose connection died: once more, on another


def _bearer(value: bytes | None) -> str:
    if not value:
        raise NotAuthenticated("an Authorization header with a token is required")
    try:
        scheme, _, token = value.decode("latin-1").strip().partition(" ")
    except Exception:  # pragma: no cover - latin-1 decodes any bytes
        raise NotAuthenticated("the Authorization header is malformed") from None
    token = token.strip()
    # session tokens carry their route allow-list, so they are longer than API tokens
    if scheme.lower() not in ("bearer", "token") or not token or len(token) > 4096:
        raise NotAuthenticated("use 'Authorization: Bearer <token>'")
    return token


class AppState:
    """The app's shared state, and the services its actions use (actions.base.Services)."""

    def __init__(self, settings: Settings, routes: list[Action]) -> None:
        self.settings = settings
        self.models: Registry = from_settings(settings)
        self.pool: Pool | None = None
        self.session_key: bytes | None = None
        self.token_cache = TokenCache(settings.auth_cache_seconds)
        self.listener: Listener | None = None
        self.limiter = RateLimiter(
            Limits(
                per_token=settings.rate_limit,
                per_account=settings.rate_limit_account,
                messages=settings.rate_limit_messages,
                history=settings.rate_limit_history,
                auth_failures=settings.rate_limit_auth_failures,
                processes=settings.processes or settings.workers,
            )
        )
        self.session_actions = [a for a in routes if a.session]
        self.scope_catalogue = scope_catalogue(routes)
        self._ready: tuple[float, str | None] = (0.0, "not checked")  # (checked at, the problem)
        self._ready_lock = asyncio.Lock()
        self.idempotency = Keys()
        self._ready_conn: Any = None
        self.channels: Hub | None = None
        self.events: Any = None  # resources.event.EventLog, set by the services
        self.jobs: Any = None  # store.queue.Runner, set by the services
        self.storage: Any = None  # store.files.Storage, set by the services
        self.fetch_policy: Any = None  # engine.fetch.FetchPolicy, set by the services
        self.finishing: set[asyncio.Task] = set()  # completions whose client left, being stored

    def issue_session(self, account_id: str, conversation_id: str, seconds: float) -> tuple[str, str, int]:
        assert self.session_key is not None
        return issue_session(
            self.session_key, account_id, session_routes(conversation_id, self.session_actions), seconds
        )

    async def database_problem(self) -> str | None:
        """Readiness: None when the database answers a query on the readiness check's own
        connection within 2 s (checked at most once a second, whatever the probe rate)."""
        async with self._ready_lock:
            checked, problem = self._ready
            if time.monotonic() - checked < 1.0:
                return problem
            try:
                with anyio.fail_after(2):
                    if self._ready_conn is None or self._ready_conn.is_closed():
                        self._ready_conn = await connect(self.settings.database_url or "")
                    await self._ready_conn.fetchval("SELECT 1")
                problem = None
            except Exception as exc:
                if self._ready_conn is not None:
                    self._ready_conn.terminate()
                    self._ready_conn = None
                problem = type(exc).__name__
            self._ready = (time.monotonic(), problem)
            return problem

    async def close_readiness(self) -> None:
        if self._ready_conn is not None:
            self._ready_conn.terminate()
            self._ready_conn = None

    async def let_finish(self, seconds: float) -> None:
        """Completions whose client left get `seconds` to be stored, then are cancelled."""
        if self.finishing:
            log.info("waiting up to %g s for %d completion(s) to be stored", seconds, len(self.finishing))
            _, late = await asyncio.wait(set(self.finishing), timeout=seconds)
            for task in late:
                task.cancel()

    def forget_credentials(self) -> None:
        # this process forgets its cached tokens now (others hear it from the database
        # in milliseconds, store/listen.py)
        self.token_cache.clear()


def create_app(
    settings: Settings,
    routes: list[Action],
    services: Callable[[AppState], AbstractAsyncContextManager] | None = None,
) -> App:
    """The app for these settings serving these routes, with what runs beside them
    (`botkit serve` hands it resources.ROUTES, every route, and resources.services)."""
    state = AppState(settings, routes)
    dispatcher = Dispatcher(state, routes)

    @asynccontextmanager
    async def lifespan(app):
        if not settings.database_url:
            raise RuntimeError("DATABASE_URL is not set (use `botkit serve`, which starts the embedded PostgreSQL)")
        state.pool = await Pool(
            settings.database_url,
            settings.pool_size,
            acquire_timeout=settings.pool_timeout,
            statement_timeout=settings.statement_timeout,
            share=settings.pool_account_share or None,
        ).open()
        state.session_key = await keys.session_key(state.pool, settings.session_secret)
        state.channels = Hub(settings.database_url, state.pool)
        await state.channels.start()
        if settings.auth_cache_seconds > 0:
            state.listener = _auth_listener(settings.database_url, state.token_cache)
            await state.listener.start()
        try:
            async with services(state) if services is not None else nullcontext():
                yield
                await state.let_finish(FINISH_GRACE_SECONDS)
        finally:
            if state.listener is not None:
                await state.listener.stop()
            await state.channels.stop()
            await state.close_readiness()
            await state.pool.close()

    # Starlette runs the lifespan; App sends every request to the dispatcher.
    shell = Starlette(lifespan=lifespan)
    shell.state.botkit = state
    return App(shell, dispatcher)


def _auth_listener(dsn: str, cache: TokenCache) -> Listener:
    """Evicts what the database says changed; while nobody listens, the cache is off."""

    def up() -> None:
        cache.clear()  # what changed while nobody listened is unknown
        cache.enabled = True

    def down() -> None:
        cache.enabled = False
        cache.clear()

    return Listener(dsn, "botkit_auth", cache.evict, up, down)


class App:
    """Every HTTP request goes straight to the dispatcher (it handles its own errors,
    so every answer has the {message, code} shape and an X-Request-Id); Starlette
    runs the lifespan. This skips three middleware layers and a regex walk per request."""

    def __init__(self, shell: Starlette, dispatcher: Dispatcher) -> None:
        self.shell = shell
        self.dispatcher = dispatcher
        self.state = shell.state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith("/v1/"):
                return await self.dispatcher.dispatch(scope, receive, send, path[3:])
            if path.startswith("/api/v1/"):
                return await self.dispatcher.dispatch(scope, receive, send, path[7:])
            return await self.dispatcher.dispatch(scope, receive, send, path, api=False)
        await self.shell(scope, receive, send)
