"""The event log: what happened in an account, for an operator to audit and tail.

Each event is written by `EventLog.record` on the connection, and so in the
transaction, of the change it records: no event without its change, no change
without its event. Its type is `<noun>.<action>` (`bot.create`, `record.delete`,
`token.create`, `completion.finish`, `request.limits_reached`, ...), its ids name
what it concerns, and its meta says what changed (field names, model and usage),
never a value that could be a secret.

`event/log/subscribe` tails it live. A NOTIFY serialises the commits of every
transaction that sends one (measured here: half the write throughput), so an event
is announced only while somebody, in any process, subscribes to its account: a
subscriber "taps" the account (a row in event_taps, announced to every process,
renewed while it listens), and each process keeps the tapped accounts in memory.
A process learns of a new tap within milliseconds; what it wrote in between is what
the subscriber's catch-up read, a second after it subscribed, delivers.

Events are kept BOTKIT_EVENT_RETENTION_DAYS (each process prunes hourly)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec

from ..actions.base import Action, Call, Context, Stream, now_ms
from ..actions.fields import SAFE_INTEGER, Body, Item
from ..actions.ids import floor_id, new_id
from ..actions.standard import Table, crud
from ..actions.stream import ErrorEvent, PingEvent, error_line
from ..store.channels import NOTICE_CHANNEL, Dropped

log = logging.getLogger("botkit")

EVENTS = "#events"  # the hub channel of an account's events
TAPS = "#taps"  # the hub channel announcing a new tap
HISTORY_MAX = 100
TAP_SECONDS = 30  # a tap's row lives this long unless renewed (renewed every third of it)
CATCH_UP_SECONDS = 1.0
REFUSALS_EVERY_SECONDS = 60  # one refusal event per account, kind and process a minute


class Event(Item):
    type: str
    meta: dict
    name: str | None = None
    description: str | None = None
    conversation_id: str | None = None
    task_id: str | None = None
    contact_id: str | None = None
    bot_id: str | None = None
    dataset_id: str | None = None
    record_id: str | None = None
    skillset_id: str | None = None
    ability_id: str | None = None
    file_id: str | None = None
    secret_id: str | None = None


class EventRecord(Body):
    """What `record` writes (no route creates events)."""

    type: str
    meta: dict
    name: str | None = None
    description: str | None = None
    conversation_id: str | None = None
    task_id: str | None = None
    contact_id: str | None = None
    bot_id: str | None = None
    dataset_id: str | None = None
    record_id: str | None = None
    skillset_id: str | None = None
    ability_id: str | None = None
    file_id: str | None = None
    secret_id: str | None = None


TABLE = Table(name="events", noun="event", item=Event, create=EventRecord, tag="Event", filters=("type",))
REFS = frozenset(c for c in TABLE.writable if c.endswith("_id"))
_INSERT = TABLE.insert_sql
_INSERT_ANNOUNCED = f"{_INSERT} RETURNING pg_notify('{NOTICE_CHANNEL}', account_id || ' {EVENTS} ' || id)"
_FETCH = f"SELECT {TABLE.select} FROM events WHERE id = $1 AND account_id = $2"
EVENT_COLUMNS = ("id", "account_id", "type", "meta", "created_at", "updated_at", *sorted(REFS))


def with_event(change: str, first: int, announced: bool) -> str:
    """The SQL of `EventLog.statement` (bench/limit_app.py copies it)."""
    marks = ", ".join(f"${first + i}" for i in range(len(EVENT_COLUMNS)))
    notice = f", pg_notify('{NOTICE_CHANNEL}', ${first + 1} || ' {EVENTS} ' || ${first})" if announced else ""
    return (
        f"WITH changed AS ({change}), "
        f"event AS (INSERT INTO events ({', '.join(EVENT_COLUMNS)}) SELECT {marks} FROM changed) "
        f"SELECT changed.id{notice} FROM changed"
    )


def as_data(event: Event) -> dict[str, Any]:
    return msgspec.to_builtins(event)


class EventLog:
    """Writing events, knowing which accounts are tapped, tapping one."""

    def __init__(self, pool: Any, hub: Any, retention_days: float) -> None:
        self.pool = pool
        self.hub = hub
        self.retention_ms = int(retention_days * 86_400_000)
        self.process = f"{os.uname().nodename}:{os.getpid()}:{new_id()}"
        self.tapped: dict[str, float] = {}  # account → until (monotonic), any process's taps
        self._mine: dict[str, int] = {}  # account → subscribers here
        self._refused: dict[tuple[str, str], float] = {}
        self._statements: dict[tuple[str, int, bool], str] = {}
        self._tasks: set[asyncio.Task] = set()
        self._keeper: asyncio.Task | None = None

    async def start(self) -> None:
        self.hub.readers[EVENTS] = self._read
        self.hub.hooks[TAPS] = self._tap_heard
        await self._load_taps()
        self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
        with contextlib.suppress(Exception):
            await self.pool.execute("DELETE FROM event_taps WHERE process = $1", self.process)

    # --- writing ----------------------------------------------------------------------

    async def record(
        self,
        conn,
        account_id: str,
        type_: str,
        *,
        meta: dict | None = None,
        refs: dict[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        """One event, on `conn` (so in its transaction). Of `refs`, the columns the
        event log has (bot_id, dataset_id, ...) are kept."""
        values = self.values(account_id, type_, meta, refs)
        values.update(name=name, description=description)
        sql = _INSERT_ANNOUNCED if self.is_tapped(account_id) else _INSERT
        await conn.execute(sql, *(values.get(c) for c in TABLE.insert_columns))

    def values(self, account_id: str, type_: str, meta: dict | None, refs: dict[str, Any] | None) -> dict[str, Any]:
        now = now_ms()
        values: dict[str, Any] = {c: v for c, v in (refs or {}).items() if c in REFS}
        values.update(id=new_id(), account_id=account_id, created_at=now, updated_at=now, type=type_, meta=meta or {})
        return values

    def statement(self, change: str, first: int, account_id: str) -> str:
        """`change` (an INSERT, UPDATE or DELETE ... RETURNING id, whose parameters end
        before $first) and its event in one statement, so in one transaction and one
        round trip: the event's columns are $first, ... (`args`); it answers the changed
        row's id, and neither writes nor answers anything when nothing changed."""
        tapped = self.is_tapped(account_id)
        key = (change, first, tapped)
        sql = self._statements.get(key)
        if sql is None:
            sql = with_event(change, first, tapped)
            if len(self._statements) < 1000:
                self._statements[key] = sql
        return sql

    @staticmethod
    def args(values: dict[str, Any]) -> list[Any]:
        """The event's parameters of `statement`, from `values(...)`."""
        return [values.get(c) for c in EVENT_COLUMNS]

    def refused(self, account_id: str, code: str, path: str) -> None:
        """A request refused by a rate limit or a partner's limits: at most one event per
        account and kind a minute from this process (a flood of refusals is not a flood
        of writes), written in the background."""
        key = (account_id, code)
        now = time.monotonic()
        if self._refused.get(key, 0.0) > now:
            return
        if len(self._refused) > 10_000:
            self._refused = {k: t for k, t in self._refused.items() if t > now}
        self._refused[key] = now + REFUSALS_EVERY_SECONDS
        kind = "request.limits_reached" if code == "LIMITS_REACHED" else "request.rate_limited"
        task = asyncio.get_running_loop().create_task(self._write_refusal(account_id, kind, code, path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_refusal(self, account_id: str, kind: str, code: str, path: str) -> None:
        try:
            async with self.pool.connection() as conn:
                await self.record(conn, account_id, kind, meta={"code": code, "route": path[:200]})
        except Exception as exc:  # an audit line must not fail the refusal, nor go unnoticed
            log.warning("event log: recording a refusal failed: %s", exc)

    # --- taps -------------------------------------------------------------------------

    def is_tapped(self, account_id: str) -> bool:
        until = self.tapped.get(account_id)
        return until is not None and until > time.monotonic()

    def _tap_heard(self, account_id: str) -> None:
        self.tapped[account_id] = time.monotonic() + TAP_SECONDS

    async def _load_taps(self) -> None:
        rows = await self.pool.fetch("SELECT account_id, max(expires_at) AS until FROM event_taps GROUP BY 1")
        now_wall, now = now_ms(), time.monotonic()
        self.tapped = {r["account_id"]: now + (r["until"] - now_wall) / 1000 for r in rows if r["until"] > now_wall}
        for account in self._mine:
            self.tapped[account] = now + TAP_SECONDS

    async def _renew(self, accounts: list[str]) -> None:
        await self.pool.execute(
            "INSERT INTO event_taps (account_id, process, expires_at) SELECT a, $2, $3 FROM unnest($1::text[]) a "
            "ON CONFLICT (account_id, process) DO UPDATE SET expires_at = excluded.expires_at",
            accounts,
            self.process,
            now_ms() + TAP_SECONDS * 1000,
        )

    async def _keep(self) -> None:
        """Renew this process's taps, reload everyone's, prune old events."""
        pruned = 0.0
        while True:
            await asyncio.sleep(TAP_SECONDS / 3)
            try:
                if self._mine:
                    await self._renew(list(self._mine))
                await self.pool.execute("DELETE FROM event_taps WHERE expires_at < $1", now_ms())
                await self._load_taps()
                if time.monotonic() - pruned > 3600:
                    pruned = time.monotonic()
                    await self.prune()
            except Exception as exc:
                log.warning("event log: keeping taps failed: %s", exc)

    async def prune(self) -> int:
        """Delete events older than the retention, a batch at a time (ids are time-ordered)."""
        before = floor_id(now_ms() - self.retention_ms)
        total = 0
        while True:
            status = await self.pool.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < $1 LIMIT 5000)", before
            )
            n = int(status.rsplit(" ", 1)[-1])
            total += n
            if n < 5000:
                return total

    @contextlib.asynccontextmanager
    async def tap(self, account_id: str) -> AsyncIterator[None]:
        first = account_id not in self._mine
        self._mine[account_id] = self._mine.get(account_id, 0) + 1
        self.tapped[account_id] = time.monotonic() + TAP_SECONDS
        try:
            if first:
                async with self.pool.connection() as conn, conn.transaction():
                    await self._renew_on(conn, account_id)
                    await conn.execute("SELECT pg_notify($1, $2)", NOTICE_CHANNEL, f"{account_id} {TAPS} -")
            yield
        finally:
            self._mine[account_id] -= 1
            if not self._mine[account_id]:
                del self._mine[account_id]
                with contextlib.suppress(Exception):
                    await self.pool.execute(
                        "DELETE FROM event_taps WHERE account_id = $1 AND process = $2", account_id, self.process
                    )

    async def _renew_on(self, conn, account_id: str) -> None:
        await conn.execute(
            "INSERT INTO event_taps (account_id, process, expires_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (account_id, process) DO UPDATE SET expires_at = excluded.expires_at",
            account_id,
            self.process,
            now_ms() + TAP_SECONDS * 1000,
        )

    async def _read(self, account_id: str, event_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(_FETCH, event_id, account_id)
        return as_data(TABLE.row_to_item(row)) if row is not None else None


# --- routes ---------------------------------------------------------------------------


class SubscribeBody(Body):
    history_length: Annotated[
        int, msgspec.Meta(ge=0, le=SAFE_INTEGER, description=f"at most {HISTORY_MAX} are replayed")
    ] = 0


class EventItemEvent(msgspec.Struct, tag_field="type", tag="item"):
    data: Event


SubscribeEvents = EventItemEvent | PingEvent | ErrorEvent


def _line(data: dict[str, Any]) -> bytes:
    return b'{"type":"item","data":' + msgspec.json.encode(data) + b"}\n"


class SubscribeEventLog(Action):
    """The last `historyLength` events, then each new one as it is committed, as
    `item` lines; a ping line during silences; it ends when the client leaves."""

    tag = "Event"
    summary = "Subscribe to the account's events as they happen (JSONL)"
    body = SubscribeBody
    events = SubscribeEvents
    response = EventItemEvent

    async def run(self, ctx: Context, call: Call) -> Stream:
        return Stream(self.lines(ctx, min(call.body.history_length, HISTORY_MAX)))

    async def lines(self, ctx: Context, history: int) -> AsyncIterator[bytes]:
        account = ctx.account_id
        events: EventLog = ctx.services.events
        started = now_ms()
        async with ctx.services.channels.listen(account, EVENTS) as listening, events.tap(account):
            sent: set[str] = set()
            seen: set[str] | None = sent  # ids sent, until the catch-up read is done
            if history:
                rows = await ctx.pool.fetch(
                    f"SELECT * FROM (SELECT {TABLE.select} FROM events WHERE account_id = $1 "
                    "ORDER BY id DESC LIMIT $2) recent ORDER BY id",
                    account,
                    history,
                )
                for row in rows:
                    sent.add(row["id"])
                    yield _line(as_data(TABLE.row_to_item(row)))
            catch_up = time.monotonic() + CATCH_UP_SECONDS
            while True:
                try:
                    if seen is None:
                        data = await listening.next()
                    else:
                        try:
                            data = await listening.next(max(0.0, catch_up - time.monotonic()))
                        except TimeoutError:
                            # what processes wrote before they heard of the tap
                            rows = await ctx.pool.fetch(
                                f"SELECT {TABLE.select} FROM events WHERE account_id = $1 AND id >= $2 "
                                "ORDER BY id LIMIT 1000",
                                account,
                                floor_id(started),
                            )
                            missed = [r for r in rows if r["id"] not in seen]
                            seen = None
                            for row in missed:
                                yield _line(as_data(TABLE.row_to_item(row)))
                            continue
                except Dropped as exc:
                    yield error_line(str(exc), "TOO_MANY_REQUESTS")
                    return
                if seen is not None:
                    if data["id"] in seen:
                        continue
                    seen.add(data["id"])
                yield _line(data)


ACTIONS: list[Action] = [
    *crud(TABLE, list="/event/log/list", export="/event/log/export"),
    SubscribeEventLog("/event/log/subscribe"),
]
