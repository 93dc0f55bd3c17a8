"""The standard actions, written once: list, fetch, create, update, delete, export.

A resource module describes its table (`Table`): the struct it answers with (whose
attribute names are the column names; the wire names are their camelCase), the
create struct (the update struct is derived from it), its parent for nested
resources and the ids it refers to. The SQL below is built from those column lists
once, at import time, and is always parameterised."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import msgspec

from .auth import enforce_limit
from .base import Action, Call, Context, Param, Stream, now_ms
from ..errors import BadRequest, NotFound
from .fields import META_MAX_KEYS, MetaDict, IdResponse, check_meta
from .ids import is_id, new_id

TAKE_DEFAULT = 25
TAKE_MAX = 100
STREAM_BATCH = 500  # rows per keyset batch of a JSONL stream: memory stays constant

_ENCODE = msgspec.json.encode
_META_FILTER = re.compile(r"^meta(?:\.([^\[\].]+)|\[([^\[\]]+)\])$")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class Parent:
    """The resource a nested one lives under, e.g. records under a dataset."""
    table: str    # "datasets"
    param: str    # path parameter, "datasetId"
    column: str   # column in the child table, "dataset_id"
    noun: str     # for messages, "dataset"
    owner: str = "account_id"  # the parent table's owner column (partner users: parent_id)


@dataclass
class Table:
    name: str                       # SQL table, "bots"
    noun: str                       # "bot"; the id parameter is noun + "Id"
    item: type                      # response struct; attribute names = column names
    create: type                    # create body struct
    path: str                       # route prefix under /v1, "/bot" or "/dataset/{datasetId}/record"
    tag: str
    parent: Parent | None = None
    refs: dict[str, tuple[str, str]] = field(default_factory=dict)  # column -> (table, noun)
    filters: tuple[str, ...] = ()   # extra equality filters on list (column names)
    defaults: dict[str, Callable[[], Any]] = field(default_factory=dict)  # column -> factory
    owner: str = "account_id"       # the column naming the owning account (partner users: parent_id)

    def __post_init__(self) -> None:
        self.columns = tuple(self.item.__struct_fields__)
        self.select = ", ".join(self.columns)
        self.id_param = self.noun + "Id"
        self.update = update_struct(self.create, self.noun, set(self.defaults))
        self.writable = tuple(f for f in self.create.__struct_fields__)
        owner = [f"{self.owner} = $2"]
        if self.parent:
            owner.append(f"{self.parent.column} = $3")
        where = " AND ".join(["id = $1", *owner])
        self.fetch_sql = f"SELECT {self.select} FROM {self.name} WHERE {where}"
        self.delete_sql = f"DELETE FROM {self.name} WHERE {where} RETURNING id"
        self.exists_sql = f"SELECT 1 FROM {self.name} WHERE {where}"
        self.update_where = where
        inserted = ["id", self.owner, "created_at", "updated_at"]
        if self.parent:
            inserted.append(self.parent.column)
        inserted += [c for c in self.writable if c not in inserted]
        self.insert_columns = tuple(inserted)
        marks = ", ".join(f"${i}" for i in range(1, len(inserted) + 1))
        self.insert_sql = f"INSERT INTO {self.name} ({', '.join(inserted)}) VALUES ({marks})"
        self._list_sql: dict[tuple, str] = {}

    def row_to_item(self, row) -> Any:
        return self.item(*row)

    def list_sql(self, scope_column: str, desc: bool, cursor: bool, meta: bool,
                 filters: tuple[str, ...]) -> str:
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
                n += 1
                where.append(f"meta @> ${n}::jsonb")
            for column in filters:
                n += 1
                where.append(f"{column} = ${n}")
            n += 1
            sql = (f"SELECT {self.select} FROM {self.name} WHERE {' AND '.join(where)} "
                   f"ORDER BY id {'DESC' if desc else 'ASC'} LIMIT ${n}")
            self._list_sql[key] = sql
        return sql


def update_struct(create: type, noun: str, not_null: set[str] = frozenset()) -> type:
    """The update body: every create field optional (UNSET = leave alone); fields the
    create struct may omit can also be cleared with null (unless the column has a
    default and is never NULL); plus a top-level `$update`."""
    fields = []
    for f in msgspec.structs.fields(create):
        annotation = f.type
        if f.required or f.name in not_null:
            annotation = annotation | msgspec.UnsetType
        else:
            annotation = annotation | None | msgspec.UnsetType
        fields.append((f.name, annotation, msgspec.UNSET))
    fields.append(("merge", MetaDict | msgspec.UnsetType, msgspec.field(default=msgspec.UNSET, name="$update")))
    return msgspec.defstruct(f"{noun[:1].upper()}{noun[1:]}Update", fields,
                             rename="camel", kw_only=True)


# --- list parameters --------------------------------------------------------

@dataclass(slots=True)
class ListQuery:
    desc: bool = True
    cursor: str | None = None
    take: int = TAKE_DEFAULT
    meta: dict[str, str] | None = None
    filters: dict[str, str] = field(default_factory=dict)


LIST_PARAMS = (
    Param("cursor", {"type": "string"}, "The id of the last item of the previous page"),
    Param("order", {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
          "Order by creation time"),
    Param("take", {"type": "integer", "minimum": 1, "maximum": TAKE_MAX, "default": TAKE_DEFAULT},
          f"Items per page (default {TAKE_DEFAULT}, at most {TAKE_MAX})"),
    Param("meta", {"type": "object", "additionalProperties": {"type": "string"}},
          "Meta filters, `meta.<key>=<value>` (or `meta[key]=value`); all must match", "deepObject"),
)


def parse_list_query(pairs: list[tuple[str, str]], filters: tuple[str, ...] = ()) -> ListQuery:
    q = ListQuery()
    wire_filters = {camel(c): c for c in filters}
    for key, value in pairs:
        if key == "cursor":
            if value:
                if not is_id(value):
                    raise BadRequest("cursor: not a valid cursor")
                q.cursor = value
        elif key == "order":
            if value not in ("asc", "desc"):
                raise BadRequest("order: must be 'asc' or 'desc'")
            q.desc = value == "desc"
        elif key == "take":
            if not (value.isascii() and value.isdigit() and len(value) <= 3 and 1 <= int(value) <= TAKE_MAX):
                raise BadRequest(f"take: must be an integer from 1 to {TAKE_MAX}")
            q.take = int(value)
        elif key in wire_filters:
            if len(value) > 256:
                raise BadRequest(f"{key}: too long")
            q.filters[wire_filters[key]] = value
        elif key.startswith("meta"):
            m = _META_FILTER.match(key)
            if m is None:
                raise BadRequest(f"{key[:60]}: meta filters are meta.<key>=<value> or meta[key]=value")
            name = m.group(1) or m.group(2)
            if q.meta is None:
                q.meta = {}
            q.meta[name] = value
    if q.meta:
        check_meta(q.meta, "meta filter")
    return q


# --- the actions ------------------------------------------------------------

def _scope(table: Table, parent: Parent | None) -> str:
    return parent.column if parent else table.owner


async def require_parent(conn, parent: Parent | None, ctx: Context, call: Call) -> None:
    """Nested routes answer 404 when the parent is missing or another account's."""
    if parent is None:
        return
    found = await conn.fetchval(f"SELECT 1 FROM {parent.table} WHERE id = $1 AND {parent.owner} = $2",
                                call.params[parent.param], ctx.account_id)
    if found is None:
        raise NotFound(f"{parent.noun} not found")


