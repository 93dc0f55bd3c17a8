"""Blueprints: a blueprint groups the resources that carry its `blueprintId` (bots,
datasets with their records, skillsets with their abilities, secrets, files, tasks,
policies, portals), so that they can be listed, exported as one self-contained JSON
document, imported into another account (a partner's child, with run-as) and cloned.

The document: `{id, name, description, resources: {<table>: [items]}}`, each item as
its fetch route answers it, datasets with their `records`, skillsets with their
`abilities`, files with their `content` as a data: URL (up to FILE_INLINE_MAX bytes;
larger ones are exported without it). Secrets are exported by reference only: their
name, type and kind, never their value; an import wires them to the importing
account's secret of the same name, or creates one without a value for it to fill.

An import instantiates a document in the calling account, in the blueprint the route
names: fresh ids, every reference inside the document rewired to the new ids, and a
reference to anything outside the document dropped (it would name another account's
resource). It is one transaction (files' content is written after it), held to the
account's limits. Clone is an export and import in one account, into a new blueprint."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from ..actions.auth import enforce_limit
from ..actions.base import Action, Call, Context, Raw, now_ms
from ..actions.fields import Alias, Body, Description, IdResponse, Item, MetaDict, Name, Visibility
from ..actions.ids import new_id
from ..actions.query import camel
from ..actions.standard import DeleteAction, Table, crud, record, require_owned
from ..errors import BadRequest, ContentTooLarge, NotFound
from ..store import files
from . import bot, dataset, file, policy, portal, secret, skillset, task


class Blueprint(Item):
    meta: dict
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    visibility: str | None = None


class BlueprintCreate(Body):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    visibility: Visibility | None = None


TABLE = Table(name="blueprints", noun="blueprint", item=Blueprint, create=BlueprintCreate, tag="Blueprint")

LIST_MAX = 1000  # resources of one kind in blueprint/{id}/resource/list
EXPORT_MAX = 10_000  # resources of one kind in an export (records and abilities: per parent, 100,000)
CHILDREN_MAX = 100_000
BATCH = 500
FILE_INLINE_MAX = 8 * 1024 * 1024
IMPORT_MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Kind:
    """One kind of resource a blueprint holds: its table (the module's), the columns
    that refer to other kinds of the document, and its children (records, abilities)."""

    key: str  # the document's key: the table's name
    table: Table
    refs: dict[str, str] = field(default_factory=dict)  # column -> the kind it names
    children: Table | None = None
    children_key: str = ""
    child_refs: dict[str, str] = field(default_factory=dict)


KINDS = [
    Kind("secrets", secret.TABLE),
    Kind("files", file.TABLE),
    Kind("datasets", dataset.TABLE, children=dataset.RECORDS, children_key="records"),
    Kind(
        "skillsets",
        skillset.TABLE,
        children=skillset.ABILITIES,
        children_key="abilities",
        child_refs={"secret_id": "secrets", "file_id": "files", "bot_id": "bots"},
    ),
    Kind("bots", bot.TABLE, refs={"dataset_id": "datasets", "skillset_id": "skillsets"}),
    Kind("tasks", task.TABLE, refs={"bot_id": "bots"}),
    Kind("policies", policy.TABLE, refs={"bot_id": "bots"}),
    Kind("portals", portal.TABLE),
]
BY_KEY = {k.key: k for k in KINDS}
# columns every item has that an import sets itself, and ones it never carries over
_OWN = {"id", "account_id", "created_at", "updated_at", "blueprint_id"}
_DROPPED = {"contact_id", "space_id"}  # contacts and spaces are not part of a blueprint


def _wire(table: Table, row: Any) -> dict[str, Any]:
    return msgspec.to_builtins(table.row_to_item(row))


async def _rows(ctx: Context, table: Table, where: str, args: list, limit: int) -> AsyncIterator[list]:
    """Keyset batches of a table's rows in the account (`where` over $2.., after $1 the account)."""
    after = ""
    left = limit
    while left > 0:
        async with ctx.pool.connection(share=ctx.account_id) as conn:
            rows = await conn.fetch(
                f"SELECT {table.select} FROM {table.name} WHERE {table.owner} = $1 AND {where} AND id > ${len(args) + 2} "
                f"ORDER BY id LIMIT ${len(args) + 3}",
                ctx.account_id,
                *args,
                after,
                min(BATCH, left),
            )
        if not rows:
            return
        yield rows
        if len(rows) < min(BATCH, left):
            return
        left -= len(rows)
        after = rows[-1]["id"]


async def _owned_blueprint(ctx: Context, blueprint_id: str) -> Any:
    row = await ctx.pool.fetchrow(
        "SELECT id, name, description FROM blueprints WHERE id = $1 AND account_id = $2", blueprint_id, ctx.account_id
    )
    if row is None:
        raise NotFound("blueprint not found")
    return row


# --- list ---------------------------------------------------------------------------


class BlueprintResources(msgspec.Struct):
    id: str
    resources: Annotated[
        dict[str, list[dict[str, Any]]],
        msgspec.Meta(description=f"The blueprint's resources by kind (bots, datasets, ...), at most {LIST_MAX} each"),
    ]


class ListBlueprintResources(Action):
    method = "GET"
    tag = "Blueprint"
    summary = "List the resources of a blueprint, by kind"
    response = BlueprintResources

    async def run(self, ctx: Context, call: Call) -> BlueprintResources:
        blueprint_id = (await _owned_blueprint(ctx, call.params["blueprintId"]))["id"]
        resources: dict[str, list[dict[str, Any]]] = {}
        for kind in KINDS:
            items = resources.setdefault(kind.key, [])
            async for rows in _rows(ctx, kind.table, "blueprint_id = $2", [blueprint_id], LIST_MAX):
                items.extend(_wire(kind.table, r) for r in rows)
        return BlueprintResources(id=blueprint_id, resources=resources)


# --- export -------------------------------------------------------------------------


class BlueprintDocument(msgspec.Struct, omit_defaults=True):
    id: str
    resources: Annotated[
        dict[str, list[dict[str, Any]]],
        msgspec.Meta(
            description="The resources by kind (secrets, files, datasets with `records`, skillsets with "
            "`abilities`, bots, tasks, policies, portals): each item as its fetch answers it"
        ),
    ]
    name: str | None = None
    description: str | None = None


_enc = msgspec.json.encode


async def _file_content(ctx: Context, row: Any) -> str | None:
    """A file's content as a data: URL, when it has some and it is small enough to inline."""
    stored = await ctx.pool.fetchrow(
        "SELECT storage_key FROM files WHERE id = $1 AND account_id = $2 AND size IS NOT NULL AND size <= $3 "
        "AND pending IS NULL",
        row["id"],
        ctx.account_id,
        FILE_INLINE_MAX,
    )
    if stored is None:
        return None
    key = stored["storage_key"] or file.storage_key(ctx.account_id, row["id"])
    data = b"".join([chunk async for chunk in ctx.services.storage.read(key)])
    return f"data:{row['type'] or 'application/octet-stream'};base64,{base64.b64encode(data).decode()}"


async def _document(ctx: Context, blueprint: Any) -> AsyncIterator[bytes]:
    """The export, written as it is read: one kind, one batch at a time."""
    head = b'{"id":' + _enc(blueprint["id"])
    for name in ("name", "description"):
        if blueprint[name] is not None:
            head += b',"' + name.encode() + b'":' + _enc(blueprint[name])
    yield head + b',"resources":{'
    for n, kind in enumerate(KINDS):
        yield (b"," if n else b"") + _enc(kind.key) + b":["
        first = True
        async for rows in _rows(ctx, kind.table, "blueprint_id = $2", [blueprint["id"]], EXPORT_MAX):
            for r in rows:
                item = _wire(kind.table, r)
                if kind.key == "files" and (content := await _file_content(ctx, r)) is not None:
                    item["content"] = content
                if kind.children is None:
                    yield (b"" if first else b",") + _enc(item)
                else:
                    yield (b"" if first else b",") + _enc(item)[:-1] + b"," + _enc(kind.children_key) + b":["
                    parent = kind.children.parent
                    assert parent is not None
                    sep = b""
                    async for batch in _rows(ctx, kind.children, f"{parent.column} = $2", [r["id"]], CHILDREN_MAX):
                        yield sep + b",".join(_enc(_wire(kind.children, c)) for c in batch)
                        sep = b","
                    yield b"]}"
                first = False
        yield b"]"
    yield b"}}"


class ExportBlueprintResources(Action):
    method = "GET"
    tag = "Blueprint"
    summary = "Export a blueprint and its resources as one self-contained JSON document (secrets without values)"
    response = BlueprintDocument

    async def run(self, ctx: Context, call: Call) -> Raw:
        blueprint = await _owned_blueprint(ctx, call.params["blueprintId"])
        return Raw(200, [(b"content-type", b"application/json")], _document(ctx, blueprint))


# --- import -------------------------------------------------------------------------


class BlueprintImport(Body):
    resource: Annotated[
        dict[str, Any],
        msgspec.Meta(description="A document of blueprint/{id}/resource/export (or its `resources` object)"),
    ]


class BlueprintImported(msgspec.Struct):
    id: str
    resources: Annotated[
        dict[str, dict[str, str]],
        msgspec.Meta(description="By kind, each imported resource's new id by its id in the document"),
    ]


def _items(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    resources = doc.get("resources", doc)
    if not isinstance(resources, dict):
        raise BadRequest("resource.resources: an object of lists by kind")
    out: dict[str, list[dict[str, Any]]] = {}
    for key, items in resources.items():
        if key not in BY_KEY:
            raise BadRequest(f"resource.resources.{key[:40]}: not a kind of blueprint resource ({', '.join(BY_KEY)})")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise BadRequest(f"resource.resources.{key}: a list of objects")
        if len(items) > EXPORT_MAX:
            raise BadRequest(f"resource.resources.{key}: at most {EXPORT_MAX} items")
        out[key] = items
    return out


def _content(ctx: Context, content: Any, where: str) -> tuple[str, bytes] | None:
    """A file item's content (type, bytes), refused now if the file store would refuse it,
    before anything is written."""
    decoded = _decode_content(content, where)
    if decoded is not None:
        try:
            files.check_content_type(decoded[0])
        except BadRequest as exc:
            raise BadRequest(f"{where}.content: {exc.message}") from None
        if len(decoded[1]) > ctx.services.settings.file_max_bytes:
            raise ContentTooLarge(f"{where}.content: larger than BOTKIT_FILE_MAX_BYTES")
    return decoded


def _decode_content(content: Any, where: str) -> tuple[str, bytes] | None:
    if content is None:
        return None
    head, sep, data = content.partition(",") if isinstance(content, str) else ("", "", "")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise BadRequest(f"{where}.content: a data: URL (data:<type>;base64,...)")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}.content: not valid base64") from None
    return head[5:-7] or "application/octet-stream", raw


@dataclass
class _Plan:
    """What an import inserts: rows per table, in order, and files' content to write."""

    ids: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> old id -> new id
    rows: list[tuple[Table, dict[str, Any]]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # noun -> rows (for the limits)
    contents: list[tuple[str, str, bytes, str | None]] = field(default_factory=list)  # file id, type, bytes, name
    secrets: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # new id, values (unless reused)


def _values(table: Table, item: dict[str, Any], where: str, ctx: Context, new: str, extra: dict[str, Any]) -> dict:
    """An item of the document as a row: validated by the table's create struct."""
    body = {k: v for k, v in item.items() if k not in ("id", "createdAt", "updatedAt", "blueprintId")}
    try:
        created: Any = msgspec.convert(body, table.create)
    except (msgspec.ValidationError, ValueError) as exc:
        raise BadRequest(f"{where}: {exc}") from None
    now = now_ms()
    values: dict[str, Any] = {"id": new, table.owner: ctx.account_id, "created_at": now, "updated_at": now, **extra}
    for name in table.writable:
        if name not in values:
            values[name] = getattr(created, name)
    if values.get("meta") is None:
        values["meta"] = {}
    for column, make in table.defaults.items():
        if values.get(column) is None:
            values[column] = make()
    return values


def _rewired(item: dict[str, Any], refs: dict[str, str], ids: dict[str, dict[str, str]]) -> dict[str, Any]:
    """An item with its references to the document's resources rewired to their new
    ids, and every other reference (and its contact) dropped."""
    out = dict(item)
    for column in (*refs, *_DROPPED):
        key = camel(column)
        if key in out:
            target = refs.get(column)
            out[key] = ids.get(target, {}).get(out[key]) if target and isinstance(out[key], str) else None
    return out


def plan(ctx: Context, blueprint_id: str, doc: dict[str, Any]) -> _Plan:
    p = _Plan()
    items = _items(doc)
    for kind in KINDS:  # every id first, so references in any direction rewire
        p.ids[kind.key] = {}
        for n, item in enumerate(items.get(kind.key, [])):
            old = item.get("id")
            old = old if isinstance(old, str) else new_id()
            if old in p.ids[kind.key]:
                raise BadRequest(f"resource.resources.{kind.key}[{n}].id: {old[:64]!r} is there twice")
            p.ids[kind.key][old] = new_id()
    for kind in KINDS:
        for n, (item, new) in enumerate(zip(items.get(kind.key, []), p.ids[kind.key].values(), strict=False)):
            where = f"resource.resources.{kind.key}[{n}]"
            values = _values(
                kind.table, _rewired(item, kind.refs, p.ids), where, ctx, new, {"blueprint_id": blueprint_id}
            )
            if kind.key == "secrets":
                values.pop("value", None)  # a document never carries one
                p.secrets.append((new, values))
                continue
            if kind.key == "files" and (content := _content(ctx, item.get("content"), where)) is not None:
                p.contents.append((new, content[0], content[1], values.get("name")))
            if kind.key == "tasks":
                values["status"], values["outcome"] = "idle", "pending"
            p.rows.append((kind.table, values))
            p.counts[kind.table.noun] = p.counts.get(kind.table.noun, 0) + 1
            children = item.get(kind.children_key) if kind.children is not None else None
            if kind.children is None or children is None:
                continue
            if not isinstance(children, list) or len(children) > CHILDREN_MAX:
                raise BadRequest(f"{where}.{kind.children_key}: a list of at most {CHILDREN_MAX} objects")
            parent = kind.children.parent
            assert parent is not None
            for m, child in enumerate(children):
                if not isinstance(child, dict):
                    raise BadRequest(f"{where}.{kind.children_key}[{m}]: an object")
                child_values = _values(
                    kind.children,
                    _rewired(child, kind.child_refs, p.ids),
                    f"{where}.{kind.children_key}[{m}]",
                    ctx,
                    new_id(),
                    {parent.column: new},
                )
                if "blueprint_id" in kind.children.columns:
                    child_values["blueprint_id"] = blueprint_id
                p.rows.append((kind.children, child_values))
                p.counts[kind.children.noun] = p.counts.get(kind.children.noun, 0) + 1
    return p


async def _wire_secrets(conn, ctx: Context, p: _Plan) -> None:
    """A secret of the document is the account's secret of the same name when it has
    one (the references to it are rewired there), else a new secret with no value."""
    moved: dict[str, str] = {}
    for new, values in p.secrets:
        existing = None
        if values.get("name"):
            existing = await conn.fetchval(
                "SELECT id FROM secrets WHERE account_id = $1 AND name = $2 AND contact_id IS NULL ORDER BY id LIMIT 1",
                ctx.account_id,
                values["name"],
            )
        if existing is not None:
            moved[new] = existing
            continue
        values["value"] = None
        p.rows.insert(0, (secret.TABLE, values))
    if moved:
        for old, new in p.ids["secrets"].items():
            p.ids["secrets"][old] = moved.get(new, new)
        for _, values in p.rows:
            if values.get("secret_id") in moved:
                values["secret_id"] = moved[values["secret_id"]]


async def instantiate(ctx: Context, blueprint_id: str, doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Import a document into the account's blueprint: the new ids by kind."""
    p = plan(ctx, blueprint_id, doc)
    async with ctx.pool.connection(share=ctx.account_id) as conn, conn.transaction():
        await require_owned(conn, "blueprints", blueprint_id, ctx.account_id, "blueprint not found")
        await _wire_secrets(conn, ctx, p)
        for noun, n in p.counts.items():
            table = next(t for t, _ in p.rows if t.noun == noun)
            await enforce_limit(conn, ctx.principal, noun, table.name, adding=n)
        by_table: dict[str, tuple[Table, list[dict[str, Any]]]] = {}
        for table, values in p.rows:
            by_table.setdefault(table.name, (table, []))[1].append(values)
        for table, rows in by_table.values():
            columns = list(dict.fromkeys(c for r in rows for c in r))
            marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
            await conn.executemany(
                f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})",
                [[r.get(c) for c in columns] for r in rows],
            )
        for table, rows in by_table.values():
            if table.noun == "task":
                for r in rows:
                    if r.get("schedule"):
                        await task.plan(conn, r["id"], r["schedule"], r.get("timezone"))
        await record(conn, ctx, TABLE, "import", blueprint_id, {}, {"count": len(p.rows)})
    for file_id, content_type, data, name in p.contents:
        await file.store(ctx, file_id, _chunks(data), content_type, name)
    return {k: v for k, v in p.ids.items() if v}


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


class ImportBlueprintResources(Action):
    tag = "Blueprint"
    summary = (
        "Import a blueprint document into this blueprint (of this account, or a child's with run-as): fresh ids, "
        "references rewired"
    )
    body = BlueprintImport
    response = BlueprintImported
    json_max_bytes = IMPORT_MAX_BYTES

    async def run(self, ctx: Context, call: Call) -> BlueprintImported:
        blueprint_id = call.params["blueprintId"]
        await _owned_blueprint(ctx, blueprint_id)
        return BlueprintImported(id=blueprint_id, resources=await instantiate(ctx, blueprint_id, call.body.resource))


# --- clone and delete -----------------------------------------------------------------


class BlueprintCloned(msgspec.Struct):
    id: str
    resources: Annotated[
        dict[str, dict[str, str]],
        msgspec.Meta(description="By kind, each cloned resource's new id by the original's id"),
    ]


class CloneBlueprint(Action):
    tag = "Blueprint"
    summary = "Clone a blueprint with its resources (a new blueprint; fresh ids, references rewired)"
    body = Body
    response = BlueprintCloned

    async def run(self, ctx: Context, call: Call) -> BlueprintCloned:
        original = await ctx.pool.fetchrow(  # read once: the original may go while it is copied
            "SELECT id, alias, name, description, meta, visibility FROM blueprints WHERE id = $1 AND account_id = $2",
            call.params["blueprintId"],
            ctx.account_id,
        )
        if original is None:
            raise NotFound("blueprint not found")
        parts, size = [], 0
        async for part in _document(ctx, original):  # held in memory: as an import's body is, bounded
            size += len(part)
            if size > IMPORT_MAX_BYTES:
                raise ContentTooLarge(f"the blueprint is larger than {IMPORT_MAX_BYTES >> 20} MiB as a document")
            parts.append(part)
        doc = msgspec.json.decode(b"".join(parts))
        clone_id, now = new_id(), now_ms()
        await ctx.pool.execute(
            "INSERT INTO blueprints (id, account_id, alias, name, description, meta, visibility, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            clone_id,
            ctx.account_id,
            original["alias"],
            original["name"],
            original["description"],
            original["meta"],
            original["visibility"],
            now,
        )
        try:
            resources = await instantiate(ctx, clone_id, doc)
        except BaseException:  # a file's content could not be written: the clone goes whole
            await delete_with_resources(ctx, clone_id)
            raise
        return BlueprintCloned(id=clone_id, resources=resources)


class BlueprintDelete(Body):
    delete_resources: bool = False


class DeleteBlueprint(DeleteAction):
    """With `deleteResources`, the blueprint's resources go too (their children cascade;
    files' content is deleted after the rows)."""

    def __init__(self, path: str) -> None:
        super().__init__(TABLE, path)
        self.body = BlueprintDelete

    async def run(self, ctx: Context, call: Call) -> Any:
        if not call.body.delete_resources:
            return await super().run(ctx, call)
        await delete_with_resources(ctx, call.params["blueprintId"])
        return IdResponse(id=call.params["blueprintId"])


async def delete_with_resources(ctx: Context, blueprint_id: str) -> None:
    """Delete a blueprint and its resources (their children cascade), then the files' content."""
    async with ctx.pool.connection() as conn, conn.transaction():
        await require_owned(conn, "blueprints", blueprint_id, ctx.account_id, "blueprint not found")
        keys = await conn.fetch(
            "DELETE FROM files WHERE account_id = $1 AND blueprint_id = $2 RETURNING id, storage_key",
            ctx.account_id,
            blueprint_id,
        )
        for kind in KINDS:
            if kind.key != "files":
                await conn.execute(
                    f"DELETE FROM {kind.table.name} WHERE account_id = $1 AND blueprint_id = $2",
                    ctx.account_id,
                    blueprint_id,
                )
        await conn.execute("DELETE FROM blueprints WHERE id = $1", blueprint_id)
        await record(conn, ctx, TABLE, "delete", blueprint_id, {}, {"resources": True})
    for k in keys:
        await ctx.services.storage.delete(k["storage_key"] or file.storage_key(ctx.account_id, k["id"]))


ACTIONS: list[Action] = [
    *crud(
        TABLE,
        list="/blueprint/list",
        fetch="/blueprint/{blueprintId}/fetch",
        create="/blueprint/create",
        update="/blueprint/{blueprintId}/update",
        delete=DeleteBlueprint("/blueprint/{blueprintId}/delete"),
    ),
    CloneBlueprint("/blueprint/{blueprintId}/clone"),
    ExportBlueprintResources("/blueprint/{blueprintId}/resource/export"),
    ImportBlueprintResources("/blueprint/{blueprintId}/resource/import"),
    ListBlueprintResources("/blueprint/{blueprintId}/resource/list"),
]
