"""Spaces: named workspaces of files, and `space/{spaceId}/storage/...` over them.

A space's files are rows of `space_files` (path, type, size, checksum), listed by
path through the unique (space_id, path) index; folders are implicit (a folder is
there while a file is under it). The bytes are in the file storage (store/files.py)
under `<accountId>/spaces/<spaceId>/<blob>`, a fresh blob id per write, never the
path: so a move is one UPDATE, an overwrite or copy is complete before the row
names it (a failed write leaves the old content and no new row), and deleting a
space deletes its folder of blobs.

Paths (the route's rest, `storage/download/docs/a.txt`, and `destinationPath`):
segments joined by `/`, none empty, `.` or `..`, no leading `/`, no backslash or
control character, at most PATH_MAX characters and SEGMENT_MAX a segment; else
BAD_REQUEST. A file cannot sit where a folder is, nor under a file (CONFLICT).

Uploads take what `file/{fileId}/upload` takes but the presigned form (a data: or
http(s): URL, a multipart form, the bytes themselves; resources/file.py `uploaded`),
bounded by BOTKIT_FILE_MAX_BYTES. A download answers the bytes (ranges, ETag), or
with `Accept: application/json` `{id, url}`: the bucket's presigned GET, or for the
local folder botkit's own signed URL (`space/{spaceId}/storage/signed/{path}`)."""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from typing import Annotated, Any

import msgspec

from ..actions.base import Action, Call, Context, Raw, now_ms
from ..actions.fields import Alias, Body, Description, IdResponse, Item, MetaDict, Name, Ref
from ..actions.ids import new_id
from ..actions.standard import DeleteAction, Table, crud, record
from ..errors import BadRequest, Conflict, LimitsReached, NotFound
from . import file as files

log = logging.getLogger("botkit")


class Space(Item):
    meta: dict
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    blueprint_id: str | None = None
    contact_id: str | None = None


class SpaceCreate(Body):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    blueprint_id: Ref | None = None
    contact_id: Ref | None = None


TABLE = Table(
    name="spaces",
    noun="space",
    item=Space,
    create=SpaceCreate,
    tag="Space",
    refs={"blueprint_id": ("blueprints", "blueprint"), "contact_id": ("contacts", "contact")},
)


# --- paths ------------------------------------------------------------------------------

PATH_MAX = 1024  # characters of a whole path
SEGMENT_MAX = 255  # characters of one segment (a file system's name limit)
FILES_MAX = 10_000  # files in one space: bounds a folder's move and delete
LIST_TAKE_DEFAULT = 100
LIST_TAKE_MAX = 1000  # entries are small (S3 lists 1,000 keys a page)

# a segment: 1 to SEGMENT_MAX of the allowed characters, but not "." or ".." (spelled
# out without a lookahead, and without naming surrogates — valid UTF-8 holds none, and
# check_path refuses them — both of which schema generators' regex engines refuse)
_CHAR = r"[^/\\\x00-\x1f\x7f]"
_NOT_DOT = r"[^./\\\x00-\x1f\x7f]"
_SEGMENT = (
    rf"(?:{_NOT_DOT}{_CHAR}{{0,{SEGMENT_MAX - 1}}}|\.{_NOT_DOT}{_CHAR}{{0,{SEGMENT_MAX - 2}}}"
    rf"|\.\.{_CHAR}{{1,{SEGMENT_MAX - 2}}})"
)
PATH_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*(?![\s\S])"
_PATH = re.compile(PATH_PATTERN)
_BAD_CHARACTER = re.compile(r"[\\\x00-\x1f\x7f\ud800-\udfff]")

SpacePath = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=PATH_MAX,
        pattern=PATH_PATTERN,
        description=(
            f"A file's path in the space: segments joined by '/', none empty, '.' or '..', no leading '/', "
            f"no backslash or control character; at most {PATH_MAX} characters, {SEGMENT_MAX} a segment"
        ),
    ),
]


def _path_problem(path: str) -> str | None:
    if not path:
        return "is empty"
    if len(path) > PATH_MAX:
        return f"is longer than {PATH_MAX} characters"
    if path.startswith("/"):
        return "is absolute (starts with /)"
    if _BAD_CHARACTER.search(path):
        return "has a backslash or a control character"
    for segment in path.split("/"):
        if not segment:
            return "has an empty segment"
        if segment in (".", ".."):
            return f"has a {segment!r} segment"
        if len(segment) > SEGMENT_MAX:
            return f"has a segment longer than {SEGMENT_MAX} characters"
    return None