def _list_args(table: Table, parent: Parent | None, ctx: Context, call: Call, q: ListQuery,
               cursor: str | None, limit: int) -> tuple[str, list]:
    args: list[Any] = [call.params[parent.param]] if parent else []
    args.append(ctx.account_id)
    if cursor:
        args.append(cursor)
    if q.meta:
        args.append(q.meta)
    filters = tuple(sorted(q.filters))
    args.extend(q.filters[c] for c in filters)
    args.append(limit)
    sql = table.list_sql(_scope(table, parent), q.desc, cursor is not None, bool(q.meta), filters)
    return sql, args


_LIST_RESPONSES: dict[type, type] = {}


def list_response(item: type, noun: str) -> type:
    """`{items, cursor}` for one item struct (one per item type: the spec names it once)."""
    if item not in _LIST_RESPONSES:
        _LIST_RESPONSES[item] = msgspec.defstruct(f"{noun[:1].upper()}{noun[1:]}List", [
            ("items", list[item]),
            ("cursor", str | msgspec.UnsetType, msgspec.UNSET),
        ])
    return _LIST_RESPONSES[item]


class ListAction(Action):
    """A keyset page, or with Accept: application/jsonl the whole collection."""
    method = "GET"
    query_params = LIST_PARAMS

    def __init__(self, table: Table, *, path: str | None = None, parent: Parent | None = None,
                 summary: str | None = None) -> None:
        self.table = table
        self.list_parent = parent if parent is not None else table.parent
        self.path = path or f"{table.path}/list"
        self.tag = table.tag
        self.summary = summary or f"List {table.noun} items"
        self.item = table.item
        self.response = list_response(table.item, table.noun)
        extra = tuple(Param(camel(c), {"type": "string"}, f"Only items whose {camel(c)} equals this")
                      for c in table.filters)
        self.query_params = LIST_PARAMS + extra

    async def run(self, ctx: Context, call: Call) -> Any:
        q = parse_list_query(call.query, self.table.filters)
        if call.jsonl:
            # The first batch is read before the 200 goes out, so a bad request is
            # still a 4xx answer rather than an error line in a 200 stream.
            async with ctx.pool.connection() as conn:
                await require_parent(conn, self.list_parent, ctx, call)
                sql, args = self.query(ctx, call, q, q.cursor, STREAM_BATCH)
                first = await conn.fetch(sql, *args)
            return Stream(self.stream(ctx, call, q, first))
        sql, args = self.query(ctx, call, q, q.cursor, q.take + 1)
        async with ctx.pool.connection() as conn:
            await require_parent(conn, self.list_parent, ctx, call)
            rows = await conn.fetch(sql, *args)
        make = self.table.row_to_item
        items = [make(r) for r in rows[: q.take]]
        # A cursor only when there is more: a client stops when it is absent.
        cursor = items[-1].id if len(rows) > q.take else msgspec.UNSET
        return self.response(items=items, cursor=cursor)

    def query(self, ctx: Context, call: Call, q: ListQuery, cursor: str | None, limit: int) -> tuple[str, list]:
        """The SQL and arguments of one keyset page; lists over a join override this."""
        return _list_args(self.table, self.list_parent, ctx, call, q, cursor, limit)

    async def stream(self, ctx: Context, call: Call, q: ListQuery, rows: list) -> AsyncIterator[bytes]:
        make = self.table.row_to_item
        while True:
            if not rows:
                return
            yield b"".join(b'{"type":"item","data":' + _ENCODE(make(r)) + b"}\n" for r in rows)
            if len(rows) < STREAM_BATCH:
                return
            sql, args = self.query(ctx, call, q, rows[-1]["id"], STREAM_BATCH)
            rows = await ctx.pool.fetch(sql, *args)


