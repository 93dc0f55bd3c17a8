"""LISTEN on a channel with a connection of its own, calling back for each message;
while the connection is down, `on_down` runs (callers turn caches off) and it
reconnects with backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger("botkit.store")


class Listener:
    def __init__(
        self,
        dsn: str,
        channel: str,
        on_message: Callable[[str], None],
        on_up: Callable[[], None],
        on_down: Callable[[], None],
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self.on_message = on_message
        self.on_up = on_up
        self.on_down = on_down
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self._lost = asyncio.Event()

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=10)
        await conn.add_listener(self.channel, lambda _c, _pid, _ch, payload: self.on_message(payload))
        conn.add_termination_listener(lambda _c: self._lost.set())
        self._conn = conn
        self.on_up()

    async def _keep(self) -> None:
        delay = 0.1
        while True:
            await self._lost.wait()
            self.on_down()
            self._lost.clear()
            while True:
                try:
                    await self._connect()
                    delay = 0.1
                    break
                except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                    log.warning("LISTEN %s: reconnecting failed: %s", self.channel, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close(timeout=5)
        self.on_down()