def check_path(path: str, where: str = "path") -> str:
    """`path` when a space may hold a file there; else BadRequest naming the problem."""
    problem = _path_problem(path)
    if problem or not _PATH.match(path):
        raise BadRequest(f"{where} {path[:100]!r} {problem or 'is not a valid path'}")
    return path


def _folder_range(path: str) -> tuple[str, str]:
    """The paths under the folder `path`: `lo <= p < hi` in byte order ('0' follows '/')."""
    return path + "/", path + "0"


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def blob_key(account_id: str, space_id: str, blob: str) -> str:
    return f"{account_id}/spaces/{space_id}/{blob}"


def space_folder(account_id: str, space_id: str) -> str:
    return f"{account_id}/spaces/{space_id}"


# --- the table's SQL ------------------------------------------------------------------------


async def _owned(conn, ctx: Context, space_id: str, *, lock: bool = False) -> None:
    """404 unless the space is the caller's; with lock, storage changes of the space
    wait for each other (and the space's delete for them) until the transaction ends."""
    sql = "SELECT 1 FROM spaces WHERE id = $1 AND account_id = $2" + (" FOR NO KEY UPDATE" if lock else "")
    if await conn.fetchval(sql, space_id, ctx.account_id) is None:
        raise NotFound("space not found")


async def _file(conn, space_id: str, path: str) -> Any:
    return await conn.fetchrow(
        "SELECT id, path, blob, type, size, checksum, created_at, updated_at FROM space_files "
        "WHERE space_id = $1 AND path = $2",
        space_id,
        path,
    )


async def _is_folder(conn, space_id: str, path: str) -> bool:
    lo, hi = _folder_range(path)
    sql = "SELECT 1 FROM space_files WHERE space_id = $1 AND path >= $2 AND path < $3 LIMIT 1"
    return await conn.fetchval(sql, space_id, lo, hi) is not None


async def _check_place(conn, space_id: str, path: str) -> None:
    """A file may go to `path`: no folder is there and no file is above it."""
    if await _is_folder(conn, space_id, path):
        raise Conflict(f"{path[:100]!r} is a folder")
    above = await conn.fetchval(
        "SELECT path FROM space_files WHERE space_id = $1 AND path = ANY($2::text[]) LIMIT 1",
        space_id,
        _ancestors(path),
    )
    if above is not None:
        raise Conflict(f"{above[:100]!r} is a file, not a folder")


async def _put(conn, ctx: Context, space_id: str, path: str, blob: str, type_: str, size: int, checksum: str):
    """The file at `path` names this blob now (the caller holds the space's lock in a
    transaction); returns (the file's id, the blob it named before or None)."""
    now = now_ms()
    old = await _file(conn, space_id, path)
    if old is not None:
        await conn.execute(
            "UPDATE space_files SET blob = $2, type = $3, size = $4, checksum = $5, updated_at = $6 WHERE id = $1",
            old["id"],
            blob,
            type_,
            size,
            checksum,
            now,
        )
        return old["id"], old["blob"]
    await _check_place(conn, space_id, path)
    count = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM space_files WHERE space_id = $1 LIMIT $2) t", space_id, FILES_MAX
    )
    if count >= FILES_MAX:
        raise LimitsReached(f"a space holds at most {FILES_MAX} files")
    file_id = new_id()
    await conn.execute(
        "INSERT INTO space_files (id, account_id, space_id, path, blob, type, size, checksum, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        file_id,
        ctx.account_id,
        space_id,
        path,
        blob,
        type_,
        size,
        checksum,
        now,
    )
    return file_id, None


async def _event(conn, ctx: Context, space_id: str, action: str, **meta: Any) -> None:
    await ctx.services.events.record(
        conn, ctx.account_id, f"space.storage.{action}", meta={"spaceId": space_id, **meta}, refs={}
    )