class ExportAction(ListAction):
    def __init__(self, table: Table, **kw) -> None:
        super().__init__(table, path=f"{table.path}/export",
                         summary=f"Export {table.noun} items", **kw)


class FetchAction(Action):
    method = "GET"

    def __init__(self, table: Table) -> None:
        self.table = table
        self.path = f"{table.path}/{{{table.id_param}}}/fetch"
        self.tag = table.tag
        self.summary = f"Fetch a {table.noun}"
        self.response = table.item

    async def run(self, ctx: Context, call: Call) -> Any:
        t = self.table
        args = [call.params[t.id_param], ctx.account_id]
        if t.parent:
            args.append(call.params[t.parent.param])
        row = await ctx.pool.fetchrow(t.fetch_sql, *args)
        if row is None:
            raise NotFound(f"{t.noun} not found")
        return t.row_to_item(row)


async def check_refs(conn, table: Table, ctx: Context, values: dict[str, Any]) -> None:
    """Ids a resource refers to must be in the caller's account (else 404, as if missing)."""
    for column, (ref_table, noun) in table.refs.items():
        ref = values.get(column)
        if ref is None or ref is msgspec.UNSET:
            continue
        found = await conn.fetchval(f"SELECT 1 FROM {ref_table} WHERE id = $1 AND account_id = $2",
                                    ref, ctx.account_id)
        if found is None:
            raise NotFound(f"{camel(column)}: {noun} not found")


