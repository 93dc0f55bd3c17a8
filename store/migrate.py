"""Versioned SQL migrations (store/migrations/NNNN_name.sql), applied in order at
start, then the optional pgvector step (migrations/pgvector.sql) that every start
retries while it is missing. An advisory lock makes concurrent starters (several API
processes) safe."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import asyncpg

from .connect import connect, explain

log = logging.getLogger("botkit.store")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x626F746B6974  # "botkit"


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.sql"))


async def migrate(dsn: str) -> list[str]:
    """Apply what is missing; return the names applied now."""
    conn = await connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            t0 = time.monotonic()
            applied = await _apply(conn)
            if applied:
                log.info("database: applied %s in %.1f s", ", ".join(applied), time.monotonic() - t0)
            log.info("pgvector: %s", await pgvector(conn))
            return applied
        except asyncpg.PostgresError as exc:
            raise explain(exc, dsn) from None
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection) -> list[str]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
    applied_now: list[str] = []
    for path in migration_files():
        if path.name in done:
            continue
        async with conn.transaction():
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
        applied_now.append(path.name)
    return applied_now


async def pgvector(conn: asyncpg.Connection) -> str:
    """Embeddings on when pgvector can be had; says which way it is, in words."""
    if await conn.fetchval("SELECT to_regclass('record_vectors') IS NOT NULL"):
        return "on (dataset search can use embeddings)"
    if not await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"):
        return "not installed on this PostgreSQL: dataset search is full-text + trigram (install it and restart)"
    try:
        async with conn.transaction():
            await conn.execute((MIGRATIONS / "pgvector.sql").read_text())
    except asyncpg.InsufficientPrivilegeError:
        return "installed, but this user may not create the extension: dataset search is full-text + trigram"
    return "on, created now (dataset search can use embeddings)"
