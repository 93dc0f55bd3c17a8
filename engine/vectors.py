"""Record vectors: every record embedded in the background, by the embedding model the
app is configured with (engine/embeddings.py), stored in pgvector (store/migrations/
pgvector.sql) with an HNSW index per model.

What to embed is the table record_vectors_due, which triggers on `records` fill
whatever writes a record, so no request waits for a model. Every process that runs
jobs runs an `Embedder`: it claims BATCH due records under a lease of LEASE_MS
(`FOR UPDATE SKIP LOCKED`, so processes share the work), embeds them with no
transaction open, then stores their vectors and drops their due rows where its
claim still holds; a record whose text changed meanwhile was reset by the trigger
and is embedded again. A process that dies leaves its claim to run out, and another
takes the records over. Until a record has a vector, search finds it lexically.

A model seen for the first time (vector_models) has every record queued for it, and
gets its HNSW index with its first vectors: `embedding::vector(n)`, partial on the
model's name, so models of different dimensions share one table."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from typing import Any

import asyncpg

from ..errors import ApiError
from .embeddings import embed, vector_literal
from .provider import EmbeddingsInfo

log = logging.getLogger("botkit.engine")

BATCH = 16  # records claimed at once (about 0.4 s of the built-in model's time)
LEASE_MS = 120_000  # a claim's lease: far longer than a batch takes
IDLE_SECONDS = 1.0  # how often an idle embedder looks for due records
FAILED_PAUSE_SECONDS = 10.0  # after the model failed: try again in this long

_CLAIM = """
UPDATE record_vectors_due d SET claim = $1, claimed_until = $2
  FROM (SELECT record_id FROM record_vectors_due WHERE claimed_until < $3
         ORDER BY claimed_until, record_id LIMIT $4 FOR UPDATE SKIP LOCKED) c
 WHERE d.record_id = c.record_id
RETURNING d.record_id
"""
_TEXTS = "SELECT id, account_id, dataset_id, text FROM records WHERE id = ANY($1::text[])"
# $1 the claim, $2 the model, $3 ids, $4 accounts, $5 datasets, $6 vectors (text)
_STORE = """
WITH still AS (
    DELETE FROM record_vectors_due WHERE record_id = ANY($3::text[]) AND claim = $1 RETURNING record_id
)
INSERT INTO record_vectors (record_id, model, account_id, dataset_id, embedding)
SELECT v.id, $2, v.account_id, v.dataset_id, v.embedding::vector
  FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS v (id, account_id, dataset_id, embedding)
  JOIN still ON still.record_id = v.id
 WHERE EXISTS (SELECT 1 FROM records WHERE id = v.id)
ON CONFLICT (record_id, model) DO UPDATE SET embedding = EXCLUDED.embedding
"""
_BACKFILL = """
INSERT INTO record_vectors_due (record_id)
SELECT r.id FROM records r
 WHERE NOT EXISTS (SELECT 1 FROM record_vectors v WHERE v.record_id = r.id AND v.model = $1)
ON CONFLICT (record_id) DO NOTHING
"""


def _now() -> int:
    return time.time_ns() // 1_000_000


def index_name(model: str) -> str:
    return "record_vectors_hnsw_" + hashlib.sha256(model.encode()).hexdigest()[:16]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def index_sql(model: str, dimensions: int) -> str:
    return (
        f"CREATE INDEX IF NOT EXISTS {index_name(model)} ON record_vectors "
        f"USING hnsw ((embedding::vector({int(dimensions)})) vector_cosine_ops) WHERE model = {_literal(model)}"
    )


async def has_vectors(conn) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('record_vectors') IS NOT NULL"))


async def dimensions(conn, model: str) -> int | None:
    """The dimensions of a model's stored vectors (None: none stored yet)."""
    return await conn.fetchval("SELECT dimensions FROM vector_models WHERE model = $1", model)


async def queue_model(conn, model: str) -> bool:
    """A model seen for the first time: every record is due for it. Whether it was new."""
    async with conn.transaction():
        # every record of every account, or an index over them: not bounded as requests are
        await conn.execute("SET LOCAL statement_timeout = 0")
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('botkit.vector_models'))")
        if await conn.fetchval("SELECT 1 FROM vector_models WHERE model = $1", model):
            return False
        await conn.execute("INSERT INTO vector_models (model, created_at) VALUES ($1, $2)", model, _now())
        await conn.execute(_BACKFILL, model)
        return True


async def _ensure_index(conn, model: str, dims: int) -> None:
    async with conn.transaction():
        # every record of every account, or an index over them: not bounded as requests are
        await conn.execute("SET LOCAL statement_timeout = 0")
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('botkit.vector_models'))")
        known = await conn.fetchval("SELECT dimensions FROM vector_models WHERE model = $1", model)
        if known == dims:
            return
        if known is not None:
            raise ValueError(f"the embedding model {model} answered {dims} dimensions where it had {known}")
        await conn.execute(index_sql(model, dims))
        await conn.execute("UPDATE vector_models SET dimensions = $2 WHERE model = $1", model, dims)


class Embedder:
    """Embeds due records in the background while this process runs jobs. Reads the
    app's current embedding model at every batch (`services.models.embeddings`)."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self._task: asyncio.Task | None = None
        self._queued: set[str] = set()  # models this process has queued every record for
        self._indexed: set[tuple[str, int]] = set()

    async def start(self) -> None:
        async with self.services.pool.connection() as conn:
            if not await has_vectors(conn):
                return  # no pgvector: search is lexical (said once, at migration)
        self._task = asyncio.create_task(self._loop(), name="botkit-embedder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            info = self.services.models.embeddings
            try:
                done = await self.batch(info) if info is not None else 0
            except asyncio.CancelledError:
                raise
            except (ApiError, ValueError) as exc:
                log.warning(
                    "embedding records paused for %.0f s: %s", FAILED_PAUSE_SECONDS, getattr(exc, "message", exc)
                )
                await asyncio.sleep(FAILED_PAUSE_SECONDS)
                continue
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("embedding records: %s", exc)
                done = 0
            if not done:
                await asyncio.sleep(IDLE_SECONDS)

    async def batch(self, info: EmbeddingsInfo) -> int:
        """Embed one batch of due records; how many were claimed."""
        pool = self.services.pool
        if info.model not in self._queued:
            async with pool.connection() as conn:
                if await queue_model(conn, info.model):
                    log.info("embedding every record with %s, in the background", info.model)
            self._queued.add(info.model)
        claim = secrets.token_hex(8)
        now = _now()
        async with pool.connection() as conn:
            ids = [r[0] for r in await conn.fetch(_CLAIM, claim, now + LEASE_MS, now, BATCH)]
            rows = await conn.fetch(_TEXTS, ids) if ids else []
        if not ids:
            return 0
        if rows:
            vectors = await embed(info, [r["text"] for r in rows], self.services.models.timeouts)
            dims = len(vectors[0])
            async with pool.connection() as conn:
                if (info.model, dims) not in self._indexed:
                    await _ensure_index(conn, info.model, dims)
                    self._indexed.add((info.model, dims))
                await conn.execute(
                    _STORE,
                    claim,
                    info.model,
                    [r["id"] for r in rows],
                    [r["account_id"] for r in rows],
                    [r["dataset_id"] for r in rows],
                    [vector_literal(v) for v in vectors],
                )
        return len(ids)
