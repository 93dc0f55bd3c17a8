"""Files: metadata (the standard actions) and content, stored by store/files.py (a
folder in the data directory, or an S3-compatible bucket).

Upload (`file/{id}/upload`) takes, as the official SDKs and the reference send them:
- `{"file": {"size", "type", "name"}}`: the answer's `uploadRequest` is where the
  client PUTs the bytes itself, without its token: the bucket's presigned PUT, or
  botkit's own signed URL (`file/{id}/upload/signed`) for the local folder;
- `{"file": "data:..."}`, `{"file": "https://..."}` (fetched by botkit, engine/fetch.py);
- a multipart form (its `file` field) or any other body (the bytes themselves).
Every way streams in constant memory, bounded by BOTKIT_FILE_MAX_BYTES (413 above it),
and stores the type and size that arrived, with a SHA-256 checksum.

Download (`file/{id}/download`): with `Accept: application/json` a signed URL that
lives BOTKIT_FILE_URL_SECONDS; otherwise the bytes, with their type, a
Content-Disposition, an ETag and single HTTP ranges. 204 while there is no content.

Deleting a file deletes its content and the records it made in datasets. A file that
is attached to datasets is synced into their records when content arrives
(resources/dataset.py does the syncing)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from ..actions.auth import enforce_limit
from ..actions.base import Action, Call, Context, Principal, Raw, now_ms
from ..actions.fields import SAFE_INTEGER, Alias, Body, Description, IdResponse, Item, MetaDict, Name, Ref, Visibility
from ..actions.standard import DeleteAction, FetchAction, Table, crud, record
from ..errors import BadRequest, ContentTooLarge, NotAuthorized, NotFound, RangeNotSatisfiable

log = logging.getLogger("botkit")


class File(Item):
    meta: dict
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    blueprint_id: str | None = None
    visibility: str | None = None
    type: str | None = None  # as stored
    size: int | None = None  # as stored
    checksum: str | None = None  # "sha256:<hex>" (or the bucket's ETag for a presigned upload)
    sync_status: str | None = None  # pending | syncing | synced | error (into the datasets it is attached to)
    sync_error: str | None = None
    synced_at: int | None = None


class FileCreate(Body):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    blueprint_id: Ref | None = None
    visibility: Visibility | None = None


TABLE = Table(
    name="files",
    noun="file",
    item=File,
    create=FileCreate,
    tag="File",
    refs={"blueprint_id": ("blueprints", "blueprint")},
)

# what store/files.py stores (its _CONTENT_TYPE, without parameters)
ContentType = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.+-]{1,127}/[A-Za-z0-9_.+-]{1,127}(?![\s\S])")]
FileName = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class UploadSpec(Body):
    """The file the client is about to PUT itself."""

    size: Annotated[int, msgspec.Meta(ge=0, le=SAFE_INTEGER)]
    type: ContentType
    name: FileName | None = None


# A data: URL the server takes (a part of them: any media type and parameters are taken,
# and http(s): URLs, which the server fetches; the pattern leaves those out, as a fuzzer
# would send the server fetching from made-up hosts).
_DATA_URL = (
    r"^data:(?:[a-z]+/[a-z0-9.+-]+)?(?:;base64,(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
    r"|,[A-Za-z0-9%._~-]*)$"
)
ContentUrl = Annotated[
    str,
    msgspec.Meta(
        max_length=16 * 1024 * 1024,
        description="A data: URL of the content, or an http(s): URL the server fetches it from",
        extra_json_schema={"pattern": _DATA_URL},
    ),
]


class UploadBody(Body):
    file: UploadSpec | ContentUrl


class UploadRequest(msgspec.Struct):
    method: str
    url: str
    headers: dict[str, str]


class UploadResult(msgspec.Struct, rename="camel", omit_defaults=True):
    id: str
    name: str | None = None
    upload_request: UploadRequest | None = None


class DownloadUrl(msgspec.Struct):
    url: str


_Part = Annotated[str, msgspec.Meta(max_length=255)]


class Signed(msgspec.Struct, kw_only=True):
    """A signed URL's query: what it allows (the account, a type and size for uploads),
    until when (epoch seconds), and the signature. Read as text: whatever is wrong with
    it is a 401, as with a token."""

    account: _Part = ""
    expires: _Part = ""
    type: _Part = ""
    size: _Part = "-1"
    signature: _Part = ""

    @property
    def limit(self) -> int:
        return int(self.size)


# --- the content ----------------------------------------------------------------------


def storage_key(account_id: str, file_id: str) -> str:
    return f"{account_id}/{file_id}"


async def insert_row(
    conn, ctx: Context, file_id: str, name: str | None, meta: dict, now: int, content_type: str | None = None
) -> None:
    """A file botkit makes itself (an attachment, a message's speech), in the caller's
    transaction, held to the account's file limit as file/create is."""
    await enforce_limit(conn, ctx.principal, "file", "files")
    await conn.execute(
        "INSERT INTO files (id, account_id, name, type, meta, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        file_id,
        ctx.account_id,
        name,
        content_type,
        meta,
        now,
    )


_SAFE_NAME = re.compile(r"[^A-Za-z0-9 ._()\[\]-]+")


def safe_name(name: str | None, fallback: str) -> str:
    """A file name as a header can carry it: no path, no control characters, bounded."""
    if not name:
        return fallback
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return (_SAFE_NAME.sub("_", name).strip(" .") or fallback)[:120]


async def _owned(ctx: Context, file_id: str) -> Any:
    row = await ctx.pool.fetchrow(
        "SELECT id, name, type, size, checksum, storage_key, pending, uploaded_at FROM files "
        "WHERE id = $1 AND account_id = $2",
        file_id,
        ctx.account_id,
    )
    if row is None:
        raise NotFound("file not found")
    return row


async def store(
    ctx: Context,
    file_id: str,
    chunks: AsyncIterator[bytes],
    content_type: str,
    name: str | None = None,
    *,
    limit: int | None = None,
    source_url: str | None = None,
    sync: bool = True,
) -> None:
    """Stream content into the file (bounded), then record what was stored; the datasets
    it is attached to sync it (unless a sync is what stores it)."""
    storage = ctx.services.storage
    cap = ctx.services.settings.file_max_bytes
    limit = cap if limit is None else min(limit, cap)
    key = storage_key(ctx.account_id, file_id)
    written = await storage.write(key, chunks, limit=limit, content_type=content_type)
    try:
        checksum = "sha256:" + written.sha256
        await _stored(ctx, file_id, key, content_type, written.size, checksum, name, source_url, sync=sync)
    except NotFound:  # the file was deleted while its bytes arrived: they go too
        await storage.delete(key)
        raise


async def _stored(
    ctx: Context,
    file_id: str,
    key: str,
    content_type: str,
    size: int,
    checksum: str,
    name: str | None,
    source_url: str | None = None,
    sync: bool = True,
) -> None:
    account_id = ctx.account_id
    now = now_ms()
    async with ctx.pool.connection() as conn, conn.transaction():
        updated = await conn.fetchval(
            "UPDATE files SET type = $3, size = $4, checksum = $5, storage_key = $6, uploaded_at = $7, "
            "updated_at = $7, pending = NULL, name = COALESCE(name, $8), source_url = COALESCE($9, source_url) "
            "WHERE id = $1 AND account_id = $2 RETURNING id",
            file_id,
            account_id,
            content_type,
            size,
            checksum,
            key,
            now,
            name,
            source_url,
        )
        if updated is None:  # deleted while the bytes arrived
            raise NotFound("file not found")
        await ctx.services.events.record(
            conn,
            account_id,
            "file.upload",
            meta={"fileId": file_id, "type": content_type, "size": size},
            refs={"file_id": file_id},
        )
        syncs = await queue_syncs(conn, account_id, file_id) if sync else 0
    if syncs:
        ctx.services.jobs.kick()


SYNC = "dataset.file.sync"  # the job kind (resources/dataset.py runs it)


async def queue_syncs(conn, account_id: str, file_id: str, dataset_id: str | None = None) -> int:
    """Queue a sync of the file into each dataset it is attached to (or into one); the
    file says it is pending. (dataset_files is the link of the two; the dataset runs it.)"""
    from ..actions.ids import new_id
    from ..store import queue

    rows = await conn.fetch(
        "SELECT dataset_id FROM dataset_files WHERE file_id = $1 AND account_id = $2 "
        "AND ($3::text IS NULL OR dataset_id = $3)",
        file_id,
        account_id,
        dataset_id,
    )
    for row in rows:
        await queue.enqueue(conn, new_id(), account_id, SYNC, {"datasetId": row["dataset_id"], "fileId": file_id})
    if rows:
        await conn.execute(
            "UPDATE files SET sync_status = 'pending', sync_error = NULL WHERE id = $1 AND account_id = $2",
            file_id,
            account_id,
        )
    return len(rows)


async def confirm_pending(ctx: Context, row: Any) -> Any:
    """A presigned upload straight to the bucket: botkit learns that it happened, and
    what arrived, when the file is next used."""
    pending = row["pending"]
    if not pending:
        return row
    storage = ctx.services.storage
    stat = await storage.stat(row["storage_key"] or storage_key(ctx.account_id, row["id"]))
    if stat is None:
        return row
    key = storage_key(ctx.account_id, row["id"])
    await _stored(
        ctx, row["id"], key, stat.content_type or pending.get("type"), stat.size, stat.etag, pending.get("name")
    )
    return await _owned(ctx, row["id"])


# --- signed URLs (the local folder's; a bucket signs its own) ---------------------------


def _signature(key: bytes, op: str, file_id: str, s: Signed) -> str:
    message = f"{op}\n{file_id}\n{s.account}\n{s.expires}\n{s.type}\n{s.size}".encode()
    return hmac.new(key, b"botkit-file-url\n" + message, hashlib.sha256).hexdigest()


def base_url(ctx: Context, call: Call) -> str:
    configured = ctx.services.settings.public_url
    if configured:
        return configured.rstrip("/")
    headers = call.headers or {}
    host = headers.get(b"host", b"127.0.0.1").decode("latin-1")
    scheme = headers.get(b"x-forwarded-proto", b"http").decode("latin-1").split(",")[0].strip()
    return f"{scheme if scheme in ('http', 'https') else 'http'}://{host}"


def _key(ctx: Context) -> bytes:
    key = ctx.services.session_key
    assert key is not None  # set when the app starts
    return key


def signed_query(ctx: Context, op: str, target: str, content_type: str = "", size: int = -1) -> str:
    """The query of a signed URL that allows `op` on `target` (a file's id, or what
    another resource's signed routes name) for BOTKIT_FILE_URL_SECONDS."""
    seconds = ctx.services.settings.file_url_seconds
    s = Signed(account=ctx.account_id, expires=str(int(now_ms() / 1000 + seconds)), type=content_type, size=str(size))
    s.signature = _signature(_key(ctx), op, target, s)
    return urllib.parse.urlencode(msgspec.structs.asdict(s))


def signed_url(ctx: Context, call: Call, op: str, file_id: str, content_type: str = "", size: int = -1) -> str:
    query = signed_query(ctx, op, file_id, content_type, size)
    return f"{base_url(ctx, call)}/v1/file/{file_id}/{op}/signed?{query}"


def check_signed(ctx: Context, op: str, target: str, s: Signed) -> None:
    expected = _signature(_key(ctx), op, target, s)
    # as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
    if not s.signature or not hmac.compare_digest(expected.encode(), s.signature.encode()):
        raise NotAuthorized("the signed URL is not valid")
    if int(s.expires) < now_ms() / 1000:  # signed: the number botkit wrote
        raise NotAuthorized("the signed URL has expired")


# --- uploading ------------------------------------------------------------------------


def data_url(value: str) -> tuple[str, bytes]:
    """(type, bytes) of a `data:` URL."""
    head, comma, data = value.partition(",")
    if not comma:
        raise BadRequest("file: a data: URL needs a comma before its data")
    params = head[5:].split(";")
    content_type = params[0] or "text/plain"
    if "base64" in params[1:]:
        try:
            return content_type, base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("file: the data: URL's base64 is not valid") from None
    return content_type, urllib.parse.unquote_to_bytes(data)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _multipart_file(call: Call) -> tuple[AsyncIterator[bytes], dict[str, str]]:
    """The `file` field of a multipart form, streamed: (its chunks, {type, name})."""
    from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

    assert call.upload is not None
    _, options = parse_options_header(call.upload.headers.get(b"content-type", b"").decode("latin-1"))
    boundary = options.get("boundary")
    if not boundary:
        raise BadRequest("a multipart body needs a boundary")
    parser = PushMultipartParser(boundary, max_header_size=8192, max_segment_count=20)
    source = call.upload.chunks()
    found: dict[str, str] = {}

    async def events():
        try:
            async for chunk in source:
                for event in parser.parse(chunk):
                    yield event
            for event in parser.parse(b""):  # the end of the input
                yield event
        except MultipartError as exc:  # it names what is wrong with the form
            raise BadRequest(f"the multipart body is not valid: {exc}") from None

    stream = events()
    async for event in stream:  # up to the file field's headers
        if isinstance(event, MultipartSegment) and event.name == "file":
            found = {"type": event.content_type or "application/octet-stream", "name": event.filename or ""}
            break
    if not found:
        raise BadRequest('a multipart upload needs a "file" field')

    async def content() -> AsyncIterator[bytes]:
        async for event in stream:
            if event is None or isinstance(event, MultipartSegment):  # the file field ended
                return
            yield bytes(event)

    return content(), found


@dataclass(frozen=True)
class Content:
    """An upload's content as it arrives: its chunks (read once), type and name, and
    the URL it was fetched from."""

    chunks: AsyncIterator[bytes]
    type: str
    name: str | None = None
    source_url: str | None = None


@contextlib.asynccontextmanager
async def uploaded(ctx: Context, call: Call) -> AsyncIterator[Content]:
    """The content an upload request gives (an action with `UploadBody`-like `file` and
    streams_body): a multipart form's `file` field, the body's bytes, a data: URL (at
    most BOTKIT_FILE_MAX_BYTES) or an http(s): URL botkit fetches (the response open
    while the content is read)."""
    if call.upload is not None:
        if call.upload.content_type == "multipart/form-data":
            chunks, found = await _multipart_file(call)
            yield Content(chunks, found["type"], found["name"] or None)
        else:
            yield Content(call.upload.chunks(), call.upload.content_type)
        return
    given = call.body.file
    if isinstance(given, str) and given.startswith("data:"):
        content_type, data = data_url(given)
        if len(data) > ctx.services.settings.file_max_bytes:
            raise ContentTooLarge(f"the file is larger than {ctx.services.settings.file_max_bytes} bytes")
        yield Content(_one(data), content_type)
        return
    if isinstance(given, str) and given.startswith(("https://", "http://")):
        from ..engine import fetch

        cap = ctx.services.settings.file_max_bytes
        async with fetch.fetch(given, ctx.services.fetch_policy, max_bytes=cap) as response:
            content_type = response.content_type or "application/octet-stream"
            yield Content(response.chunks(), content_type, response.filename, given)
        return
    raise BadRequest("file: give {size, type, name}, a data: URL or an http(s): URL")


class UploadFile(Action):
    tag = "File"
    summary = (
        "Upload a file's content: ask for an upload URL ({file: {size, type, name}}), or send a data: or "
        "https: URL, a multipart form (field `file`) or the bytes themselves"
    )
    body = UploadBody
    body_types = ("multipart/form-data", "application/octet-stream")
    response = UploadResult
    streams_body = True
    json_max_bytes = 16 * 1024 * 1024 + 1024  # a data: URL of 12 MB; larger content streams as bytes

    async def run(self, ctx: Context, call: Call) -> UploadResult:
        file_id = call.params["fileId"]
        await _owned(ctx, file_id)
        return await self.upload_into(ctx, call, file_id)

    async def upload_into(self, ctx: Context, call: Call, file_id: str) -> UploadResult:
        """Whichever way the request gives the content, into this file."""
        if call.upload is None and isinstance(call.body.file, UploadSpec):
            return await self.hand_out(ctx, call, file_id, call.body.file)
        async with uploaded(ctx, call) as content:
            await store(ctx, file_id, content.chunks, content.type, content.name, source_url=content.source_url)
        return UploadResult(id=file_id)

    async def hand_out(self, ctx: Context, call: Call, file_id: str, spec: UploadSpec) -> UploadResult:
        cap = ctx.services.settings.file_max_bytes
        if spec.size > cap:
            raise ContentTooLarge(f"the file is larger than {cap} bytes")
        seconds = ctx.services.settings.file_url_seconds
        key = storage_key(ctx.account_id, file_id)
        presigned = await ctx.services.storage.presign_put(key, spec.type, seconds)
        pending = {"type": spec.type, "size": spec.size, "name": spec.name, "expiresAt": now_ms() + seconds * 1000}
        await ctx.pool.execute(
            "UPDATE files SET pending = $3, storage_key = $4, name = COALESCE(name, $5), updated_at = $6 "
            "WHERE id = $1 AND account_id = $2",
            file_id,
            ctx.account_id,
            pending,
            key,
            spec.name,
            now_ms(),
        )
        if presigned is not None:
            url, headers = presigned
        else:
            url = signed_url(ctx, call, "upload", file_id, spec.type, spec.size)
            headers = {"content-type": spec.type}
        return UploadResult(id=file_id, name=spec.name, upload_request=UploadRequest("PUT", url, headers))


async def fetch_into(ctx: Context, file_id: str, url: str, *, sync: bool = True) -> None:
    """Content from a URL (engine/fetch.py refuses private addresses unless allowed)."""
    from ..engine import fetch

    cap = ctx.services.settings.file_max_bytes
    async with fetch.fetch(url, ctx.services.fetch_policy, max_bytes=cap) as response:
        content_type = response.content_type or "application/octet-stream"
        await store(ctx, file_id, response.chunks(), content_type, response.filename, source_url=url, sync=sync)


class PutSignedContent(Action):
    """The local folder's presigned PUT: the signature fixes the file, the account, the
    type and the size; what arrives must be exactly that."""

    method = "PUT"
    tag = "File"
    summary = "Upload a file's bytes to the signed URL that file/{fileId}/upload handed out (no token)"
    query = Signed
    public = True
    streams_body = True
    body_types = ("application/octet-stream",)
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        file_id, s = call.params["fileId"], call.query
        check_signed(ctx, "upload", file_id, s)
        upload = call.upload
        content_type = upload.content_type if upload is not None else "application/json"
        if s.type and content_type != s.type.lower():
            raise BadRequest(f"the upload's content type is {content_type!r}, the signed URL's {s.type!r}")
        if upload is None:
            raise BadRequest("a JSON body cannot be a file's content here; send it as application/octet-stream")
        if upload.length is not None and s.limit >= 0 and upload.length != s.limit:
            raise BadRequest(f"the upload is {upload.length} bytes, the signed URL's {s.limit}")
        own = signed_for(ctx, s)
        row = await _owned(own, file_id)
        storage = ctx.services.storage
        key = storage_key(s.account, file_id)
        limit = s.limit if s.limit >= 0 else ctx.services.settings.file_max_bytes
        written = await storage.write(key, upload.chunks(), limit=limit, content_type=s.type or content_type)
        if s.limit >= 0 and written.size != s.limit:
            await storage.delete(key)
            raise BadRequest(f"the upload ended after {written.size} bytes of the {s.limit} it announced")
        name = (row["pending"] or {}).get("name")
        await _stored(own, file_id, key, s.type or content_type, written.size, "sha256:" + written.sha256, name)
        return IdResponse(id=file_id)


def signed_for(ctx: Context, s: Signed) -> Context:
    """The request as the account the (checked) signed URL names."""
    return Context(Principal(s.account, "signed-url"), ctx.pool, ctx.request_id, ctx.services)


# --- downloading ----------------------------------------------------------------------

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: bytes | None, size: int) -> tuple[int, int] | None | bool:
    """(start, end inclusive) of a single `Range: bytes=...`; None: the whole file;
    False: not satisfiable. Several ranges are served as the whole file."""
    if not header:
        return None
    m = _RANGE.match(header.decode("latin-1").strip())
    if m is None:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        return (max(size - n, 0), size - 1) if n and size else False
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return False
    return start, end


