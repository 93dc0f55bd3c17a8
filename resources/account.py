"""Accounts own everything. (Partner sub-account routes build on this.)"""

from __future__ import annotations

from ..actions.base import now_ms
from ..actions.ids import new_id


async def create_account(conn, *, name: str | None = None, role: str = "user", parent_id: str | None = None) -> str:
    account_id = new_id()
    now = now_ms()
    await conn.execute(
        "INSERT INTO accounts (id, parent_id, name, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        account_id,
        parent_id,
        name,
        role,
        now,
    )
    return account_id