async def _drop_blobs(ctx: Context, space_id: str, blobs: list[str]) -> None:
    """Delete blobs no row names any more, a few at a time; a failure leaves bytes no row
    names (logged), never a row without its bytes."""
    storage = ctx.services.storage

    async def drop(blob: str) -> None:
        try:
            await storage.delete(blob_key(ctx.account_id, space_id, blob))
        except Exception as exc:
            log.warning("space %s: deleting the blob %s failed: %s", space_id, blob, exc)

    for i in range(0, len(blobs), 32):
        await asyncio.gather(*(drop(b) for b in blobs[i : i + 32]))


async def _stored(ctx: Context, space_id: str, path: str, blob: str, type_: str, written: Any, action: str) -> str:
    """Name the written blob by `path` (or delete it when that fails); the file's id."""
    try:
        async with ctx.pool.connection() as conn, conn.transaction():
            await _owned(conn, ctx, space_id, lock=True)
            file_id, old = await _put(conn, ctx, space_id, path, blob, type_, written.size, "sha256:" + written.sha256)
            await _event(conn, ctx, space_id, action, path=path, size=written.size)
    except BaseException:
        await asyncio.shield(_drop_blobs(ctx, space_id, [blob]))
        raise
    if old is not None:
        await _drop_blobs(ctx, space_id, [old])
    return file_id


# --- the space itself --------------------------------------------------------------------


class DeleteSpace(DeleteAction):
    """The space and its file rows in one transaction; then its bytes (a failure there
    leaves bytes no row names, which is logged)."""

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        space_id = call.params["spaceId"]
        async with ctx.pool.connection() as conn, conn.transaction():
            deleted = await conn.fetchval(
                "DELETE FROM spaces WHERE id = $1 AND account_id = $2 RETURNING id", space_id, ctx.account_id
            )
            if deleted is None:
                raise NotFound("space not found")
            await record(conn, ctx, TABLE, "delete", space_id, {})
        try:
            await ctx.services.storage.delete_prefix(space_folder(ctx.account_id, space_id))
        except Exception as exc:
            log.warning("space %s: deleting its files' content failed: %s", space_id, exc)
        return IdResponse(id=space_id)


# --- storage ------------------------------------------------------------------------------


class StorageAction(Action):
    tag = "Space"
    rest_param = True  # transport/routes.py: {path} takes the rest of the route, slashes and all
    path_types = {"path": SpacePath}


class StorageEntry(msgspec.Struct, rename="camel", omit_defaults=True):
    path: str  # from the space's root
    size: int  # 0 for a folder
    is_directory: bool
    id: str | None = None  # a file's (folders have none)
    updated_at: int | None = None  # a file's


class StorageList(msgspec.Struct, rename="camel", omit_defaults=True):
    items: list[StorageEntry]
    next_token: str | None = None  # absent on the last page


NextToken = Annotated[
    str,
    msgspec.Meta(
        max_length=PATH_MAX + 1, description="The nextToken of the previous page (a path, a folder's ending in /)"
    ),
]


class StorageListQuery(msgspec.Struct, kw_only=True, rename="camel"):
    path: SpacePath | None = None  # the folder, as the Python SDK sends it (`storage/list?path=docs`)
    recursive: bool = False
    next_token: NextToken | None = None
    take: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            description=(
                f"Entries per page (default {LIST_TAKE_DEFAULT}; more than {LIST_TAKE_MAX} is taken as {LIST_TAKE_MAX})"
            ),
        ),
    ] = LIST_TAKE_DEFAULT


def _entry(row: Any) -> StorageEntry:
    return StorageEntry(
        path=row["path"], size=row["size"], is_directory=False, id=row["id"], updated_at=row["updated_at"]
    )


