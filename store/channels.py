"""Channel messages to this process's listeners, whichever process published them.

A publish stores the message (resources/channel.py) and, in the same transaction,
NOTIFYs `botkit_channel` with "<account> <channel> <message id>": PostgreSQL delivers it
to every API process when the transaction commits. Each process holds one LISTEN
connection; a notice for a channel nobody here listens to costs a dict lookup, and for
one with listeners the message is read once and handed to each listener's bounded
queue. A listener that does not keep up is dropped (its queue says so) rather than
holding memory without bound; one that goes away frees everything at once."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .listen import Listener

log = logging.getLogger("botkit.store")
NOTICE_CHANNEL = "botkit_channel"
QUEUE_MAX = 1000  # messages a listener may be behind before it is dropped
DELIVERED_MAX = 10_000  # ids of messages delivered locally whose notices are still to come


class Dropped(Exception):
    """The listener fell too far behind."""


class Listening:
    """One listener of one channel: `await next(timeout)` gives the next message's data.

    Light, because a process may hold thousands of idle ones: a message put while the
    listener waits goes straight to its one future; only a backlog allocates a deque."""

    __slots__ = ("_backlog", "_waiter", "dropped")

    def __init__(self) -> None:
        self._backlog: collections.deque[Any] | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self.dropped = False

    def __len__(self) -> int:
        """Messages waiting to be taken (the drop marker included)."""
        return len(self._backlog) if self._backlog else 0

    def put(self, data: Any, message_id: str | None = None) -> None:
        if self.dropped:
            return
        item = (message_id, data)
        waiter = self._waiter
        if waiter is not None and not waiter.done():  # waiting, so nothing is queued
            self._waiter = None
            waiter.set_result(item)
            return
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = collections.deque()
        if len(backlog) >= QUEUE_MAX:
            self.dropped = True
            backlog.append(_DROPPED)
            return
        backlog.append(item)

    async def next(self, timeout: float | None = None) -> Any:
        """The next message's data."""
        return (await self.entry(timeout))[1]

    async def entry(self, timeout: float | None = None) -> tuple[str | None, Any]:
        """The next message as (its id, when known; its data)."""
        if self._backlog:
            item = self._backlog.popleft()
        else:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                item = await (waiter if timeout is None else asyncio.wait_for(waiter, timeout))
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        if item is _DROPPED:
            raise Dropped(f"the subscriber fell more than {QUEUE_MAX} messages behind")
        return item


_DROPPED = object()


class Hub:
    def __init__(self, dsn: str, pool: Any) -> None:
        self.pool = pool
        self._listeners: dict[tuple[str, str], set[Listening]] = {}
        self._up = False
        self._listener = Listener(dsn, NOTICE_CHANNEL, self._notice, self._on_up, self._on_down)
        # notices are delivered one after another, so a channel's messages arrive in order
        self._notices: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._delivered: collections.OrderedDict[str, None] = collections.OrderedDict()  # ids handed out here
        # Channels of botkit's own ("#events"; user channel ids cannot start with "#"):
        # where a notice's message is read from, or a callback that takes the notice itself.
        self.readers: dict[str, Callable[[str, str], Awaitable[Any]]] = {}  # (account, id) → data
        self.hooks: dict[str, Callable[[str], None]] = {}  # (account) → None

    async def start(self) -> None:
        await self._listener.start()
        self._worker = asyncio.get_running_loop().create_task(self._deliver_all())

    async def stop(self) -> None:
        await self._listener.stop()
        if self._worker is not None:
            self._worker.cancel()

    def _on_up(self) -> None:
        self._up = True

    def _on_down(self) -> None:
        self._up = False

    @contextlib.asynccontextmanager
    async def listen(self, account_id: str, channel: str) -> AsyncIterator[Listening]:
        """Listen from now on (register before telling anyone where to publish)."""
        key = (account_id, channel)
        listening = Listening()
        self._listeners.setdefault(key, set()).add(listening)
        try:
            yield listening
        finally:
            listeners = self._listeners.get(key)
            if listeners is not None:
                listeners.discard(listening)
                if not listeners:
                    del self._listeners[key]

    def publishing(self, message_id: str) -> None:
        """This process is about to store the message: its notice (which may arrive before
        the publish call resumes) is skipped, `published` delivers it here."""
        self._delivered[message_id] = None
        if len(self._delivered) > DELIVERED_MAX:
            self._delivered.popitem(last=False)

    def published(self, account_id: str, channel: str, data: Any, message_id: str | None = None) -> None:
        """The message is stored: this process's listeners get it now, without the round
        trip through PostgreSQL; the other processes' get it from the notice."""
        for listening in list(self._listeners.get((account_id, channel), ())):
            listening.put(data, message_id)

    def _notice(self, payload: str) -> None:
        parts = payload.split(" ")
        if len(parts) != 3:
            return
        hook = self.hooks.get(parts[1])
        if hook is not None:
            hook(parts[0])
            return
        if (parts[0], parts[1]) not in self._listeners:
            return
        if self._delivered.pop(parts[2], False) is None:
            return  # published by this process: delivered already
        self._notices.put_nowait((parts[0], parts[1], parts[2]))

    async def _deliver_all(self) -> None:
        while True:
            await self._deliver(*await self._notices.get())

    async def _deliver(self, account_id: str, channel: str, message_id: str) -> None:
        read = self.readers.get(channel, self._read)
        try:
            data = await read(account_id, message_id)
        except Exception:  # the database is away: the listener waits on, bounded by its timeout
            log.exception("channel %s: reading message %s failed", channel, message_id)
            return
        if data is None:
            return
        for listening in list(self._listeners.get((account_id, channel), ())):
            listening.put(data, message_id)

    async def _read(self, account_id: str, message_id: str) -> Any:
        return await self.pool.fetchval(
            "SELECT data FROM channel_messages WHERE id = $1 AND account_id = $2", message_id, account_id
        )
