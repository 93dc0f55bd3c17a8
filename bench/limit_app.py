"""The limit: the thinnest Starlette + uvicorn (uvloop, httptools) + asyncpg + orjson
app that does what botkit's bot routes do, with the same SQL and the same token
check, on a FIFO-fair, reset-free pool (botkit.store.pool.Pool, as PERFORMANCE.md
describes). No validation beyond what the SQL needs, no middleware, no logging:
the ceiling of this stack on this machine, not an alternative server.

It does the per-request work botkit does besides its framework (issue 14), so that
botkit/limit measures the framework: a checked token is kept for
BOTKIT_AUTH_CACHE_SECONDS (10 s, botkit's default; 0: query every time), and every
request is counted in sliding one-minute windows per token and per account, as botkit's
rate limiter counts it.

The SQL below is copied from what botkit's standard actions build for the `bots`
table (actions/standard.py: a change and its event-log row in one statement,
resources/event.py) and the token lookup (actions/auth.py); bench/run.py compares
the copies with the framework's at start and warns when they drift.

Run: DATABASE_URL=... PORT=... python bench/limit_app.py"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from contextlib import asynccontextmanager

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from botkit.actions.ids import new_id
from botkit.store.pool import Pool

TOKEN_SQL = (
    "SELECT t.id, t.account_id, t.secret_hash, t.scopes, t.expires_at, t.revoked_at, a.limits, "
    "a.parent_id IS NOT NULL AS child "
    "FROM tokens t JOIN accounts a ON a.id = t.account_id WHERE t.secret_hash = $1"
)

COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "meta",
    "model",
    "backstory",
    "dataset_id",
    "skillset_id",
    "privacy",
    "moderation",
    "alias",
    "name",
    "description",
    "blueprint_id",
    "visibility",
)
SELECT = ", ".join(COLUMNS)
FETCH_SQL = f"SELECT {SELECT} FROM bots WHERE id = $1 AND account_id = $2"
LIST_SQL = f"SELECT {SELECT} FROM bots WHERE account_id = $1 ORDER BY id DESC LIMIT $2"
LIST_CURSOR_SQL = f"SELECT {SELECT} FROM bots WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
WRITABLE = (
    "model",
    "backstory",
    "dataset_id",
    "skillset_id",
    "privacy",
    "moderation",
    "alias",
    "name",
    "description",
    "meta",
    "blueprint_id",
    "visibility",
)
INSERT_COLUMNS = ("id", "account_id", "created_at", "updated_at", *WRITABLE)
META_ARG = INSERT_COLUMNS.index("meta")
# the event-log row written with each change: these columns, after the change's parameters
EVENT_COLUMNS = (
    "id",
    "account_id",
    "type",
    "meta",
    "created_at",
    "updated_at",
    "ability_id",
    "bot_id",
    "contact_id",
    "conversation_id",
    "dataset_id",
    "file_id",
    "record_id",
    "secret_id",
    "skillset_id",
    "task_id",
)


def _with_event(change: str, first: int) -> str:
    marks = ", ".join(f"${first + i}" for i in range(len(EVENT_COLUMNS)))
    return (
        f"WITH changed AS ({change}), "
        f"event AS (INSERT INTO events ({', '.join(EVENT_COLUMNS)}) SELECT {marks} FROM changed) "
        "SELECT changed.id FROM changed"
    )


INSERT_SQL = _with_event(
    f"INSERT INTO bots ({', '.join(INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(INSERT_COLUMNS) + 1))}) RETURNING id",
    len(INSERT_COLUMNS) + 1,
)
UPDATE_MERGE_SQL = _with_event(
    "UPDATE bots SET meta = botkit_meta_limit(botkit_merge_patch(meta, $3::jsonb), 50), "
    "updated_at = $4 WHERE id = $1 AND account_id = $2 RETURNING id",
    5,
)


def event_args(account: str, type_: str, bot_id: str, now: int, body: dict, meta: dict) -> list:
    """The event's parameters: what botkit records for a bot's change."""
    refs = {"bot_id": bot_id, "dataset_id": body.get("datasetId"), "skillset_id": body.get("skillsetId")}
    return [new_id(), account, type_, meta, now, now, *(refs.get(c) for c in EVENT_COLUMNS[6:])]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


WIRE = tuple(_camel(c) for c in COLUMNS)
WIRE_WRITABLE = tuple((c, _camel(c)) for c in WRITABLE)
JSON = "application/json"
UNAUTHENTICATED = b'{"message":"the token is not valid","code":"NOT_AUTHENTICATED"}'
NOT_FOUND = b'{"message":"bot not found","code":"NOT_FOUND"}'

pool: Pool | None = None


def item(row) -> dict:
    return {k: v for k, v in zip(WIRE, row, strict=True) if v is not None}


CACHE_SECONDS = float(os.environ.get("BOTKIT_AUTH_CACHE_SECONDS") or 10)
_checked: dict[bytes, tuple[str, str, float]] = {}  # digest -> (token id, account, until)
_window = -1
_counts: dict[tuple[str, str], int] = {}
_previous: dict[tuple[str, str], int] = {}
_failures: dict[tuple[str, str | None], int] = {}
LIMIT = 10**9


def _count(token_id: str, account: str) -> bool:
    """What botkit's rate limiter does for a request: a sliding-window estimate for its
    token and its account, checked against the limit, then counted."""
    global _window, _counts, _previous
    now = time.time()
    window = int(now // 60)
    if window != _window:
        _previous = _counts if window == _window + 1 else {}
        _window, _counts = window, {}
    weight = 1.0 - (now / 60 - window)
    keys = (("token", token_id), ("account", account))
    for key in keys:
        if _previous.get(key, 0) * weight + _counts.get(key, 0) + 1 > LIMIT:
            return False
    for key in keys:
        _counts[key] = _counts.get(key, 0) + 1
    return True


async def account_of(request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, secret = auth.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not secret:
        return None
    secret = secret.strip()
    # botkit's throttle on failed authentication: the address's and the prefix's failures
    client = request.client.host if request.client else None
    if _failures.get(("c", client), 0) + _failures.get(("p", secret[:12]), 0) > LIMIT:
        return None
    digest = hashlib.sha256(secret.encode()).digest()
    hit = _checked.get(digest)
    if hit is not None and hit[2] > time.monotonic():
        _count(hit[0], hit[1])
        return hit[1]
    row = await pool.fetchrow(TOKEN_SQL, digest)
    if row is None or not hmac.compare_digest(row["secret_hash"], digest) or row["revoked_at"] is not None:
        return None
    if row["expires_at"] is not None and row["expires_at"] <= time.time() * 1000:
        return None
    if CACHE_SECONDS > 0:
        _checked[digest] = (row["id"], row["account_id"], time.monotonic() + CACHE_SECONDS)
    _count(row["id"], row["account_id"])
    return row["account_id"]


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status, media_type=JSON)


async def noop(request) -> Response:
    """Constant JSON, no database, no token: what the HTTP stack (and wrk) can do."""
    return _json(b'{"ok":true}')


async def health(request) -> Response:
    await pool.fetchval("SELECT 1")
    return _json(b'{"status":"ok"}')


async def fetch(request) -> Response:
    account = await account_of(request)
    if account is None:
        return _json(UNAUTHENTICATED, 401)
    row = await pool.fetchrow(FETCH_SQL, request.path_params["bot_id"], account)
    if row is None:
        return _json(NOT_FOUND, 404)
    return _json(orjson.dumps(item(row)))


async def list_bots(request) -> Response:
    q = request.query_params
    take = int(q.get("take") or 25)
    cursor = q.get("cursor")
    account = await account_of(request)
    if account is None:
        return _json(UNAUTHENTICATED, 401)
    if cursor:
        rows = await pool.fetch(LIST_CURSOR_SQL, account, cursor, take + 1)
    else:
        rows = await pool.fetch(LIST_SQL, account, take + 1)
    out = {"items": [item(r) for r in rows[:take]]}
    if len(rows) > take:
        out["cursor"] = rows[take - 1]["id"]
    return _json(orjson.dumps(out))


async def create(request) -> Response:
    body = orjson.loads(await request.body() or b"{}")
    now = time.time_ns() // 1_000_000
    bot_id = new_id()
    args = [bot_id, None, now, now, *(body.get(wire) for _, wire in WIRE_WRITABLE)]
    if args[META_ARG] is None:
        args[META_ARG] = {}
    account = await account_of(request)
    if account is None:
        return _json(UNAUTHENTICATED, 401)
    args[1] = account
    event = event_args(account, "bot.create", bot_id, now, body, {"botId": bot_id})
    await pool.execute(INSERT_SQL, *args, *event)
    return _json(orjson.dumps({"id": bot_id}))


async def update(request) -> Response:
    body = orjson.loads(await request.body() or b"{}")
    merge = body["meta"]["$update"]
    account = await account_of(request)
    if account is None:
        return _json(UNAUTHENTICATED, 401)
    bot_id, now = request.path_params["bot_id"], time.time_ns() // 1_000_000
    event = event_args(account, "bot.update", bot_id, now, {}, {"fields": ["meta"], "botId": bot_id})
    updated = await pool.fetchval(UPDATE_MERGE_SQL, bot_id, account, merge, now, *event)
    if updated is None:
        return _json(NOT_FOUND, 404)
    return _json(orjson.dumps({"id": updated}))


@asynccontextmanager
async def lifespan(app):
    global pool
    pool = await Pool(os.environ["DATABASE_URL"], int(os.environ.get("POOL_SIZE", "10"))).open()
    try:
        yield
    finally:
        await pool.close()


app = Starlette(
    routes=[
        Route("/noop", noop),
        Route("/healthz", health),
        Route("/v1/bot/{bot_id}/fetch", fetch),
        Route("/v1/bot/list", list_bots),
        Route("/v1/bot/create", create, methods=["POST"]),
        Route("/v1/bot/{bot_id}/update", update, methods=["POST"]),
    ],
    lifespan=lifespan,
)


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["PORT"]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )
