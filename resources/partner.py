"""Partner sub-accounts: a parent account creates child accounts, gives them limits
and API tokens, and acts inside them with X-RunAs-User-Id (or by the child's email,
X-RunAs-Child-User-Email). The routes are served under `/partner/user` (the reference)
and `/user` (the hosted platform's newer names, which the Python SDK calls): the one
exception to "a module per first path segment"."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec

from ..actions.auth import SESSION_DEFAULT_SECONDS, SESSION_MAX_SECONDS, check_scopes, issue_session, lock_account
from ..actions.base import Action, Call, Context, now_ms
from ..actions.fields import (
    JSON_MAX_BYTES,
    Alias,
    Amount,
    Body,
    Description,
    Item,
    MetaDict,
    Name,
    Timestamp,
    check_json_size,
)
from ..actions.standard import (
    CreateAction,
    DeleteAction,
    FetchAction,
    ListAction,
    Parent,
    Table,
    UpdateAction,
    record,
    require_owned,
    require_parent,
)
from ..errors import Conflict, NotAuthorized
from .token import Scope, issue_token

log = logging.getLogger("botkit")
Count = Amount


class DatabaseLimits(msgspec.Struct, rename="camel", omit_defaults=True):
    datasets: Count | None = None
    records: Count | None = None
    skillsets: Count | None = None
    abilities: Count | None = None
    files: Count | None = None


class Limits(msgspec.Struct, rename="camel", omit_defaults=True):
    """Creating past a limit answers 429 LIMITS_REACHED naming it, exactly under any
    concurrency. conversations and messages count what was created in the calendar
    month (UTC); database.* and bots count what exists. An account with limits cannot
    create sub-accounts, and one with sub-accounts cannot be given limits;
    tokens (model tokens a month) apply once usage is recorded."""

    tokens: Count | None = None
    conversations: Count | None = None
    messages: Count | None = None
    bots: Count | None = None
    database: DatabaseLimits | None = None


class PartnerUser(Item):
    meta: dict
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    email: str | None = None
    image: str | None = None
    limits: dict | None = None


class PartnerUserCreate(Body):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    image: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    limits: Limits | None = None


# The child's rows reference accounts(id) ON DELETE CASCADE: deleting a child deletes
# everything it owns, its tokens and its own children, in one statement.
TABLE = Table(
    name="accounts", noun="user", item=PartnerUser, create=PartnerUserCreate, tag="Partner", owner="parent_id"
)

USER = Parent(table="accounts", param="userId", column="account_id", noun="user", owner="parent_id")


# --- a child's API tokens -------------------------------------------------------


class PartnerToken(Item):
    meta: dict
    name: str | None = None
    description: str | None = None
    config: dict | None = None
    scopes: list[dict] | None = None
    expires_at: int | None = None


class PartnerTokenCreate(Body):
    name: Name | None = None
    description: Description | None = None
    config: Annotated[dict[str, Any], msgspec.Meta(max_length=50)] | None = None
    meta: MetaDict | None = None
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=100)] | None = None
    expires_at: Timestamp | None = None


class PartnerTokenCreated(msgspec.Struct, rename="camel"):
    id: str
    token: str
    created_at: int


# A child's tokens are the child's rows (account_id = the child), managed by its
# parent: owned through the parent. The meta filter is off: tokens.meta has no index.
TOKENS = Table(
    name="tokens",
    noun="token",
    item=PartnerToken,
    create=PartnerTokenCreate,
    tag="Partner",
    parent=USER,
    through_parent=True,
    updatable=("name", "description", "config", "meta"),
    meta_filter=False,
)


class CreatePartnerToken(Action):
    """The secret is made here and shown only in this answer (token.py stores its digest)."""

    tag = "Partner"
    summary = "Create an API token for a child account (the secret is shown only here)"
    body = PartnerTokenCreate
    response = PartnerTokenCreated
    changes_credentials = True

    async def run(self, ctx: Context, call: Call) -> PartnerTokenCreated:
        body = call.body
        check_scopes(msgspec.to_builtins(body.scopes), ctx.services.scope_catalogue)
        async with ctx.pool.connection() as conn, conn.transaction():
            await require_parent(conn, USER, ctx, call)
            created = now_ms()
            token_id, secret = await issue_token(
                conn,
                call.params["userId"],
                name=body.name,
                description=body.description,
                meta=body.meta or {},
                config=body.config,
                scopes=body.scopes,
                expires_at=body.expires_at,
                created_at=created,
            )
            await record(conn, ctx, TOKENS, "create", token_id, {"account_id": call.params["userId"]})
        return PartnerTokenCreated(id=token_id, token=secret, created_at=created)


_SUBTREE = """
WITH RECURSIVE tree AS (
    SELECT id FROM accounts WHERE id = $1 AND parent_id = $2
    UNION ALL SELECT a.id FROM accounts a JOIN tree t ON a.parent_id = t.id
) SELECT id FROM tree LIMIT 10000
"""


class DeletePartnerUser(DeleteAction):
    """Deleting a child deletes everything it owns, its own children's too (the rows
    cascade), and then their files' content."""

    async def run(self, ctx: Context, call: Call) -> Any:
        accounts = [r["id"] for r in await ctx.pool.fetch(_SUBTREE, call.params["userId"], ctx.account_id)]
        answer = await super().run(ctx, call)
        for account in accounts:
            try:
                await ctx.services.storage.delete_prefix(f"{account}/")
            except Exception as exc:  # the rows are gone; the bytes are logged for an operator
                log.warning("account %s: deleting its files' content failed: %s", account, exc)
        return answer