class ListStorage(StorageAction):
    """A folder's files and folders (by path, byte order), or with `recursive` every file
    under it; `nextToken` pages on. A file's path lists that file."""

    method = "GET"
    summary = (
        "List a folder of the space (its files and folders), or with recursive=true every file under it; "
        "paged by nextToken"
    )
    query = StorageListQuery
    response = StorageList

    async def run(self, ctx: Context, call: Call) -> StorageList:
        q = call.query
        given = call.params.get("path")
        if given is not None and q.path is not None and given != q.path:
            raise BadRequest("path: given in the route and in the query")
        folder = check_path(given) if given is not None else q.path
        take = min(q.take, LIST_TAKE_MAX)
        space_id = call.params["spaceId"]
        async with ctx.pool.connection() as conn:
            await _owned(conn, ctx, space_id)
            if folder is not None and q.next_token is None:
                row = await _file(conn, space_id, folder)
                if row is not None:
                    return StorageList(items=[_entry(row)])
            entries = await self._entries(conn, space_id, folder, q, take)
            if not entries and folder is not None and q.next_token is None:
                raise NotFound(f"no file or folder {folder[:100]!r}")
        if len(entries) <= take:
            return StorageList(items=entries)
        entries = entries[:take]
        last = entries[-1]
        return StorageList(items=entries, next_token=last.path + "/" if last.is_directory else last.path)

    async def _entries(self, conn, space_id: str, folder: str | None, q: Any, take: int) -> list[StorageEntry]:
        """Up to take + 1 entries (one more tells that there is a next page). A folder's
        entry stands for the files under it: the next query starts past them."""
        prefix, hi = _folder_range(folder) if folder is not None else ("", None)
        lo, inclusive = prefix, True
        token = q.next_token
        if token:
            if not token.startswith(prefix) or _path_problem(token.removesuffix("/")):
                raise BadRequest("nextToken: not a token of this listing")
            lo, inclusive = (token[:-1] + "0", True) if token.endswith("/") else (token, False)
        entries: list[StorageEntry] = []
        while len(entries) <= take:
            limit = take + 1 - len(entries)
            sql = (
                "SELECT id, path, size, updated_at FROM space_files WHERE space_id = $1 "
                f"AND path {'>=' if inclusive else '>'} $2 "
                + ("AND path < $4 " if hi else "")
                + "ORDER BY path LIMIT $3"
            )
            rows = await conn.fetch(sql, space_id, lo, limit, *([hi] if hi else []))
            jumped = False
            for row in rows:
                rest = row["path"][len(prefix) :]
                if not q.recursive and "/" in rest:
                    sub = prefix + rest.split("/", 1)[0]
                    entries.append(StorageEntry(path=sub, size=0, is_directory=True))
                    lo, inclusive = sub + "0", True
                    jumped = True
                    break
                entries.append(_entry(row))
                lo, inclusive = row["path"], False
            if not jumped and len(rows) < limit:
                break
        return entries


class UploadResult(msgspec.Struct):
    id: str
    path: str


class UploadBody(Body):
    file: files.ContentUrl


class UploadStorage(StorageAction):
    summary = (
        "Upload a file to the path (replacing one there): a data: or https: URL ({file}), a multipart form "
        f"(field `file`) or the bytes themselves; at most {FILES_MAX} files a space"
    )
    body = UploadBody
    body_types = ("multipart/form-data", "application/octet-stream")
    response = UploadResult
    streams_body = True
    json_max_bytes = files.UploadFile.json_max_bytes

    async def run(self, ctx: Context, call: Call) -> UploadResult:
        space_id, path = call.params["spaceId"], check_path(call.params["path"])
        async with ctx.pool.connection() as conn:  # before any byte is read
            await _owned(conn, ctx, space_id)
            await _check_place(conn, space_id, path)
        blob = new_id()
        async with files.uploaded(ctx, call) as content:
            written = await ctx.services.storage.write(
                blob_key(ctx.account_id, space_id, blob),
                content.chunks,
                limit=ctx.services.settings.file_max_bytes,
                content_type=content.type,
            )
        file_id = await _stored(ctx, space_id, path, blob, content.type, written, "upload")
        return UploadResult(id=file_id, path=path)


class DownloadResult(msgspec.Struct):
    id: str
    url: str


async def _readable(ctx: Context, space_id: str, path: str) -> Any:
    async with ctx.pool.connection() as conn:
        row = await conn.fetchrow(
            "SELECT f.id, f.path, f.blob, f.type, f.size, f.checksum, f.updated_at FROM space_files f "
            "JOIN spaces s ON s.id = f.space_id WHERE f.space_id = $1 AND f.path = $2 AND s.account_id = $3",
            space_id,
            path,
            ctx.account_id,
        )
        if row is None:
            await _owned(conn, ctx, space_id)
            raise NotFound(f"no file {path[:100]!r}")
    return row