async def content_answer(ctx: Context, call: Call, row: Any) -> Raw:
    headers = call.headers or {}
    size, checksum = row["size"], row["checksum"]
    if row["uploaded_at"] is None or size is None:
        return Raw(204, [], b"")
    etag = f'"{checksum}"'.encode()
    name = safe_name(row["name"], row["id"])
    base = [
        (b"content-type", (row["type"] or "application/octet-stream").encode()),
        (b"content-disposition", f'attachment; filename="{name}"'.encode()),
        (b"etag", etag),
        (b"accept-ranges", b"bytes"),
        (b"cache-control", b"private, no-cache"),
    ]
    if headers.get(b"if-none-match") == etag:
        return Raw(304, base, b"")
    span = byte_range(headers.get(b"range"), size)
    if span is False:
        error = RangeNotSatisfiable(f"the range is past the file's {size} bytes")
        refusal = msgspec.json.encode({"message": error.message, "code": error.code})
        unsatisfiable = [(b"content-type", b"application/json"), (b"content-range", f"bytes */{size}".encode())]
        return Raw(error.status, unsatisfiable, refusal)
    start, end = span if isinstance(span, tuple) else (0, size - 1)
    length = end - start + 1 if size else 0
    status = 206 if isinstance(span, tuple) else 200
    if status == 206:
        base.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
    base.append((b"content-length", str(length).encode()))
    if length == 0:
        return Raw(status, base, b"")
    chunks = ctx.services.storage.read(row["storage_key"], start, end)
    first = await anext(chunks)  # a missing object is an HTTP error, not a cut-off body

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return Raw(status, base, body())