# A child's limits bind what it creates, and so its subtree: an account with limits
# cannot create sub-accounts of its own, and limits cannot be given to an account that
# has some. Both sides take the account's row lock first, so neither can slip past the
# other.


class CreatePartnerUser(CreateAction):
    async def insert(self, conn, ctx: Context, call: Call, values: dict[str, Any]) -> None:
        async with conn.transaction():
            if await lock_account(conn, ctx.account_id):
                raise NotAuthorized("an account with limits cannot create sub-accounts")
            await super().insert(conn, ctx, call, values)


class UpdatePartnerUser(UpdateAction):
    async def update(self, conn, ctx: Context, sets: dict[str, Any], sql: str, args: list) -> str | None:
        if not sets.get("limits"):
            return await super().update(conn, ctx, sets, sql, args)
        async with conn.transaction():
            child = args[0]
            if await conn.fetchval(_OWN_CHILD_SQL, child, ctx.account_id) is None:
                return None
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM accounts WHERE parent_id = $1)", child):
                raise Conflict("an account with sub-accounts of its own cannot be given limits")
            return await super().update(conn, ctx, sets, sql, args)


_OWN_CHILD_SQL = "SELECT id FROM accounts WHERE id = $1 AND parent_id = $2 FOR NO KEY UPDATE"


# --- a child's contexts --------------------------------------------------------


def _check_payload(payload: dict[str, Any]) -> None:
    check_json_size(payload, "payload")


class PartnerContext(Item):
    meta: dict
    name: str | None = None
    description: str | None = None
    blueprint_id: str | None = None
    bot_id: str | None = None
    dataset_id: str | None = None
    skillset_id: str | None = None
    payload: dict | None = None


class PartnerContextCreate(Body):
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    payload: (
        Annotated[dict[str, Any], msgspec.Meta(description=f"Any JSON object, at most {JSON_MAX_BYTES // 1024} KiB")]
        | None
    ) = None

    checks = {"payload": _check_payload}


# The partner's rows about one of its children (account_id = the partner, user_id =
# the child): deleting the child deletes them.
CONTEXT_USER = Parent(table="accounts", param="userId", column="user_id", noun="user", owner="parent_id")
CONTEXTS = Table(
    name="partner_contexts",
    noun="context",
    item=PartnerContext,
    create=PartnerContextCreate,
    tag="Partner",
    parent=CONTEXT_USER,
    filters=("blueprint_id", "bot_id", "dataset_id", "skillset_id"),
    meta_filter=False,
)


class CreatePartnerContext(CreateAction):
    """Answers with the context itself, as the reference does (not only its id)."""

    response = PartnerContext

    async def run(self, ctx: Context, call: Call) -> Any:
        values = self.values(ctx, call)
        async with ctx.pool.connection() as conn:
            await self.insert(conn, ctx, call, values)
        return CONTEXTS.row_to_item([values.get(c) for c in CONTEXTS.columns])


# --- a session acting as a child -------------------------------------------------

RoutePattern = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=256,
        pattern=r"^(?:/api)?(?:/v1)?/?[A-Za-z0-9{}*_./:-]*(?![\s\S])",
        description="A route, `/bot/*/fetch` style: `*` stands for one path segment's characters, `**` for any "
        "number of segments; a leading /api/v1 or /v1 is left out",
    ),
]


