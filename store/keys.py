"""Server keys kept in the database, so that every API process shares them."""

from __future__ import annotations

import secrets

from .pool import Pool


async def session_key(pool: Pool, configured: str | None) -> bytes:
    """The key that signs session tokens: BOTKIT_SESSION_SECRET, or one generated on
    first start and kept in the database."""
    if configured:
        return configured.encode()
    await pool.execute(
        "INSERT INTO server_keys (name, value) VALUES ('session', $1) ON CONFLICT DO NOTHING", secrets.token_bytes(32)
    )
    return await pool.fetchval("SELECT value FROM server_keys WHERE name = 'session'")
