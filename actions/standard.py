"""The standard actions, written once: list, fetch, create, update, delete, export.

A resource module describes its table (`Table`): the struct it answers with (whose
attribute names are the column names; the wire names are their camelCase), the
create struct (the update struct is derived from it), its parent for nested
resources and the ids it refers to. It then makes each route with its literal path:
`crud(TABLE, list="/bot/list", fetch="/bot/{botId}/fetch", ...)`, where any route
may instead be an action of its own (an override) or be left out. The SQL below is
built from the column lists once, and is always parameterised."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..errors import NotFound
from .auth import enforce_limit, limited
from .base import Action, Call, Context, Stream, now_ms
from .fields import META_MAX_KEYS, IdResponse, UpdateBody, field_names
from .ids import new_id
from .query import ListQuery, PageQuery, camel, list_query
from .stream import CsvStream, asks_csv, csv_columns, csv_rows, item_lines

STREAM_BATCH = 500  # rows per keyset batch of a JSONL stream: memory stays constant


@dataclass(frozen=True)
class Parent:
    """The resource a nested one lives under, e.g. records under a dataset."""

    table: str  # "datasets"
    param: str  # path parameter, "datasetId"
    column: str  # column in the child table, "dataset_id"
    noun: str  # for messages, "dataset"
    owner: str = "account_id"  # the parent table's owner column (partner users: parent_id)


@dataclass
class Table:
    name: str  # SQL table, "bots"
    noun: str  # "bot"; the id parameter is noun + "Id"
    item: type  # response struct; attribute names = column names
    create: type  # create body struct
    tag: str
    parent: Parent | None = None
    refs: dict[str, tuple[str, str]] = field(default_factory=dict)  # column -> (table, noun)
    filters: tuple[str, ...] = ()  # extra equality filters on list (column names)
    defaults: dict[str, Callable[[], Any]] = field(default_factory=dict)  # column -> factory
    owner: str = "account_id"  # the column naming the owning account (partner users: parent_id)
    # Rows owned through their parent: the caller owns the parent, not the row (a
    # child account's tokens belong to the child; its parent manages them).
    through_parent: bool = False
    updatable: tuple[str, ...] | None = None  # the create fields update may change (default: all)
    meta_filter: bool = True  # lists filter by meta (the table has a GIN index on meta)

    def __post_init__(self) -> None:
        self.columns = field_names(self.item)
        self.select = ", ".join(self.columns)
        self.id_param = self.noun + "Id"
        self.writable = field_names(self.create)
        self.update = update_struct(self.create, self.noun, set(self.defaults), self.updatable)
        self.query = list_query(self.noun, self.filters, self.meta_filter)
        # $1 the row's id, $2 the caller's account, $3 the parent's id
        if self.parent is None:
            where = f"id = $1 AND {self.owner} = $2"
        elif self.through_parent:
            p = self.parent
            where = f"id = $1 AND {p.column} = $3 AND EXISTS (SELECT 1 FROM {p.table} WHERE id = $3 AND {p.owner} = $2)"
        else:
            where = f"id = $1 AND {self.owner} = $2 AND {self.parent.column} = $3"
        self.fetch_sql = f"SELECT {self.select} FROM {self.name} WHERE {where}"
        self.delete_sql = f"DELETE FROM {self.name} WHERE {where} RETURNING id"
        self.update_where = where
        inserted = ["id", self.owner, "created_at", "updated_at"]
        if self.parent and self.parent.column not in inserted:
            inserted.append(self.parent.column)
        inserted += [c for c in self.writable if c not in inserted]
        self.insert_columns = tuple(inserted)
        marks = ", ".join(f"${i}" for i in range(1, len(inserted) + 1))
        self.insert_sql = f"INSERT INTO {self.name} ({', '.join(inserted)}) VALUES ({marks})"
        self._list_sql: dict[tuple, str] = {}

    def row_to_item(self, row) -> Any:
        return self.item(*row)

    def key_args(self, ctx: Context, call: Call) -> list[Any]:
        """$1, $2 (and $3) of fetch, update and delete."""
        args = [call.params[self.id_param], ctx.account_id]
        if self.parent:
            args.append(call.params[self.parent.param])
        return args

    def list_sql(self, scope_column: str, desc: bool, cursor: bool, meta: int, filters: tuple[str, ...]) -> str:
        """One keyset page: `scope_column = $1` (the owner, or the parent for nested
        lists), the owner `= $2` unless that is the scope, then cursor, `meta` meta
        containments (any of them; each served by the GIN index), filters."""
        key = (scope_column, desc, cursor, meta, filters)
        sql = self._list_sql.get(key)
        if sql is None:
            where = [f"{scope_column} = $1"]
            if scope_column != self.owner:
                where.append(f"{self.owner} = $2")
            n = len(where)
            if cursor:
                n += 1
                where.append(f"id {'<' if desc else '>'} ${n}")
            if meta:
                where.append("(" + " OR ".join(f"meta @> ${n + 1 + i}::jsonb" for i in range(meta)) + ")")
                n += meta
            for column in filters:
                n += 1
                where.append(f"{column} = ${n}")
            n += 1
            sql = (
                f"SELECT {self.select} FROM {self.name} WHERE {' AND '.join(where)} "
                f"ORDER BY id {'DESC' if desc else 'ASC'} LIMIT ${n}"
            )
            self._list_sql[key] = sql
        return sql


_NO_READING = object()
_NUMBER = re.compile(r"-?(?:0|[1-9]\d{0,15})(?:\.\d{1,15})?")
_WORDS = {"true": True, "false": False, "null": None}
META_ALTERNATIVES_MAX = 8


def _json_reading(value: str) -> Any:
    """What a query-string value means as a JSON scalar, if anything."""
    if value in _WORDS:
        return _WORDS[value]
    if _NUMBER.fullmatch(value):
        return float(value) if "." in value else int(value)
    return _NO_READING


def meta_alternatives(meta: dict[str, str]) -> list[dict[str, Any]]:
    """A meta filter arrives as strings (`meta.active=true`, as the SDKs send it), while
    stored meta may hold JSON true, numbers or null: a value also matches its JSON
    reading. The containments to try, any of which matches (at most 8)."""
    combos: list[dict[str, Any]] = [{}]
    for key, value in meta.items():
        reading = _json_reading(value)
        values = [value] if reading is _NO_READING or len(combos) * 2 > META_ALTERNATIVES_MAX else [value, reading]
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


def update_struct(create: type, noun: str, not_null: set[str], only: tuple[str, ...] | None = None) -> type:
    """The update body: every create field optional (UNSET = leave alone); fields the
    create struct may omit can also be cleared with null (unless the column has a
    default and is never NULL); plus a top-level `$update` (UpdateBody)."""
    fields = []
    for f in msgspec.structs.fields(create):
        if only is not None and f.name not in only:
            continue
        annotation = f.type | msgspec.UnsetType
        if not (f.required or f.name in not_null):
            annotation = annotation | None
        fields.append((f.name, annotation, msgspec.UNSET))
    return msgspec.defstruct(
        f"{noun[:1].upper()}{noun[1:]}Update",
        fields,
        bases=(UpdateBody,),
        rename="camel",
        kw_only=True,
        namespace={"checks": getattr(create, "checks", {})},
    )


_LIST_RESPONSES: dict[type, type] = {}


def list_response(item: type, noun: str) -> type:
    """`{items, cursor}` for one item struct (one per item type: the spec names it once)."""
    if item not in _LIST_RESPONSES:
        _LIST_RESPONSES[item] = msgspec.defstruct(
            f"{noun[:1].upper()}{noun[1:]}List",
            [
                ("items", list[item]),  # type: ignore[valid-type]
                # both SDKs type it required (the Python one asserts a str): "" on an empty page
                ("cursor", str),
            ],
        )
    return _LIST_RESPONSES[item]


async def require_owned(conn, table: str, row_id: Any, account_id: str, missing: str, owner: str = "account_id"):
    """404 `missing` unless the row exists in this account (another account's is missing too)."""
    if await conn.fetchval(f"SELECT 1 FROM {table} WHERE id = $1 AND {owner} = $2", row_id, account_id) is None:
        raise NotFound(missing)


async def require_parent(conn, parent: Parent | None, ctx: Context, call: Call) -> None:
    """Nested routes answer 404 when the parent is missing or another account's."""
    if parent is not None:
        await require_owned(
            conn, parent.table, call.params[parent.param], ctx.account_id, f"{parent.noun} not found", parent.owner
        )


class ListAction(Action):
    """A keyset page, or with Accept: application/jsonl the whole collection."""

    method = "GET"

    def __init__(self, table: Table, path: str, *, parent: Parent | None = None, **flags: Any) -> None:
        super().__init__(path, **flags)
        self.table = table
        self.list_parent = parent if parent is not None else table.parent
        self.tag = self.tag or table.tag
        self.summary = self.summary or f"List {table.noun} items"
        self.item = table.item
        self.query = self.query or table.query
        self.page = list_response(table.item, table.noun)
        self.response = self.page

    async def run(self, ctx: Context, call: Call) -> Any:
        q = call.query
        if call.jsonl:
            # The first batch is read before the 200 goes out, so a bad request is
            # still a 4xx answer rather than an error line in a 200 stream.
            async with ctx.pool.connection() as conn:
                await require_parent(conn, self.list_parent, ctx, call)
                sql, args = self.select(ctx, call, q, q.cursor, STREAM_BATCH)
                first = await conn.fetch(sql, *args)
            return Stream(self.stream(ctx, call, q, first))
        sql, args = self.select(ctx, call, q, q.cursor, q.take)
        async with ctx.pool.connection() as conn:
            await require_parent(conn, self.list_parent, ctx, call)
            rows = await conn.fetch(sql, *args)
        make = self.table.row_to_item
        items = [make(r) for r in rows]
        # As the hosted platform (and both SDKs' types: `cursor` is required): the last
        # item's id on every page with items; a client stops at the empty page.
        return self.page(items=items, cursor=items[-1].id if items else "")

    def select(self, ctx: Context, call: Call, q: PageQuery, cursor: str | None, limit: int) -> tuple[str, list]:
        """The SQL and arguments of one keyset page; lists over a join override this."""
        t, parent = self.table, self.list_parent
        args: list[Any] = [call.params[parent.param]] if parent else []
        scope = parent.column if parent else t.owner
        if scope != t.owner or parent is None:
            args.append(ctx.account_id)  # through-parent rows: the parent's ownership was checked
        if cursor:
            args.append(cursor)
        meta = meta_alternatives(q.meta) if isinstance(q, ListQuery) and q.meta else []
        args.extend(meta)
        filters = tuple(c for c in t.filters if getattr(q, c, None) is not None)
        args.extend(getattr(q, c) for c in filters)
        args.append(limit)
        return t.list_sql(scope, q.desc, cursor is not None, len(meta), filters), args

    async def stream(self, ctx: Context, call: Call, q: PageQuery, rows: list) -> AsyncIterator[bytes]:
        async for items in self.batches(ctx, call, q, rows):
            yield item_lines(items)

    async def batches(self, ctx: Context, call: Call, q: PageQuery, rows: list) -> AsyncIterator[list[Any]]:
        """The whole collection from the first batch's `rows` on, STREAM_BATCH items at a time."""
        make = self.table.row_to_item
        while rows:
            yield [make(r) for r in rows]
            if len(rows) < STREAM_BATCH:
                return
            sql, args = self.select(ctx, call, q, rows[-1]["id"], STREAM_BATCH)
            async with ctx.pool.connection(share=ctx.account_id) as conn:  # an export: the account's share
                rows = await conn.fetch(sql, *args)


class ExportAction(ListAction):
    """A list that also answers `Accept: text/csv`: the whole collection as CSV, in the
    JSONL stream's keyset batches (constant memory), a header row of the item's wire
    names first (transport hands an export the request's headers to tell)."""

    answers_csv = True

    def __init__(self, table: Table, path: str, **flags: Any) -> None:
        super().__init__(table, path, **flags)
        self.summary = flags.get("summary") or f"Export {table.noun} items"

    async def run(self, ctx: Context, call: Call) -> Any:
        if call.headers is None or not asks_csv(call.headers.get(b"accept", b"")):
            return await super().run(ctx, call)
        q = call.query
        async with ctx.pool.connection() as conn:  # the first batch before the 200, as a JSONL stream
            await require_parent(conn, self.list_parent, ctx, call)
            sql, args = self.select(ctx, call, q, q.cursor, STREAM_BATCH)
            first = await conn.fetch(sql, *args)
        return CsvStream(self.csv(ctx, call, q, first))

    async def csv(self, ctx: Context, call: Call, q: PageQuery, rows: list) -> AsyncIterator[bytes]:
        yield csv_rows((), csv_columns(self.table.item))  # an empty collection is its header row
        async for items in self.batches(ctx, call, q, rows):
            yield csv_rows(items)


class FetchAction(Action):
    method = "GET"

    def __init__(self, table: Table, path: str, **flags: Any) -> None:
        super().__init__(path, **flags)
        self.table = table
        self.tag = self.tag or table.tag
        self.summary = self.summary or f"Fetch a {table.noun}"
        self.response = table.item

    async def run(self, ctx: Context, call: Call) -> Any:
        t = self.table
        row = await ctx.pool.fetchrow(t.fetch_sql, *t.key_args(ctx, call))
        if row is None:
            raise NotFound(f"{t.noun} not found")
        return t.row_to_item(row)


async def check_refs(conn, table: Table, ctx: Context, values: dict[str, Any]) -> None:
    """Ids a resource refers to must be in the caller's account (else 404, as if missing)."""
    for column, (ref_table, noun) in table.refs.items():
        ref = values.get(column)
        if ref is None or ref is msgspec.UNSET:
            continue
        await require_owned(conn, ref_table, ref, ctx.account_id, f"{camel(column)}: {noun} not found")


class CreateAction(Action):
    response: type = IdResponse

    def __init__(self, table: Table, path: str, **flags: Any) -> None:
        super().__init__(path, **flags)
        self.table = table
        self.tag = self.tag or table.tag
        self.summary = self.summary or f"Create a {table.noun}"
        self.body = self.body or table.create

    def values(self, ctx: Context, call: Call) -> dict[str, Any]:
        """Column values to insert; resource subclasses add what is special."""
        t = self.table
        body = call.body
        now = now_ms()
        values = {"id": new_id(), t.owner: ctx.account_id, "created_at": now, "updated_at": now}
        if t.parent:
            values[t.parent.column] = call.params[t.parent.param]
        for name in t.writable:
            values[name] = getattr(body, name)
        if values.get("meta") is None:
            values["meta"] = {}
        for column, make in t.defaults.items():
            if values.get(column) is None:
                values[column] = make()
        return values

    async def insert(self, conn, ctx: Context, call: Call, values: dict[str, Any]) -> None:
        """Insert the row and its event, in one statement (in a transaction with the
        limit's check when the account has a limit on these rows)."""
        t = self.table
        if limited(ctx.principal, t.noun) and not conn.is_in_transaction():
            async with conn.transaction():
                return await self.insert(conn, ctx, call, values)
        await require_parent(conn, t.parent, ctx, call)
        await check_refs(conn, t, ctx, values)
        await enforce_limit(conn, ctx.principal, t.noun, t.name)
        args = [values[c] for c in t.insert_columns]
        event = event_of(ctx, t, "create", values["id"], values)
        sql = ctx.services.events.statement(t.insert_sql + " RETURNING id", len(args) + 1, ctx.account_id)
        await conn.execute(sql, *args, *event)

    async def run(self, ctx: Context, call: Call) -> Any:
        values = self.values(ctx, call)
        async with ctx.pool.connection() as conn:
            await self.insert(conn, ctx, call, values)
        return IdResponse(id=values["id"])


class UpdateAction(Action):
    response = IdResponse

    def __init__(self, table: Table, path: str, **flags: Any) -> None:
        super().__init__(path, **flags)
        self.table = table
        self.tag = self.tag or table.tag
        self.summary = self.summary or f"Update a {table.noun}"
        self.body = table.update
        self._sql: dict[tuple, str] = {}

    def changes(self, body: Any) -> dict[str, Any]:
        """The columns the body sets (UNSET fields are left alone; null meta is {}, and
        null in a column with a default is that default, e.g. a message's entities [])."""
        sets = {
            name: value
            for name in field_names(self.table.update)
            if name != "merge" and (value := getattr(body, name)) is not msgspec.UNSET
        }
        if "meta" in sets and sets["meta"] is None:
            sets["meta"] = {}
        for column, make in self.table.defaults.items():
            if column in sets and sets[column] is None:
                sets[column] = make()
        return sets

    def sql(self, columns: tuple[str, ...], merge: bool) -> str:
        key = (columns, merge)
        sql = self._sql.get(key)
        if sql is None:
            t = self.table
            first = 4 if t.parent else 3  # $1 id, $2 account, ($3 parent)
            assign = [f"{c} = ${first + i}" for i, c in enumerate(columns)]
            n = first + len(columns)
            if merge:
                assign.append(f"meta = botkit_meta_limit(botkit_merge_patch(meta, ${n}::jsonb), {META_MAX_KEYS})")
                n += 1
            assign.append(f"updated_at = ${n}")
            sql = f"UPDATE {t.name} SET {', '.join(assign)} WHERE {t.update_where} RETURNING id"
            self._sql[key] = sql
        return sql

    async def update(self, conn, ctx: Context, sets: dict[str, Any], sql: str, args: list) -> str | None:
        """Run the update (the row's id, or None: not found); resource subclasses add checks."""
        await check_refs(conn, self.table, ctx, sets)
        return await conn.fetchval(sql, *args)

    async def run(self, ctx: Context, call: Call) -> Any:
        t = self.table
        sets = self.changes(call.body)
        merge = call.body.merge if call.body.merge is not msgspec.UNSET else None
        columns = tuple(sets)
        args = t.key_args(ctx, call) + [sets[c] for c in columns]
        if merge is not None:
            args.append(merge)
        args.append(now_ms())
        fields = [camel(c) for c in columns] + (["meta"] if merge is not None else [])
        row_id = call.params[t.id_param]
        event = event_of(ctx, t, "update", row_id, {**sets, **parent_of(t, call)}, {"fields": fields})
        sql = ctx.services.events.statement(self.sql(columns, merge is not None), len(args) + 1, ctx.account_id)
        async with ctx.pool.connection() as conn:
            updated = await self.update(conn, ctx, sets, sql, [*args, *event])
        if updated is None:
            raise NotFound(f"{t.noun} not found")
        return IdResponse(id=updated)


class DeleteAction(Action):
    response = IdResponse

    def __init__(self, table: Table, path: str, **flags: Any) -> None:
        super().__init__(path, **flags)
        self.table = table
        self.tag = self.tag or table.tag
        self.summary = self.summary or f"Delete a {table.noun}"

    async def run(self, ctx: Context, call: Call) -> Any:
        t = self.table
        args = t.key_args(ctx, call)
        event = event_of(ctx, t, "delete", call.params[t.id_param], parent_of(t, call))
        sql = ctx.services.events.statement(t.delete_sql, len(args) + 1, ctx.account_id)
        deleted = await ctx.pool.fetchval(sql, *args, *event)
        if deleted is None:
            raise NotFound(f"{t.noun} not found")
        return IdResponse(id=deleted)


def parent_of(table: Table, call: Call) -> dict[str, Any]:
    return {table.parent.column: call.params[table.parent.param]} if table.parent else {}


def _event(table: Table, action: str, row_id: str, values: dict[str, Any], meta: dict | None) -> dict[str, Any]:
    """The event of a change (resources/event.py): its type `<noun>.<action>`, the row's
    own id and the ids it refers to (never other values). The row's id (and its
    parent's) is also in the meta (`meta.userId=...` filters)."""
    refs = {c: v for c, v in values.items() if c.endswith("_id") and isinstance(v, str)}
    refs[f"{table.noun}_id"] = row_id
    meta = {**(meta or {}), f"{table.noun}Id": row_id}
    if table.parent:
        meta[f"{table.parent.noun}Id"] = values.get(table.parent.column, "")
    return {"type": f"{table.noun}.{action}", "meta": meta, "refs": refs}


def event_of(
    ctx: Context, table: Table, action: str, row_id: str, values: dict[str, Any], meta: dict | None = None
) -> list[Any]:
    """The event's parameters for `EventLog.statement` (the change and its event in one)."""
    e = _event(table, action, row_id, values, meta)
    events = ctx.services.events
    return events.args(events.values(ctx.account_id, e["type"], e["meta"], e["refs"]))


async def record(
    conn, ctx: Context, table: Table, action: str, row_id: str, values: dict[str, Any], meta: dict | None = None
) -> None:
    """The event of a change, as a statement of its own on the change's connection (the
    caller holds the transaction)."""
    e = _event(table, action, row_id, values, meta)
    await ctx.services.events.record(conn, ctx.account_id, e["type"], meta=e["meta"], refs=e["refs"])


async def count_owned(conn, account_id: str, tables: dict[str, str]) -> dict[str, int]:
    """How many rows of each table an account owns ({table: its owner column}), in one
    statement; each count is served by the table's owner index."""
    selects = ", ".join(f"(SELECT count(*) FROM {t} WHERE {owner} = $1) AS {t}" for t, owner in tables.items())
    row = await conn.fetchrow(f"SELECT {selects}", account_id)
    return {t: int(row[t]) for t in tables}


async def daily_counts(conn, table: str, account_id: str, since: int) -> list:
    """Rows an account made per UTC day since `since` ms: (date, total) rows, oldest first."""
    return await conn.fetch(
        f"SELECT created_at / 86400000 * 86400000 AS date, count(*) AS total FROM {table} "
        "WHERE account_id = $1 AND created_at >= $2 GROUP BY 1 ORDER BY 1",
        account_id,
        since,
    )


_STANDARD: dict[str, type] = {
    "list": ListAction,
    "fetch": FetchAction,
    "create": CreateAction,
    "update": UpdateAction,
    "delete": DeleteAction,
    "export": ExportAction,
}


def crud(table: Table, **routes: str | Action | None) -> list[Action]:
    """The standard actions of a table, each given its literal path (`fetch=
    "/bot/{botId}/fetch"`), or an action of its own in its place (an override).
    Routes not named are not served."""
    actions: list[Action] = []
    for operation, route in routes.items():
        if route is None:
            continue
        if isinstance(route, Action):
            actions.append(route)
            continue
        if route.rsplit("/", 1)[-1] != operation:
            raise ValueError(f"crud({table.noun}): the {operation} route must end in /{operation}, got {route}")
        actions.append(_STANDARD[operation](table, route))
    return actions