def _content_row(ctx: Context, space_id: str, row: Any) -> dict[str, Any]:
    """The row resources/file.py's content_answer serves."""
    return {
        "id": row["id"],
        "name": row["path"].rsplit("/", 1)[-1],
        "type": row["type"],
        "size": row["size"],
        "checksum": row["checksum"],
        "uploaded_at": row["updated_at"],
        "storage_key": blob_key(ctx.account_id, space_id, row["blob"]),
    }


_SIGNED = "space-download"  # the operation a space's signed URL allows


class DownloadStorage(StorageAction):
    method = "GET"
    summary = (
        "Download a file of the space (ranges, ETag), or with `Accept: application/json` "
        "a short-lived signed URL `{id, url}`"
    )
    response = DownloadResult
    raw_response = "application/octet-stream"

    async def run(self, ctx: Context, call: Call) -> Any:
        space_id, path = call.params["spaceId"], check_path(call.params["path"])
        row = await _readable(ctx, space_id, path)
        if b"application/json" not in (call.headers or {}).get(b"accept", b""):
            return await files.content_answer(ctx, call, _content_row(ctx, space_id, row))
        seconds = ctx.services.settings.file_url_seconds
        key = blob_key(ctx.account_id, space_id, row["blob"])
        name = files.safe_name(row["path"].rsplit("/", 1)[-1], row["id"])
        url = await ctx.services.storage.presign_get(key, seconds, name, row["type"])
        if url is None:
            query = files.signed_query(ctx, _SIGNED, f"{space_id}/{path}")
            quoted = "/".join(urllib.parse.quote(s, safe="") for s in path.split("/"))
            url = f"{files.base_url(ctx, call)}/v1/space/{space_id}/storage/signed/{quoted}?{query}"
        return DownloadResult(id=row["id"], url=url)


class GetSignedStorage(StorageAction):
    method = "GET"
    summary = "Download a file of the space from the signed URL storage/download handed out (no token)"
    query = files.Signed
    public = True
    raw_response = "application/octet-stream"

    async def run(self, ctx: Context, call: Call) -> Raw:
        space_id, path, s = call.params["spaceId"], check_path(call.params["path"]), call.query
        files.check_signed(ctx, _SIGNED, f"{space_id}/{path}", s)
        own = files.signed_for(ctx, s)
        row = await _readable(own, space_id, path)
        return await files.content_answer(own, call, _content_row(own, space_id, row))


class PathResult(msgspec.Struct):
    path: str


class Destination(Body):
    destination_path: SpacePath


class CopyStorage(StorageAction):
    summary = "Copy a file of the space to destinationPath (replacing a file there)"
    body = Destination
    response = PathResult

    async def run(self, ctx: Context, call: Call) -> PathResult:
        space_id, path = call.params["spaceId"], check_path(call.params["path"])
        dest = check_path(call.body.destination_path, "destinationPath")
        async with ctx.pool.connection() as conn:
            await _owned(conn, ctx, space_id)
            source = await _file(conn, space_id, path)
            if source is None:
                if await _is_folder(conn, space_id, path):
                    raise BadRequest(f"{path[:100]!r} is a folder: copy copies one file")
                raise NotFound(f"no file {path[:100]!r}")
            if dest == path:
                return PathResult(path=dest)
            await _check_place(conn, space_id, dest)
        storage, blob = ctx.services.storage, new_id()
        chunks = storage.read(blob_key(ctx.account_id, space_id, source["blob"]))
        written = await storage.write(
            blob_key(ctx.account_id, space_id, blob),
            chunks,
            limit=ctx.services.settings.file_max_bytes,
            content_type=source["type"],
        )
        await _stored(ctx, space_id, dest, blob, source["type"], written, "copy")
        return PathResult(path=dest)


