"""Secrets: credentials abilities use. The `value` is write-only: stored, never
selected into a response, never logged."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..actions.base import Action, Call, Context, now_ms
from ..actions.fields import Alias, Body, Description, IdResponse, Item, MetaDict, Name, Ref, Visibility
from ..actions.standard import Table, crud, record
from ..engine.abilities import formatted, secret_key
from ..errors import NotFound

SecretKind = Literal["shared", "personal"]
SecretType = Literal["plain", "basic", "bearer", "jwt", "oauth", "template", "reference"]


class Secret(Item):
    meta: dict
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    blueprint_id: str | None = None
    kind: str | None = None
    type: str | None = None
    config: dict | None = None
    visibility: str | None = None
    contact_id: str | None = None


class SecretCreate(Body):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    blueprint_id: Ref | None = None
    kind: SecretKind | None = None
    type: SecretType | None = None
    value: Annotated[str, msgspec.Meta(max_length=16_384)] | None = None
    config: Annotated[dict[str, Any], msgspec.Meta(max_length=50)] | None = None
    visibility: Visibility | None = None
    contact_id: Ref | None = None  # a personal secret of this contact (botkit extension)

    def __repr__(self) -> str:  # keeps the value out of any log or traceback
        return f"SecretCreate(name={self.name!r}, value=<hidden>)"


TABLE = Table(
    name="secrets",
    noun="secret",
    item=Secret,
    create=SecretCreate,
    tag="Secret",
    refs={"contact_id": ("contacts", "contact"), "blueprint_id": ("blueprints", "blueprint")},
    defaults={"type": lambda: "plain"},  # both SDKs read a secret's type as always there
)


class SecretVerification(msgspec.Struct):
    id: str
    status: Literal["unauthenticated", "authenticated"]


class VerifySecret(Action):
    tag = "Secret"
    summary = "Tell whether a secret holds a value"
    body = Body
    response = SecretVerification

    def __init__(self, path: str, contact: bool = False) -> None:
        super().__init__(path)
        self.contact = contact  # the contact-scoped route: the secret must be that contact's
        self.sql = "SELECT value IS NOT NULL FROM secrets WHERE id = $1 AND account_id = $2" + (
            " AND contact_id = $3" if contact else ""
        )

    async def run(self, ctx: Context, call: Call) -> SecretVerification:
        args = [call.params["secretId"], ctx.account_id] + ([call.params["contactId"]] if self.contact else [])
        has_value = await ctx.pool.fetchval(self.sql, *args)
        if has_value is None:
            raise NotFound("secret not found")
        return SecretVerification(
            id=call.params["secretId"], status="authenticated" if has_value else "unauthenticated"
        )


class RevokeSecret(Action):
    tag = "Secret"
    summary = "Forget a secret's value (the secret stays, unauthenticated)"
    body = Body
    response = IdResponse

    def __init__(self, path: str, contact: bool = False) -> None:
        super().__init__(path)
        self.contact = contact
        self.sql = (
            "UPDATE secrets SET value = NULL, updated_at = $3 WHERE id = $1 AND account_id = $2"
            + (" AND contact_id = $4" if contact else "")
            + " RETURNING id"
        )

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        args = [call.params["secretId"], ctx.account_id, now_ms()] + (
            [call.params["contactId"]] if self.contact else []
        )
        async with ctx.pool.connection() as conn, conn.transaction():
            revoked = await conn.fetchval(self.sql, *args)
            if revoked is None:
                raise NotFound("secret not found")
            await record(conn, ctx, TABLE, "revoke", revoked, {})
        return IdResponse(id=revoked)


async def values_for(
    conn, account_id: str, keys: set[str], *, default_id: str | None, contact_id: str | None
) -> dict[str, str]:
    """The values an ability's request carries, by `${SECRET_<key>}` key ("DEFAULT":
    the ability's own secret), formatted by type: the account's shared secrets and
    the contact's personal ones (these first). The one query that reads `value`; what
    it returns goes into an outgoing request, never into a response."""
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT id, name, type, value FROM secrets WHERE account_id = $1 AND value IS NOT NULL "
        "AND (contact_id IS NULL OR contact_id = $2) ORDER BY contact_id NULLS LAST, id LIMIT 1000",
        account_id,
        contact_id,
    )
    found: dict[str, str] = {}
    for r in rows:
        key = "DEFAULT" if r["id"] == default_id else secret_key(r["name"] or "")
        if key in keys and key not in found:
            found[key] = formatted(r["type"], r["value"])
        if r["id"] == default_id and (named := secret_key(r["name"] or "")) in keys and named not in found:
            found[named] = formatted(r["type"], r["value"])
    return found


ACTIONS: list[Action] = [
    *crud(
        TABLE,
        list="/secret/list",
        fetch="/secret/{secretId}/fetch",
        create="/secret/create",
        update="/secret/{secretId}/update",
        delete="/secret/{secretId}/delete",
    ),
    VerifySecret("/secret/{secretId}/verify"),
    RevokeSecret("/secret/{secretId}/revoke"),
]
