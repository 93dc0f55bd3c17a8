"""API tokens: random secrets shown once, stored as SHA-256 digests."""

from __future__ import annotations

import secrets

from ..actions.base import API_TOKEN_PREFIX, hash_secret, now_ms
from ..actions.ids import new_id


def new_secret() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


async def issue_token(conn, account_id: str, *, name: str | None = None,
                      expires_at: int | None = None, scopes=None) -> tuple[str, str]:
    """Create a token; return (token id, secret). The secret is not stored."""
    secret = new_secret()
    token_id = new_id()
    now = now_ms()
    await conn.execute(
        "INSERT INTO tokens (id, account_id, secret_hash, name, scopes, expires_at, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        token_id, account_id, hash_secret(secret), name, scopes, expires_at, now)
    return token_id, secret


async def token_is_valid(conn, secret: str) -> bool:
    row = await conn.fetchrow("SELECT revoked_at, expires_at FROM tokens WHERE secret_hash = $1",
                              hash_secret(secret))
    return row is not None and row["revoked_at"] is None and (
        row["expires_at"] is None or row["expires_at"] > now_ms())
