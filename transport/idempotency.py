"""Idempotency-Key on POST requests, by Stripe's rule: the first answer to a key is
stored and replayed to every retry with the same key and the same request for 24 h;
the same key with a different request is 409 CONFLICT, and so is a retry while the
first is still running. Keys are per account. A request that fails (any error)
forgets its key, so that it can be retried; a streamed answer is not kept (a retry of
it is a 409 saying so: its effects happened once). A first request that died with its
process holds its key for RUNNING_MS, then the key is free again."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ..errors import BadRequest, Conflict

KEY_MAX = 255
KEEP_MS = 24 * 3600 * 1000
RUNNING_MS = 10 * 60 * 1000

# Claimed when new, expired, or abandoned while running; else the stored row is read.
_CLAIM = """
INSERT INTO idempotency_keys AS k (account_id, key, request_hash, created_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (account_id, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, created_at = EXCLUDED.created_at, status = NULL, response = NULL
    WHERE k.created_at < $4 - $5::bigint OR (k.status IS NULL AND k.created_at < $4 - $6::bigint)
RETURNING true"""
_STORED = "SELECT request_hash, status, response FROM idempotency_keys WHERE account_id = $1 AND key = $2"
_DONE = "UPDATE idempotency_keys SET status = $3, response = $4 WHERE account_id = $1 AND key = $2"
_FORGET = "DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND status IS NULL"
_PRUNE = "DELETE FROM idempotency_keys WHERE created_at < $1"


@dataclass(frozen=True)
class Replay:
    """The stored first answer to a key."""

    status: int
    body: bytes


def key_of(raw: bytes) -> str:
    try:
        key = raw.decode("ascii")
    except UnicodeDecodeError:
        key = ""
    if not 0 < len(key) <= KEY_MAX or not key.isprintable():
        raise BadRequest(f"Idempotency-Key: 1 to {KEY_MAX} printable ASCII characters")
    return key


def request_hash(route: str, query: bytes, body: bytes) -> bytes:
    return hashlib.sha256(b"\n".join((route.encode(), query, body))).digest()


class Keys:
    def __init__(self) -> None:
        self._pruned = 0.0

    async def claim(self, pool, account_id: str, key: str, digest: bytes) -> Replay | None:
        """None: this request runs (and must `done` or `forget`); else the first answer."""
        now = int(time.time() * 1000)
        if time.monotonic() - self._pruned > 3600:
            self._pruned = time.monotonic()
            await pool.execute(_PRUNE, now - KEEP_MS)
        for _ in range(2):  # the first request may forget its key between the two statements
            if await pool.fetchval(_CLAIM, account_id, key, digest, now, KEEP_MS, RUNNING_MS):
                return None
            row = await pool.fetchrow(_STORED, account_id, key)
            if row is None:
                continue
            if row["request_hash"] != digest:
                raise Conflict("Idempotency-Key: this key was used with a different request")
            if row["status"] is None:
                raise Conflict("Idempotency-Key: the first request with this key is still running")
            if row["response"] is None:
                raise Conflict("Idempotency-Key: the first request with this key was answered with a stream")
            return Replay(row["status"], bytes(row["response"]))
        raise Conflict("Idempotency-Key: the first request with this key is still running")

    async def done(self, pool, account_id: str, key: str, status: int, body: bytes | None) -> None:
        await pool.execute(_DONE, account_id, key, status, body)

    async def forget(self, pool, account_id: str, key: str) -> None:
        await pool.execute(_FORGET, account_id, key)
