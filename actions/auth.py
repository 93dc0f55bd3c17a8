"""Who may call what, as whom: API tokens, session tokens (JWT), X-RunAs-UserId,
token scopes and account limits. Checked here, once, for every action."""

from __future__ import annotations

import calendar
import functools
import hmac
import re
import secrets
import time
from typing import Any

import jwt

from ..errors import BadRequest, LimitsReached, NotAuthenticated, NotAuthorized
from .base import API_TOKEN_PREFIX, Action, Principal, hash_secret, now_ms

SESSION_AUDIENCE = "botkit-session"
SESSION_ISSUER = "botkit"
SESSION_ALGORITHM = "HS256"

_TOKEN_SQL = (
    "SELECT t.id, t.account_id, t.secret_hash, t.scopes, t.expires_at, t.revoked_at, a.limits, "
    "a.parent_id IS NOT NULL AS child "
    "FROM tokens t JOIN accounts a ON a.id = t.account_id WHERE t.secret_hash = $1"
)
_CHILD_SQL = "SELECT id, limits FROM accounts WHERE id = $1 AND parent_id = $2"
_LIMITS_SQL = "SELECT limits FROM accounts WHERE id = $1"
# Emails compare case-insensitively; two children with one email make it ambiguous: refused.
_CHILD_BY_EMAIL_SQL = "SELECT id, limits FROM accounts WHERE lower(email) = lower($1) AND parent_id = $2 LIMIT 2"