class DownloadFile(Action):
    method = "GET"
    tag = "File"
    summary = (
        "Download a file's content (ranges, ETag; 204 while it has none), or with `Accept: application/json` "
        "a short-lived signed URL `{url}`"
    )
    response = DownloadUrl
    raw_response = "application/octet-stream"

    async def run(self, ctx: Context, call: Call) -> Any:
        row = await confirm_pending(ctx, await _owned(ctx, call.params["fileId"]))
        accept = (call.headers or {}).get(b"accept", b"")
        if b"application/json" in accept:
            storage = ctx.services.storage
            key = row["storage_key"] or storage_key(ctx.account_id, row["id"])
            name = safe_name(row["name"], row["id"])
            url = await storage.presign_get(key, ctx.services.settings.file_url_seconds, name, row["type"])
            return DownloadUrl(url or signed_url(ctx, call, "download", row["id"]))
        return await content_answer(ctx, call, row)


class GetSignedContent(Action):
    method = "GET"
    tag = "File"
    summary = "Download a file's content from the signed URL file/{fileId}/download handed out (no token)"
    query = Signed
    public = True
    raw_response = "application/octet-stream"

    async def run(self, ctx: Context, call: Call) -> Raw:
        file_id, s = call.params["fileId"], call.query
        check_signed(ctx, "download", file_id, s)
        own = signed_for(ctx, s)
        return await content_answer(call=call, ctx=own, row=await _owned(own, file_id))


