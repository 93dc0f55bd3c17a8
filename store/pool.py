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
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import msgspec

from ..errors import BadRequest, Conflict, InternalError, NotFound, ServiceUnavailable

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
        waiter.set_exception(ServiceUnavailable("the database is busy: no connection was free in time"))


# The connection or the server went away (a restart, a crash, a network cut): the
# request can be retried once the database is back.
DISCONNECTED = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


class Disconnected(ServiceUnavailable):
    """The database connection was lost (the transport may retry a read once)."""

    def __init__(self, message: str = "the database is unavailable") -> None:
        super().__init__(message, retry_after=2)


def translate(exc: asyncpg.PostgresError) -> Exception:
    """Database errors that bad input or a busy database can cause, as the API errors they are."""
    if isinstance(exc, asyncpg.QueryCanceledError):  # statement_timeout (or a cancel)
        return ServiceUnavailable("the database took too long to answer (the statement timeout)")
    if isinstance(exc, DISCONNECTED):
        return Disconnected()
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


STALE_SECONDS = 10.0  # an idle connection older than this is pinged before it is handed out


class Pool:
    """`size` connections; a request waits at most `acquire_timeout` s for one (then 503).
    Every statement is bounded by `statement_timeout` s (0: unbounded). Heavy work names
    its account (`connection(share=account)`): one account holds at most `share` of the
    connections for it at once, so the rest of the pool stays free for the others."""

    def __init__(
        self,
        dsn: str,
        size: int = 10,
        *,
        acquire_timeout: float = 10.0,
        statement_timeout: float = 0,
        share: int | None = None,
        init: Callable[[asyncpg.Connection], Awaitable[None]] = init_connection,
    ) -> None:
        self.dsn = dsn
        self.size = size
        self.acquire_timeout = acquire_timeout
        self.statement_timeout = statement_timeout
        self.share = share if share is not None else max(1, size // 2)
        self._init = init
        self._idle: list[asyncpg.Connection] = []
        self._idle_since: dict[asyncpg.Connection, float] = {}
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._all: set[asyncpg.Connection] = set()
        self._closing = False
        self._refills: set[asyncio.Task] = set()
        self._shares: dict[str, list] = {}  # account -> [its semaphore, its users]
        # the last connect failed (an outage): a request that finds no idle connection is
        # answered 503 at once rather than after acquire_timeout
        self._unreachable = False
        self._connected_at = 0.0  # when the last connect that worked began
        self._probing: asyncio.Future | None = None

    async def _connect(self) -> asyncpg.Connection:
        settings = {"statement_timeout": str(int(self.statement_timeout * 1000))} if self.statement_timeout else {}
        began = time.monotonic()
        try:
            conn = await asyncpg.connect(self.dsn, timeout=self.acquire_timeout, server_settings=settings)
        except (OSError, asyncpg.PostgresError) as exc:
            # unreachable, unless a connect begun later has worked (the database is back)
            self._unreachable = self._unreachable or began > self._connected_at
            raise Disconnected(f"the database is unavailable: {type(exc).__name__}") from None
        self._connected_at = began
        self._unreachable = False
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

    async def _live(self, conn: asyncpg.Connection) -> bool:
        """An idle connection is handed out only while it works: one that the server
        closed (a restart) is replaced, and one idle for long is pinged first."""
        since = self._idle_since.pop(conn, None)
        if not conn.is_closed() and (since is None or time.monotonic() - since < STALE_SECONDS):
            return True
        if not conn.is_closed():
            try:
                await conn.execute("SELECT 1", timeout=min(2.0, self.acquire_timeout))
                return True
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError):
                pass
            except BaseException:  # cancelled while pinging: the connection is not handed back
                self._replace(conn)
                raise
        self._replace(conn)
        return False

    async def acquire(self) -> asyncpg.Connection:
        while self._idle:
            conn = self._idle.pop()
            if await self._live(conn):
                return conn
        if self._closing:
            raise InternalError("the database pool is closed")
        if self._unreachable:
            await self._probe()  # 503 at once while the database is down
            return await self.acquire()
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
        self._idle_since[conn] = time.monotonic()
        self._idle.append(conn)

    def _replace(self, conn: asyncpg.Connection) -> None:
        self._all.discard(conn)
        self._idle_since.pop(conn, None)
        conn.terminate()
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._refill())
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _probe(self) -> None:
        """While the database is unreachable, a request tries one connect (one at a time
        for all of them) rather than wait for the refills' back-off: the first request
        after an outage gets the database back; the others meanwhile get a 503 at once."""
        if self._probing is None:
            self._probing = asyncio.ensure_future(self._connect())
            self._probing.add_done_callback(self._probed)
        try:
            await asyncio.shield(self._probing)
        except ServiceUnavailable:
            raise Disconnected() from None

    def _probed(self, probe: asyncio.Future) -> None:
        self._probing = None
        if probe.cancelled() or probe.exception() is not None:
            return
        self.release(probe.result())  # it takes a refill's place (_refill drops one too many)

    async def _refill(self) -> None:
        delay = 0.05
        while not self._closing:
            try:
                conn = await self._connect()
            except ServiceUnavailable as exc:
                log.warning("reconnecting to the database failed: %s", exc.message)
                while self._unreachable and self._waiters:  # they would wait for nothing: 503 now
                    waiter = self._waiters.popleft()
                    if not waiter.done():
                        waiter.set_exception(Disconnected())
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if len(self._all) > self.size:  # a probe made this one's place already
                self._all.discard(conn)
                conn.terminate()
                return
            self.release(conn)
            return

    @asynccontextmanager
    async def _held_share(self, account: str) -> AsyncIterator[None]:
        """At most `share` connections at once for one account's heavy work; the
        account's next heavy request waits its turn (within the pool's timeout)."""
        entry = self._shares.get(account)
        if entry is None:
            entry = self._shares[account] = [asyncio.Semaphore(self.share), 0]
        entry[1] += 1
        try:
            try:
                await asyncio.wait_for(entry[0].acquire(), self.acquire_timeout)
            except TimeoutError:
                raise ServiceUnavailable(
                    f"the account has {self.share} heavy requests (searches, completions, exports) "
                    "running on this server; retry when one ends"
                ) from None
            try:
                yield
            finally:
                entry[0].release()
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._shares[account]

    @asynccontextmanager
    async def connection(self, share: str | None = None) -> AsyncIterator[asyncpg.Connection]:
        if share is not None:
            async with self._held_share(share), self.connection() as conn:
                yield conn
            return
        conn = await self.acquire()
        healthy = True
        died = False  # the connection died under the request (not: the request was cancelled)
        try:
            yield conn
        except asyncpg.PostgresError as exc:
            # a server-side error leaves the connection usable, unless the server is going
            # away (a shutdown ends the session: the connection is replaced)
            died = isinstance(exc, DISCONNECTED)
            healthy = not died
            raise translate(exc) from None
        except asyncpg.InternalClientError:
            # the protocol's state is broken (an error arrived mid-operation, as when the
            # server shuts down): this connection is done; the request may be retried
            healthy, died = False, True
            raise Disconnected() from None
        except (OSError, asyncpg.InterfaceError) as exc:
            healthy = False
            if conn.is_closed() or isinstance(exc, OSError):
                died = True
                raise Disconnected() from None  # the connection died under the request
            raise
        except BaseException:
            healthy = False  # cancelled mid-query or protocol trouble: don't reuse
            raise
        finally:
            self.release(conn, healthy=healthy)
            if died:
                self._doubt_idle()

    @asynccontextmanager
    async def on_demand(self, share: str | None = None) -> AsyncIterator[OnDemand]:
        """A connection taken from the pool at its first statement, if any, and given
        back at the end (as `connection` does): a completion that needs nothing from the
        database (no bot, dataset, skillset, contact or limits) neither waits for one
        nor holds one while it builds."""
        async with contextlib.AsyncExitStack() as stack:
            yield OnDemand(lambda: stack.enter_async_context(self.connection(share=share)))

    def _doubt_idle(self) -> None:
        """A connection died under a request (the server restarted?): the idle ones may
        be dead too without knowing it yet, so each is pinged before it is handed out
        (else the request's one retry could meet another dead one)."""
        for idle in self._idle:
            self._idle_since[idle] = float("-inf")

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


class OnDemand:
    """The statements of an asyncpg connection, on one taken when first needed."""

    __slots__ = ("_open", "_conn")

    def __init__(self, open_: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._open = open_
        self._conn: asyncpg.Connection | None = None

    async def _get(self) -> asyncpg.Connection:
        if self._conn is None:
            self._conn = await self._open()
        return self._conn

    async def fetch(self, sql: str, *args, **kwargs):
        return await (await self._get()).fetch(sql, *args, **kwargs)

    async def fetchrow(self, sql: str, *args, **kwargs):
        return await (await self._get()).fetchrow(sql, *args, **kwargs)

    async def fetchval(self, sql: str, *args, **kwargs):
        return await (await self._get()).fetchval(sql, *args, **kwargs)

    async def execute(self, sql: str, *args, **kwargs):
        return await (await self._get()).execute(sql, *args, **kwargs)

    async def executemany(self, sql: str, args, **kwargs):
        return await (await self._get()).executemany(sql, args, **kwargs)

    def is_in_transaction(self) -> bool:
        return self._conn is not None and self._conn.is_in_transaction()

    @asynccontextmanager
    async def transaction(self, **kwargs) -> AsyncIterator[None]:
        async with (await self._get()).transaction(**kwargs):
            yield