class TokenCache:
    """Recently seen API tokens, so most requests skip the token query.

    An entry lives `seconds` at most; PostgreSQL tells every process when a token
    or an account changes (triggers NOTIFY botkit_auth, store/listen.py evicts), and
    while that channel is down the cache is off. A token's own expiry is checked on
    every use."""

    def __init__(self, seconds: float, clock=time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.enabled = False  # until the invalidation channel listens
        self._entries: dict[bytes, tuple[Principal, int | None, float]] = {}
        self._by_token: dict[str, bytes] = {}
        self._by_account: dict[str, set[bytes]] = {}

    def get(self, digest: bytes) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        principal, expires_at, until = entry
        if until < self.clock() or (expires_at is not None and expires_at <= time.time() * 1000):
            self._drop(digest)
            return None
        return principal

    def put(self, digest: bytes, principal: Principal, expires_at: int | None) -> None:
        if not self.enabled or self.seconds <= 0:
            return
        if len(self._entries) >= 100_000:  # bounded: start over rather than grow
            self.clear()
        self._entries[digest] = (principal, expires_at, self.clock() + self.seconds)
        self._by_token[principal.token_id] = digest
        self._by_account.setdefault(principal.account_id, set()).add(digest)

    def _drop(self, digest: bytes) -> None:
        entry = self._entries.pop(digest, None)
        if entry is not None:
            principal = entry[0]
            self._by_token.pop(principal.token_id, None)
            digests = self._by_account.get(principal.account_id)
            if digests is not None:
                digests.discard(digest)
                if not digests:
                    del self._by_account[principal.account_id]

    def evict(self, message: str) -> None:
        """`token:<id>` or `account:<id>`, as the database announces changes."""
        kind, _, ident = message.partition(":")
        if kind == "token":
            digest = self._by_token.get(ident)
            if digest is not None:
                self._drop(digest)
        elif kind == "account":
            for digest in list(self._by_account.get(ident, ())):
                self._drop(digest)
        else:
            self.clear()

    def clear(self) -> None:
        self._entries.clear()
        self._by_token.clear()
        self._by_account.clear()


async def authenticate(pool, secret: str, session_key: bytes | None, cache: TokenCache | None = None) -> Principal:
    """An API token (looked up by digest) or a session JWT (verified by signature, and
    held to its account's limits as they are now, as a token is)."""
    digest = hash_secret(secret)
    if cache is not None:
        principal = cache.get(digest)
        if principal is not None:
            return principal
    if not secret.startswith(API_TOKEN_PREFIX) and secret.count(".") == 2 and session_key:
        principal = verify_session(secret, session_key)
        principal.limits = await pool.fetchval(_LIMITS_SQL, principal.account_id)
        if cache is not None:
            cache.put(digest, principal, principal.expires_at)
        return principal
    row = await pool.fetchrow(_TOKEN_SQL, digest)
    # The lookup is by digest; compare_digest keeps the final check constant-time.
    if row is None or not hmac.compare_digest(row["secret_hash"], digest):
        raise NotAuthenticated("the token is not valid")
    if row["revoked_at"] is not None:
        raise NotAuthenticated("the token has been revoked")
    expires_at = row["expires_at"]
    if expires_at is not None and expires_at <= time.time() * 1000:
        raise NotAuthenticated("the token has expired")
    principal = Principal(
        account_id=row["account_id"],
        token_id=row["id"],
        scopes=row["scopes"],
        limits=row["limits"],
        child_token=row["child"],
    )
    if cache is not None:
        cache.put(digest, principal, expires_at)
    return principal


async def in_background(conn, account_id: str, token_id: str) -> Principal:
    """Who a background job acts as (a task execution, a scheduled run): the account,
    held to its limits as the request that queued it was."""
    limits = await conn.fetchval("SELECT limits FROM accounts WHERE id = $1", account_id)
    return Principal(account_id=account_id, token_id=token_id, limits=limits)


async def run_as(pool, principal: Principal, child_id: str | None, child_email: str | None = None) -> Principal:
    """X-RunAs-User-Id (or X-RunAs-Child-User-Email): a parent's API token acts inside
    its direct child's account. Anything else (a sibling, the parent, a grandchild, an
    unknown id or email, a child's own token, a session token) is refused alike, never
    ignored."""
    if principal.session_routes is not None:
        raise NotAuthorized("session tokens cannot act as another user")
    if principal.child_token:
        raise NotAuthorized("a child account's token cannot act as another user")
    if child_id is not None:
        if not 0 < len(child_id) <= 64:
            raise NotAuthorized("not allowed to act as this user")
        rows = [await pool.fetchrow(_CHILD_SQL, child_id, principal.account_id)]
    else:
        if not child_email or len(child_email) > 320:
            raise NotAuthorized("not allowed to act as this user")
        rows = await pool.fetch(_CHILD_BY_EMAIL_SQL, child_email, principal.account_id)
    if len(rows) != 1 or rows[0] is None:
        raise NotAuthorized("not allowed to act as this user")
    row = rows[0]
    return Principal(account_id=row["id"], token_id=principal.token_id, scopes=principal.scopes, limits=row["limits"])


@functools.lru_cache(maxsize=1024)
def scope_target(path: str) -> tuple[str, str]:
    """What a scope names for a route: its resource path (the literal segments but the
    last: `conversation/message` for /conversation/{conversationId}/message/create, the
    /user/... routes read as partner/user/...) and its action (the last segment)."""
    literal = [s for s in path.strip("/").split("/") if not s.startswith("{")]
    if literal[0] == "user":
        literal.insert(0, "partner")
    return "/".join(literal[:-1]), literal[-1]


def scope_catalogue(actions: list[Action]) -> dict[str, frozenset[str]]:
    """Every resource path a scope may name, with its actions."""
    catalogue: dict[str, set[str]] = {}
    for a in actions:
        if not a.public:
            resource, operation = scope_target(a.path)
            catalogue.setdefault(resource, set()).add(operation)
    return {r: frozenset(ops) for r, ops in catalogue.items()}


def check_scopes(scopes: list[dict] | None, catalogue: dict[str, frozenset[str]]) -> None:
    """A scope that names no route would silently grant nothing: refused when a token
    is made, as an empty list of scopes, actions or ids is (the structs refuse those)."""
    for scope in scopes or ():
        resource = scope["resource"]
        if resource == "*":
            known = frozenset().union(*catalogue.values())
        elif resource in catalogue:
            known = catalogue[resource]
        else:
            raise BadRequest(f"scope resource {resource!r} names no route (resources: {', '.join(sorted(catalogue))})")
        unknown = sorted(set(scope.get("actions") or ()) - known)
        if unknown:
            raise BadRequest(f"scope {resource!r} has no action {unknown[0]!r} (actions: {', '.join(sorted(known))})")


def authorize(principal: Principal, action: Action, route: str, params: dict[str, str]) -> None:
    """Session tokens: only their listed routes. API tokens with scopes: only what a
    scope names. A scope is {"resource": "conversation/message", "actions": ["list"],
    "ids": [...]}: the route's resource path exactly (see scope_target; nested routes
    need their own scope, `*` is every resource), one of its actions (all when absent)
    and its first path parameter (any when absent; with ids, routes that name no id
    are not allowed). No scopes: everything; an empty list: nothing."""
    if principal.session_routes is not None:
        if not _allowed_by_session(route, principal.session_routes):
            raise NotAuthorized("this session token does not allow this route")
        if action.changes_credentials:  # a short-lived token never mints lasting ones
            raise NotAuthorized("a session token cannot change tokens or accounts")
        return
    scopes = principal.scopes
    if scopes is None:
        return
    template = action.path
    resource, operation = scope_target(template)
    first = template.find("{")  # the route's first id: its first path parameter, if any
    first_id = params[template[first + 1 : template.index("}", first)]] if first >= 0 else None
    for scope in scopes:
        if scope.get("resource") not in (resource, "*"):
            continue
        actions = scope.get("actions")
        if actions is not None and operation not in actions:
            continue
        ids = scope.get("ids")
        if ids is not None and first_id not in ids:
            continue
        return
    raise NotAuthorized(f"the token's scopes do not allow {resource}:{operation}")


# --- session tokens -----------------------------------------------------------

SESSION_DEFAULT_SECONDS = 3600
SESSION_MAX_SECONDS = 86_400


def session_routes(conversation_id: str, actions: list[Action]) -> list[str]:
    """The allow-list a conversation session carries: every session action, bound to it;
    for the channel routes, its conversation's channels (`/channel/<id>:*/subscribe`:
    a `*` stands for the rest of one path segment)."""
    routes = []
    for a in actions:
        if not a.session or a.path.count("{") != 1:
            continue
        if "{conversationId}" in a.path:
            routes.append(a.path.replace("{conversationId}", conversation_id))
        elif "{channelId}" in a.path:
            routes.append(a.path.replace("{channelId}", conversation_id + ":*"))
    return sorted(routes)


def _allowed_by_session(route: str, allowed: frozenset) -> bool:
    if route in allowed:
        return True
    return any("*" in entry and _route_glob(entry).fullmatch(route) is not None for entry in allowed)


@functools.lru_cache(maxsize=4096)
def _route_glob(entry: str) -> re.Pattern:
    """A route pattern of a session's allow-list: `*` is the rest of one path segment
    (at least a character), `**` any number of whole segments."""
    parts = []
    for i, piece in enumerate(entry.split("**")):
        if i:
            parts.append(".*")
        parts.append("[^/]+".join(re.escape(p) for p in piece.split("*")))
    return re.compile("".join(parts))


def issue_session(
    key: bytes, account_id: str, routes: list[str], seconds: float, claims: dict[str, Any] | None = None
) -> tuple[str, str, int]:
    """(session id, JWT, expiresAt ms). The token carries its routes and lifetime (and,
    acting as a child account, that it does, and the contact it names)."""
    session_id = secrets.token_hex(12)
    now = int(time.time())
    expires = now + int(min(seconds, SESSION_MAX_SECONDS))  # clamped, as `take` is: the SDKs state no maximum
    token = jwt.encode(
        {
            **(claims or {}),
            "iss": SESSION_ISSUER,
            "aud": SESSION_AUDIENCE,
            "sub": account_id,
            "jti": session_id,
            "iat": now,
            "exp": expires,
            "routes": routes,
        },
        key,
        algorithm=SESSION_ALGORITHM,
    )
    return session_id, token, expires * 1000


def verify_session(token: str, key: bytes) -> Principal:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[SESSION_ALGORITHM],
            audience=SESSION_AUDIENCE,
            issuer=SESSION_ISSUER,
            options={"require": ["exp", "sub", "aud", "iss", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise NotAuthenticated("the session token has expired") from None
    except jwt.PyJWTError:
        raise NotAuthenticated("the token is not valid") from None
    routes = claims.get("routes")
    if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
        raise NotAuthenticated("the token is not valid")
    return Principal(
        account_id=claims["sub"],
        token_id=claims["jti"],
        session_routes=frozenset(routes),
        child_token=claims.get("child") is True,
        expires_at=int(claims["exp"]) * 1000,
    )


# --- account limits -------------------------------------------------------------

_MONTHLY = {"conversation": "conversations", "message": "messages"}
_DATABASE = {
    "dataset": "datasets",
    "record": "records",
    "skillset": "skillsets",
    "ability": "abilities",
    "file": "files",
}
_TOTAL = {"bot": "bots"}


def month_start_ms(now: int | None = None) -> int:
    """Monthly limits count from the first of the month, UTC."""
    t = time.gmtime((now or now_ms()) / 1000)
    return calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)) * 1000


def limit_for(limits: dict | None, noun: str) -> tuple[str, Any, bool] | None:
    """(the limit's name, its value, whether it counts this month only) or None."""
    if not limits:
        return None
    if noun in _MONTHLY:
        name = _MONTHLY[noun]
        value, monthly = limits.get(name), True
    elif noun in _DATABASE:
        name = "database." + _DATABASE[noun]
        value, monthly = (limits.get("database") or {}).get(_DATABASE[noun]), False
    elif noun in _TOTAL:
        name = _TOTAL[noun]
        value, monthly = limits.get(name), False
    else:
        return None
    if value is None:
        return None
    return name, value, monthly


def limited(principal: Principal | None, noun: str) -> bool:
    """Whether creating a `noun` is held to a limit (the caller then creates it in a transaction)."""
    return principal is not None and limit_for(principal.limits, noun) is not None


# A monthly quota is taken by one conditional upsert: concurrent takers queue on the
# counter's row and each sees the count the one before it left.
_TAKE_SQL = (
    "INSERT INTO account_quotas AS q (account_id, name, month, used) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (account_id, name, month) DO UPDATE SET used = q.used + EXCLUDED.used "
    "WHERE q.used + EXCLUDED.used <= $5 RETURNING used"
)
# What exists is counted under the account's row lock, held until the insert commits, so
# two creates in one account take turns (accounts without limits never take it).
_LOCK_SQL = "SELECT limits FROM accounts WHERE id = $1 FOR NO KEY UPDATE"


async def lock_account(conn, account_id: str) -> Any:
    """Take the account's row lock for this transaction; its limits as they are now."""
    return await conn.fetchval(_LOCK_SQL, account_id)


async def enforce_limit(conn, principal: Principal | None, noun: str, table: str, adding: int = 1) -> None:
    """429 LIMITS_REACHED when creating `adding` more rows would pass the account's limit.
    Exact under any interleaving: a monthly limit takes its quota here (in the caller's
    transaction, if any: a rollback gives it back); a limit on what exists must be
    checked inside the transaction that inserts (`limited` says when)."""
    found = limit_for(principal.limits, noun) if principal is not None else None
    if principal is None or found is None:
        return
    name, value, monthly = found
    if monthly:
        if adding > value or (
            await conn.fetchval(_TAKE_SQL, principal.account_id, name, month_start_ms(), adding, value) is None
        ):
            raise LimitsReached(f"the account's {name} limit ({value:g}) is reached")
        return
    if not conn.is_in_transaction():
        raise RuntimeError(f"the {name} limit must be checked in the transaction that inserts")
    # the limits as they are now (the principal's may be a cached token's)
    found = limit_for(await lock_account(conn, principal.account_id), noun)
    if found is None:
        return
    value = found[1]
    used = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE account_id = $1", principal.account_id)
    if used + adding > value:
        raise LimitsReached(f"the account's {name} limit ({value:g}) is reached")