# --- fetching, deleting, syncing ------------------------------------------------------------


class FetchFile(FetchAction):
    async def run(self, ctx: Context, call: Call) -> Any:
        row = await _owned(ctx, call.params["fileId"])
        if row["pending"]:
            await confirm_pending(ctx, row)
        return await super().run(ctx, call)


class DeleteFile(DeleteAction):
    """The row, its records in datasets and its attachments' links go in one
    transaction; the content after it (a failure there leaves bytes no row names,
    which is logged)."""

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        file_id = call.params["fileId"]
        if not await delete_file(ctx, file_id):
            raise NotFound("file not found")
        return IdResponse(id=file_id)


async def delete_file(ctx: Context, file_id: str) -> bool:
    """Delete a file of the account (False: there is none), as file/{id}/delete does."""
    async with ctx.pool.connection() as conn, conn.transaction():
        key = await conn.fetchval(
            "DELETE FROM files WHERE id = $1 AND account_id = $2 RETURNING COALESCE(storage_key, '')",
            file_id,
            ctx.account_id,
        )
        if key is None:
            return False
        await conn.execute(
            "DELETE FROM records WHERE account_id = $1 AND source = $2", ctx.account_id, "file:" + file_id
        )
        await record(conn, ctx, TABLE, "delete", file_id, {})
    try:
        await ctx.services.storage.delete(key or storage_key(ctx.account_id, file_id))
    except Exception as exc:
        log.warning("file %s: deleting its content failed: %s", file_id, exc)
    return True


class SyncFile(Action):
    tag = "File"
    summary = "Sync the file into the records of every dataset it is attached to (in the background)"
    body = Body
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        file_id = call.params["fileId"]
        await _owned(ctx, file_id)
        async with ctx.pool.connection() as conn, conn.transaction():
            await queue_syncs(conn, ctx.account_id, file_id)
        ctx.services.jobs.kick()
        return IdResponse(id=file_id)


ACTIONS: list[Action] = [
    *crud(
        TABLE,
        list="/file/list",
        fetch=FetchFile(TABLE, "/file/{fileId}/fetch"),
        create="/file/create",
        update="/file/{fileId}/update",
        delete=DeleteFile(TABLE, "/file/{fileId}/delete"),
    ),
    UploadFile("/file/{fileId}/upload"),
    PutSignedContent("/file/{fileId}/upload/signed"),
    DownloadFile("/file/{fileId}/download"),
    GetSignedContent("/file/{fileId}/download/signed"),
    SyncFile("/file/{fileId}/sync"),
]
