"""A first-come-first-served pool of asyncpg connections with no reset query.

Why not asyncpg's own pool (see PERFORMANCE.md): it runs a reset query on every
release (one more round trip per request) and is not fair under contention, so a
new request can overtake one already waiting and p99 climbs. Here a released
connection goes straight to the oldest waiter. No request leaves session state
behind (transactions are always closed by their context manager), so no reset is
needed; a connection whose holder failed outside PostgreSQL (cancelled, protocol
error, still in a transaction) is closed and replaced instead of reused."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import msgspec

from ..errors import BadRequest, Conflict, InternalError, NotFound

log = logging.getLogger("botkit.store")


async def init_connection(conn: asyncpg.Connection) -> None:
    # jsonb/json as Python values, through msgspec both ways: it encodes structs, and
    # it decodes integers of any size (jsonb keeps them; orjson would refuse them).
    for name in ("jsonb", "json"):
        await conn.set_type_codec(
            name,
            schema="pg_catalog",
            format="text",
            encoder=lambda v: msgspec.json.encode(v).decode(),
            decoder=msgspec.json.decode,
        )


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(InternalError("the database did not answer in time"))


def translate(exc: asyncpg.PostgresError) -> Exception:
    """Database errors that bad input can cause, as the API errors they are."""
    if exc.sqlstate == "BK400":  # raised by our own SQL functions (botkit_meta_limit)
        return BadRequest(exc.args[0] if exc.args else "invalid value")
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict("a resource with these values exists already")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return NotFound("a resource it refers to does not exist")
    if isinstance(exc, (asyncpg.DataError, asyncpg.NotNullViolationError)):
        # e.g. a NUL character in text, a number out of range
        return BadRequest(f"a value cannot be stored: {exc.args[0] if exc.args else type(exc).__name__}")
    return exc


class Pool:
    def __init__(
        self,
        dsn: str,
        size: int = 10,
        *,
        acquire_timeout: float = 10.0,
        init: Callable[[asyncpg.Connection], Awaitable[None]] = init_connection,
    ) -> None:
        self.dsn = dsn
        self.size = size
        self.acquire_timeout = acquire_timeout
        self._init = init
        self._idle: list[asyncpg.Connection] = []
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._all: set[asyncpg.Connection] = set()
        self._closing = False
        self._refills: set[asyncio.Task] = set()

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.dsn, timeout=self.acquire_timeout)
        await self._init(conn)
        self._all.add(conn)
        return conn

    async def open(self) -> Pool:
        conns = await asyncio.gather(*(self._connect() for _ in range(self.size)))
        self._idle.extend(conns)
        return self

    async def close(self) -> None:
        self._closing = True
        for task in list(self._refills):
            task.cancel()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(InternalError("the database pool is closing"))
        await asyncio.gather(*(c.close(timeout=5) for c in list(self._all)), return_exceptions=True)
        self._all.clear()
        self._idle.clear()

    async def acquire(self) -> asyncpg.Connection:
        if self._idle:
            return self._idle.pop()
        if self._closing:
            raise InternalError("the database pool is closed")
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)  # release() pops it; done (cancelled, expired) ones it skips
        timer = loop.call_later(self.acquire_timeout, _expire, waiter)
        try:
            return await waiter
        except BaseException:
            # Cancelled just after a connection was handed over: pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())
            raise
        finally:
            timer.cancel()

    def release(self, conn: asyncpg.Connection, *, healthy: bool = True) -> None:
        if not healthy or conn.is_closed() or conn.is_in_transaction():
            self._replace(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _replace(self, conn: asyncpg.Connection) -> None:
        self._all.discard(conn)
        conn.terminate()
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._refill())
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _refill(self) -> None:
        delay = 0.05
        while not self._closing:
            try:
                conn = await self._connect()
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("reconnecting to the database failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.release(conn)
            return

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await self.acquire()
        healthy = True
        try:
            yield conn
        except asyncpg.PostgresError as exc:
            raise translate(exc) from None  # a server-side error leaves the connection usable
        except BaseException:
            healthy = False  # cancelled mid-query or protocol trouble: don't reuse
            raise
        finally:
            self.release(conn, healthy=healthy)

    async def ping(self) -> None:
        """One round trip: the database answers (for health checks)."""
        await self.fetchval("SELECT 1")

    # Shorthands for one statement on a pooled connection.
    async def fetchrow(self, sql: str, *args):
        async with self.connection() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetch(self, sql: str, *args):
        async with self.connection() as conn:
            return await conn.fetch(sql, *args)

    async def fetchval(self, sql: str, *args):
        async with self.connection() as conn:
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args):
        async with self.connection() as conn:
            return await conn.execute(sql, *args)