class MoveStorage(StorageAction):
    summary = (
        "Move a file or folder of the space to destinationPath (a file replaces a file there; "
        "a folder needs a free place)"
    )
    body = Destination
    response = PathResult

    async def run(self, ctx: Context, call: Call) -> PathResult:
        space_id, path = call.params["spaceId"], check_path(call.params["path"])
        dest = check_path(call.body.destination_path, "destinationPath")
        replaced: list[str] = []
        async with ctx.pool.connection() as conn, conn.transaction():
            await _owned(conn, ctx, space_id, lock=True)
            source = await _file(conn, space_id, path)
            if dest == path:
                if source is None and not await _is_folder(conn, space_id, path):
                    raise NotFound(f"no file or folder {path[:100]!r}")
                return PathResult(path=dest)
            if source is not None:
                await _check_place(conn, space_id, dest)
                old = await conn.fetchval(
                    "DELETE FROM space_files WHERE space_id = $1 AND path = $2 RETURNING blob", space_id, dest
                )
                replaced = [old] if old else []
                await conn.execute(
                    "UPDATE space_files SET path = $2, updated_at = $3 WHERE id = $1", source["id"], dest, now_ms()
                )
            else:
                await self._move_folder(conn, space_id, path, dest)
            await _event(conn, ctx, space_id, "move", path=path, destinationPath=dest)
        await _drop_blobs(ctx, space_id, replaced)
        return PathResult(path=dest)

    async def _move_folder(self, conn, space_id: str, path: str, dest: str) -> None:
        lo, hi = _folder_range(path)
        longest = await conn.fetchval(
            "SELECT max(length(path)) FROM space_files WHERE space_id = $1 AND path >= $2 AND path < $3",
            space_id,
            lo,
            hi,
        )
        if longest is None:
            raise NotFound(f"no file or folder {path[:100]!r}")
        if dest.startswith(lo):
            raise BadRequest("destinationPath: a folder cannot move into itself")
        if longest - len(path) + len(dest) > PATH_MAX:
            raise BadRequest(f"destinationPath: the folder's paths would be longer than {PATH_MAX} characters")
        if await _file(conn, space_id, dest) is not None or await _is_folder(conn, space_id, dest):
            raise Conflict(f"{dest[:100]!r} exists")
        await _check_place(conn, space_id, dest)
        await conn.execute(
            "UPDATE space_files SET path = $4 || substr(path, $5), updated_at = $6 "
            "WHERE space_id = $1 AND path >= $2 AND path < $3",
            space_id,
            lo,
            hi,
            dest,
            len(path) + 1,
            now_ms(),
        )


class DeleteBody(Body):
    recursive: bool = False


class DeleteStorage(StorageAction):
    summary = "Delete a file of the space, or with recursive: true a folder and everything under it"
    body = DeleteBody
    response = PathResult

    async def run(self, ctx: Context, call: Call) -> PathResult:
        space_id, path = call.params["spaceId"], check_path(call.params["path"])
        async with ctx.pool.connection() as conn, conn.transaction():
            await _owned(conn, ctx, space_id, lock=True)
            blob = await conn.fetchval(
                "DELETE FROM space_files WHERE space_id = $1 AND path = $2 RETURNING blob", space_id, path
            )
            blobs = [blob] if blob is not None else []
            if not blobs:
                if not call.body.recursive:
                    if await _is_folder(conn, space_id, path):
                        raise Conflict(f"{path[:100]!r} is a folder: delete it with recursive: true")
                    raise NotFound(f"no file or folder {path[:100]!r}")
                lo, hi = _folder_range(path)
                rows = await conn.fetch(
                    "DELETE FROM space_files WHERE space_id = $1 AND path >= $2 AND path < $3 RETURNING blob",
                    space_id,
                    lo,
                    hi,
                )
                blobs = [r["blob"] for r in rows]
                if not blobs:
                    raise NotFound(f"no file or folder {path[:100]!r}")
            await _event(conn, ctx, space_id, "delete", path=path, files=len(blobs))
        await _drop_blobs(ctx, space_id, blobs)
        return PathResult(path=path)


ACTIONS: list[Action] = [
    *crud(
        TABLE,
        list="/space/list",
        fetch="/space/{spaceId}/fetch",
        create="/space/create",
        update="/space/{spaceId}/update",
        delete=DeleteSpace(TABLE, "/space/{spaceId}/delete"),
        export="/space/export",
    ),
    ListStorage("/space/{spaceId}/storage/list"),
    ListStorage("/space/{spaceId}/storage/list/{path}"),
    UploadStorage("/space/{spaceId}/storage/upload/{path}"),
    DownloadStorage("/space/{spaceId}/storage/download/{path}"),
    GetSignedStorage("/space/{spaceId}/storage/signed/{path}"),
    CopyStorage("/space/{spaceId}/storage/copy/{path}"),
    MoveStorage("/space/{spaceId}/storage/move/{path}"),
    DeleteStorage("/space/{spaceId}/storage/delete/{path}"),
]
