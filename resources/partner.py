"""Partner sub-accounts: a parent account creates child accounts, gives them limits
and API tokens, and acts inside them with X-RunAs-UserId."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ..actions.base import Action, Call, Context, register
from ..errors import NotFound
from ..actions.fields import Amount, Alias, Description, IdResponse, MetaDict, Name, Timestamp, check_meta
from ..actions.standard import LIST_PARAMS, ListAction, Parent, Table, crud, now_ms
from .common import Body, Item
from .token import Scope, issue_token

Count = Amount


class DatabaseLimits(msgspec.Struct, rename="camel", omit_defaults=True):
    datasets: Count | None = None
    records: Count | None = None
    skillsets: Count | None = None
    abilities: Count | None = None
    files: Count | None = None


class Limits(msgspec.Struct, rename="camel", omit_defaults=True):
    """Creating past a limit answers 429 LIMITS_REACHED naming it. conversations and
    messages count per calendar month (UTC); database.* and bots count what exists;
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
TABLE = Table(name="accounts", noun="user", item=PartnerUser, create=PartnerUserCreate, path="/partner/user",
              tag="Partner", owner="parent_id")

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
    scopes: Annotated[list[Scope], msgspec.Meta(max_length=100)] | None = None
    expires_at: Timestamp | None = None


class PartnerTokenUpdate(Body):
    name: Name | None | msgspec.UnsetType = msgspec.UNSET
    description: Description | None | msgspec.UnsetType = msgspec.UNSET
    config: Annotated[dict[str, Any], msgspec.Meta(max_length=50)] | None | msgspec.UnsetType = msgspec.UNSET
    meta: MetaDict | None | msgspec.UnsetType = msgspec.UNSET


class PartnerTokenCreated(msgspec.Struct, rename="camel"):
    id: str
    token: str
    created_at: int


TOKENS = Table(name="tokens", noun="token", item=PartnerToken, create=PartnerTokenCreate,
               path="/partner/user/{userId}/token", tag="Partner", parent=USER)

_CHILD = "SELECT 1 FROM accounts WHERE id = $1 AND parent_id = $2"
_OF_CHILD = "FROM accounts a WHERE t.id = $1 AND t.account_id = $2 AND a.id = t.account_id AND a.parent_id = $3"


async def _require_child(conn, ctx: Context, call: Call) -> str:
    child = call.params["userId"]
    if await conn.fetchval(_CHILD, child, ctx.account_id) is None:
        raise NotFound("user not found")
    return child


class CreatePartnerToken(Action):
    path = "/partner/user/{userId}/token/create"
    tag = "Partner"
    summary = "Create an API token for a child account (the secret is shown only here)"
    body = PartnerTokenCreate
    response = PartnerTokenCreated

    async def run(self, ctx: Context, call: Call) -> PartnerTokenCreated:
        body = call.body
        if body.meta:
            check_meta(body.meta)
        async with ctx.pool.connection() as conn:
            child = await _require_child(conn, ctx, call)
            created = now_ms()
            token_id, secret = await issue_token(
                conn, child, name=body.name, description=body.description, meta=body.meta or {},
                config=body.config, scopes=body.scopes, expires_at=body.expires_at, created_at=created)
        return PartnerTokenCreated(id=token_id, token=secret, created_at=created)


class ListPartnerTokens(ListAction):
    def __init__(self) -> None:
        super().__init__(TOKENS, summary="List a child account's API tokens (never their secrets)")
        self.query_params = LIST_PARAMS[:3]

    def query(self, ctx: Context, call: Call, q, cursor: str | None, limit: int) -> tuple[str, list]:
        where = "account_id = $1"
        args: list[Any] = [call.params["userId"], limit]
        if cursor:
            where += f" AND id {'<' if q.desc else '>'} $3"
            args.append(cursor)
        return (f"SELECT {TOKENS.select} FROM tokens WHERE {where} "
                f"ORDER BY id {'DESC' if q.desc else 'ASC'} LIMIT $2"), args


class UpdatePartnerToken(Action):
    path = "/partner/user/{userId}/token/{tokenId}/update"
    tag = "Partner"
    summary = "Update a child account's API token"
    body = PartnerTokenUpdate
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        body = call.body
        sets = {f: getattr(body, f) for f in ("name", "description", "config", "meta")
                if getattr(body, f) is not msgspec.UNSET}
        if sets.get("meta") is None and "meta" in sets:
            sets["meta"] = {}
        if sets.get("meta"):
            check_meta(sets["meta"])
        assign = ", ".join(f"{c} = ${i}" for i, c in enumerate(sets, start=4))
        sql = (f"UPDATE tokens t SET {assign + ', ' if assign else ''}updated_at = ${4 + len(sets)} "
               f"{_OF_CHILD} RETURNING t.id")
        updated = await ctx.pool.fetchval(sql, call.params["tokenId"], call.params["userId"], ctx.account_id,
                                          *sets.values(), now_ms())
        if updated is None:
            raise NotFound("token not found")
        return IdResponse(id=updated)


class DeletePartnerToken(Action):
    path = "/partner/user/{userId}/token/{tokenId}/delete"
    tag = "Partner"
    summary = "Delete (revoke) a child account's API token"
    body = Body
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        deleted = await ctx.pool.fetchval(f"DELETE FROM tokens t USING accounts a WHERE t.id = $1 "
                                          f"AND t.account_id = $2 AND a.id = t.account_id AND a.parent_id = $3 "
                                          f"RETURNING t.id",
                                          call.params["tokenId"], call.params["userId"], ctx.account_id)
        if deleted is None:
            raise NotFound("token not found")
        return IdResponse(id=deleted)


register(*crud(TABLE), CreatePartnerToken(), ListPartnerTokens(), UpdatePartnerToken(), DeletePartnerToken())