class CreateAction(Action):
    response = IdResponse

    def __init__(self, table: Table) -> None:
        self.table = table
        self.path = f"{table.path}/create"
        self.tag = table.tag
        self.summary = f"Create a {table.noun}"
        self.body = table.create

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
        if getattr(body, "meta", None) is not None:
            check_meta(body.meta)
        else:
            values["meta"] = {}
        for column, make in t.defaults.items():
            if values.get(column) is None:
                values[column] = make()
        return values

    async def insert(self, conn, ctx: Context, call: Call, values: dict[str, Any]) -> None:
        t = self.table
        await require_parent(conn, t.parent, ctx, call)
        await check_refs(conn, t, ctx, values)
        await enforce_limit(conn, ctx.principal, t.noun, t.name)
        await conn.execute(t.insert_sql, *(values[c] for c in t.insert_columns))

    async def run(self, ctx: Context, call: Call) -> Any:
        values = self.values(ctx, call)
        async with ctx.pool.connection() as conn:
            await self.insert(conn, ctx, call, values)
        return IdResponse(id=values["id"])


class UpdateAction(Action):
    response = IdResponse

    def __init__(self, table: Table) -> None:
        self.table = table
        self.path = f"{table.path}/{{{table.id_param}}}/update"
        self.tag = table.tag
        self.summary = f"Update a {table.noun}"
        self.body = table.update
        self._sql: dict[tuple, str] = {}

    def changes(self, call: Call) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(columns to set, meta merge patch or None), from the fields the body sent."""
        body = call.body
        sets: dict[str, Any] = {}
        merge = None
        for name in self.table.writable:
            value = getattr(body, name)
            if value is not msgspec.UNSET:
                sets[name] = value
        meta = sets.get("meta", msgspec.UNSET)
        if meta is None:
            sets["meta"] = {}
        elif meta is not msgspec.UNSET:
            if "$update" in meta:
                if len(meta) != 1:
                    raise BadRequest('meta: "$update" cannot be combined with other keys')
                merge = meta["$update"]
                if not isinstance(merge, dict):
                    raise BadRequest('meta.$update: must be an object')
                del sets["meta"]
            else:
                check_meta(meta)
        if body.merge is not msgspec.UNSET:
            if merge is not None or "meta" in sets:
                raise BadRequest('"$update" and "meta" cannot both be sent')
            merge = body.merge
        if merge is not None:
            check_meta(merge, "$update", merge=True)
        return sets, merge

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

    async def run(self, ctx: Context, call: Call) -> Any:
        t = self.table
        sets, merge = self.changes(call)
        columns = tuple(sets)
        args: list[Any] = [call.params[t.id_param], ctx.account_id]
        if t.parent:
            args.append(call.params[t.parent.param])
        args.extend(sets[c] for c in columns)
        if merge is not None:
            args.append(merge)
        args.append(now_ms())
        async with ctx.pool.connection() as conn:
            await check_refs(conn, t, ctx, sets)
            updated = await conn.fetchval(self.sql(columns, merge is not None), *args)
        if updated is None:
            raise NotFound(f"{t.noun} not found")
        return IdResponse(id=updated)


class DeleteAction(Action):
    response = IdResponse

    def __init__(self, table: Table) -> None:
        self.table = table
        self.path = f"{table.path}/{{{table.id_param}}}/delete"
        self.tag = table.tag
        self.summary = f"Delete a {table.noun}"

    async def run(self, ctx: Context, call: Call) -> Any:
        t = self.table
        args = [call.params[t.id_param], ctx.account_id]
        if t.parent:
            args.append(call.params[t.parent.param])
        deleted = await ctx.pool.fetchval(t.delete_sql, *args)
        if deleted is None:
            raise NotFound(f"{t.noun} not found")
        return IdResponse(id=deleted)


def crud(table: Table, *, export: bool = False) -> list[Action]:
    """The standard set of actions for a table."""
    actions: list[Action] = [ListAction(table), FetchAction(table), CreateAction(table),
                             UpdateAction(table), DeleteAction(table)]
    if export:
        actions.append(ExportAction(table))
    return actions