class SessionConfig(msgspec.Struct, rename="camel", kw_only=True):
    allowed_routes: Annotated[list[RoutePattern], msgspec.Meta(max_length=100)] | None = None
    contact_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class PartnerSessionCreate(Body):
    duration_in_seconds: (
        Annotated[
            float,
            msgspec.Meta(gt=0, description=f"Default {SESSION_DEFAULT_SECONDS}; at most {SESSION_MAX_SECONDS}"),
        ]
        | None
    ) = None
    config: SessionConfig | None = None


class PartnerSession(msgspec.Struct, rename="camel"):
    id: str
    token: str
    expires_at: int


def _route_of(pattern: str) -> str:
    for prefix in ("/api/v1", "/v1"):
        if pattern.startswith(prefix + "/"):
            pattern = pattern[len(prefix) :]
    return pattern if pattern.startswith("/") else "/" + pattern


class CreatePartnerSession(Action):
    """A short-lived token acting as the child: only the routes it allows (every route
    when none are given), held to the child's limits, and it cannot act as anyone else."""

    tag = "Partner"
    summary = "Create a session token that acts as a child account (short-lived, limited to its routes)"
    body = PartnerSessionCreate
    response = PartnerSession
    changes_credentials = True

    async def run(self, ctx: Context, call: Call) -> PartnerSession:
        body: PartnerSessionCreate = call.body
        child = call.params["userId"]
        config = body.config or SessionConfig()
        async with ctx.pool.connection() as conn:
            await require_parent(conn, USER, ctx, call)
            if config.contact_id is not None:
                await require_owned(conn, "contacts", config.contact_id, child, "contactId: contact not found")
        key = ctx.services.session_key
        assert key is not None  # the app makes one at start
        routes = sorted({_route_of(p) for p in config.allowed_routes}) if config.allowed_routes else ["/**"]
        claims: dict[str, Any] = {"child": True}  # its limits are read as the token is used
        if config.contact_id is not None:
            claims["contactId"] = config.contact_id
        session_id, token, expires_at = issue_session(
            key, child, routes, body.duration_in_seconds or SESSION_DEFAULT_SECONDS, claims
        )
        return PartnerSession(id=session_id, token=token, expires_at=expires_at)


def user_routes(prefix: str) -> list[Action]:
    """The child-account routes under one prefix: the reference's `/partner/user` and
    the hosted platform's newer `/user` (the Python SDK's user client) serve alike."""
    return [
        ListAction(TABLE, f"{prefix}/list"),
        FetchAction(TABLE, f"{prefix}/{{userId}}/fetch"),
        CreatePartnerUser(TABLE, f"{prefix}/create", changes_credentials=True),
        UpdatePartnerUser(TABLE, f"{prefix}/{{userId}}/update", changes_credentials=True),
        DeletePartnerUser(TABLE, f"{prefix}/{{userId}}/delete", changes_credentials=True),
        ListAction(
            TOKENS, f"{prefix}/{{userId}}/token/list", summary="List a child account's API tokens (never their secrets)"
        ),
        CreatePartnerToken(f"{prefix}/{{userId}}/token/create"),
        UpdateAction(
            TOKENS,
            f"{prefix}/{{userId}}/token/{{tokenId}}/update",
            summary="Update a child account's API token",
            changes_credentials=True,
        ),
        DeleteAction(
            TOKENS,
            f"{prefix}/{{userId}}/token/{{tokenId}}/delete",
            summary="Delete (revoke) a child account's API token",
            changes_credentials=True,
        ),
        ListAction(CONTEXTS, f"{prefix}/{{userId}}/context/list", summary="List the contexts kept for a child account"),
        FetchAction(CONTEXTS, f"{prefix}/{{userId}}/context/{{contextId}}/fetch"),
        CreatePartnerContext(CONTEXTS, f"{prefix}/{{userId}}/context/create"),
        UpdateAction(CONTEXTS, f"{prefix}/{{userId}}/context/{{contextId}}/update"),
        DeleteAction(CONTEXTS, f"{prefix}/{{userId}}/context/{{contextId}}/delete"),
        CreatePartnerSession(f"{prefix}/{{userId}}/session/create"),
    ]


ACTIONS: list[Action] = user_routes("/partner/user") + user_routes("/user")
