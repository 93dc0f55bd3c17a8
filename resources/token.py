"""API tokens: random secrets shown once, stored as SHA-256 digests, optionally
scoped and expiring. (Routes: partner/user/{userId}/token/*; CLI: botkit token.)"""

from __future__ import annotations

import secrets
from typing import Annotated

import msgspec

from ..actions.base import API_TOKEN_PREFIX, hash_secret, now_ms
from ..actions.ids import new_id

_Word = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Resource = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Scope(msgspec.Struct, omit_defaults=True):
    """What a token may call. `resource` is a route's resource path: its segments
    without the ids and the last one ("bot", "conversation/message", "contact/secret",
    "partner/user/token", which also covers /user/...), or "*" for every resource;
    nested routes need their own scope. `actions` are its last segments ("list",
    "fetch", "create", ...; all when absent), `ids` the route's first id (any when
    absent; with ids, routes that name no id, such as list and create, are not
    allowed). A resource or action that names no route, and an empty list of scopes,
    actions or ids, are refused when the token is made."""

    resource: _Resource
    actions: Annotated[list[_Word], msgspec.Meta(min_length=1, max_length=50)] | None = None
    ids: Annotated[list[_Word], msgspec.Meta(min_length=1, max_length=100)] | None = None


def new_secret() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


async def issue_token(
    conn,
    account_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    meta: dict | None = None,
    config: dict | None = None,
    scopes: list | None = None,
    expires_at: int | None = None,
    created_at: int | None = None,
) -> tuple[str, str]:
    """Create a token; return (token id, secret). Only the digest is stored."""
    secret = new_secret()
    token_id = new_id()
    now = created_at or now_ms()
    if scopes is not None:
        scopes = msgspec.to_builtins(scopes)
    await conn.execute(
        "INSERT INTO tokens (id, account_id, secret_hash, name, description, meta, config, scopes, expires_at, "
        "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, COALESCE($6, '{}'::jsonb), $7, $8, $9, $10, $10)",
        token_id,
        account_id,
        hash_secret(secret),
        name,
        description,
        meta or None,
        config,
        scopes,
        expires_at,
        now,
    )
    return token_id, secret


async def token_is_valid(conn, secret: str) -> bool:
    row = await conn.fetchrow("SELECT revoked_at, expires_at FROM tokens WHERE secret_hash = $1", hash_secret(secret))
    return row is not None and row["revoked_at"] is None and (row["expires_at"] is None or row["expires_at"] > now_ms())
