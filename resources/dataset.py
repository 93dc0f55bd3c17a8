"""Datasets and their records (the knowledge a bot retrieves from), the files
attached to them, and search (engine/retrieval.py ranks the records).

A file attached to a dataset is synced into records (a background job, queued when
its content arrives, when it is attached with content, and by either sync route):
its text is extracted and chunked by engine/documents.py (by structure, then
`recordMaxTokens` and `separators`), and its records are replaced in one
transaction, so a search sees the old ones or the new ones, never none or both.
Each record's `source` is `file:<id>` and its meta says where in the file it is."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import msgspec

from ..actions.base import Action, Call, Context, Principal, now_ms
from ..actions.fields import (
    Alias,
    Amount,
    Body,
    Description,
    IdResponse,
    Item,
    LongText,
    MetaDict,
    Name,
    Ref,
    Visibility,
)
from ..actions.ids import new_id
from ..actions.query import PageQuery
from ..actions.standard import ListAction, Parent, Table, crud, record, require_owned, require_parent
from ..engine import documents, retrieval
from ..errors import ApiError, NotFound
from ..store import queue
from . import file as files
from .file import TABLE as FILES

log = logging.getLogger("botkit")

Score = Amount
Short = Annotated[str, msgspec.Meta(max_length=4096)]


class Dataset(Item):
    meta: dict
    store: str
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    blueprint_id: str | None = None
    reranker: str | None = None
    record_max_tokens: float | None = None
    search_min_score: float | None = None
    search_max_records: float | None = None
    search_max_tokens: float | None = None
    match_instruction: str | None = None
    mismatch_instruction: str | None = None
    separators: str | None = None
    visibility: str | None = None


class DatasetCreate(Body):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    blueprint_id: Ref | None = None
    store: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    reranker: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    record_max_tokens: Score | None = None
    search_min_score: Score | None = None
    search_max_records: Score | None = None
    search_max_tokens: Score | None = None
    match_instruction: Short | None = None
    mismatch_instruction: Short | None = None
    separators: Short | None = None
    visibility: Visibility | None = None


TABLE = Table(
    name="datasets",
    noun="dataset",
    item=Dataset,
    create=DatasetCreate,
    tag="Dataset",
    refs={"blueprint_id": ("blueprints", "blueprint")},
    defaults={"store": lambda: "default"},
)

PARENT = Parent(table="datasets", param="datasetId", column="dataset_id", noun="dataset")


class Record(Item):
    meta: dict
    text: str
    source: str | None = None


class RecordCreate(Body):
    text: LongText
    source: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    meta: MetaDict | None = None


RECORDS = Table(name="records", noun="record", item=Record, create=RecordCreate, tag="Dataset", parent=PARENT)

_SEARCH_SETTINGS = (
    "SELECT search_min_score, search_max_records, search_max_tokens, match_instruction, "
    "mismatch_instruction FROM datasets WHERE id = $1 AND account_id = $2"
)


async def search(conn, ctx: Context, dataset_id: str, query: str, filter: dict[str, Any] | None = None):
    """(the dataset's search settings and instructions, its best records for `query`
    within its bounds); (None, []) when there is no such dataset here."""
    settings = await conn.fetchrow(_SEARCH_SETTINGS, dataset_id, ctx.account_id)
    if settings is None:
        return None, []
    bounds = retrieval.Bounds(
        min_score=settings["search_min_score"],
        max_records=settings["search_max_records"],
        max_tokens=settings["search_max_tokens"],
    )
    models = ctx.services.models
    records = await retrieval.search_records(
        conn,
        ctx.account_id,
        dataset_id,
        query,
        bounds,
        embeddings=models.embeddings,
        timeouts=models.timeouts,
        filter=filter,
    )
    return settings, records


# --- search --------------------------------------------------------------------

SearchFilter = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description='Meta filters: `{key: value}` or `{key: {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}`; '
        f"all must hold; at most {retrieval.FILTER_MAX_KEYS} keys"
    ),
]


class SearchBody(Body):
    search: Annotated[str, msgspec.Meta(max_length=10_000)]
    filter: SearchFilter | None = None


class SearchResult(msgspec.Struct):
    id: str
    records: list[retrieval.ScoredRecord]


class SearchDataset(Action):
    tag = "Dataset"
    summary = "Search a dataset's records (full text + trigram similarity), best first, with scores"
    body = SearchBody
    response = SearchResult

    async def run(self, ctx: Context, call: Call) -> SearchResult:
        dataset_id = call.params["datasetId"]
        async with ctx.pool.connection(share=ctx.account_id) as conn:  # heavy: the account's share
            settings, records = await search(conn, ctx, dataset_id, call.body.search, call.body.filter)
        if settings is None:
            raise NotFound("dataset not found")
        return SearchResult(id=dataset_id, records=records)


# --- files attached to a dataset ---------------------------------------------


class FileAttach(Body):
    type: Literal["source"] = "source"


class FileDetach(Body):
    delete_records: bool = False


async def _require_both(conn, call: Call, ctx: Context) -> None:
    await require_parent(conn, PARENT, ctx, call)
    await require_owned(conn, "files", call.params["fileId"], ctx.account_id, "file not found")


class AttachFile(Action):
    tag = "Dataset"
    summary = "Attach a file to a dataset as a record source"
    body = FileAttach
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        dataset_id, file_id = call.params["datasetId"], call.params["fileId"]
        async with ctx.pool.connection() as conn, conn.transaction():
            await _require_both(conn, call, ctx)
            await record(conn, ctx, TABLE, "file.attach", dataset_id, {"file_id": file_id})
            await conn.execute(
                "INSERT INTO dataset_files (dataset_id, file_id, account_id, type, created_at) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dataset_id, file_id) DO UPDATE SET type = EXCLUDED.type",
                dataset_id,
                file_id,
                ctx.account_id,
                call.body.type,
                now_ms(),
            )
            has_content = await conn.fetchval(
                "SELECT uploaded_at IS NOT NULL OR source_url IS NOT NULL FROM files WHERE id = $1", file_id
            )
            if has_content:  # a file with content becomes records at once
                await files.queue_syncs(conn, ctx.account_id, file_id, dataset_id)
        if has_content:
            ctx.services.jobs.kick()
        return IdResponse(id=dataset_id)


class SyncDatasetFile(Action):
    tag = "Dataset"
    summary = "Sync an attached file into the dataset's records again (in the background; the file's syncStatus says how it went)"
    body = Body
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        dataset_id, file_id = call.params["datasetId"], call.params["fileId"]
        async with ctx.pool.connection() as conn, conn.transaction():
            await _require_both(conn, call, ctx)
            if not await files.queue_syncs(conn, ctx.account_id, file_id, dataset_id):
                raise NotFound("the file is not attached to this dataset")
        ctx.services.jobs.kick()
        return IdResponse(id=file_id)


class DetachFile(Action):
    tag = "Dataset"
    summary = "Detach a file from a dataset (optionally deleting the records it produced)"
    body = FileDetach
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        async with ctx.pool.connection() as conn:
            await _require_both(conn, call, ctx)
            async with conn.transaction():
                await record(
                    conn, ctx, TABLE, "file.detach", call.params["datasetId"], {"file_id": call.params["fileId"]}
                )
                await conn.execute(
                    "DELETE FROM dataset_files WHERE dataset_id = $1 AND file_id = $2",
                    call.params["datasetId"],
                    call.params["fileId"],
                )
                if call.body.delete_records:  # records made from a file name it as their source
                    await conn.execute(
                        "DELETE FROM records WHERE dataset_id = $1 AND source = $2",
                        call.params["datasetId"],
                        "file:" + call.params["fileId"],
                    )
        return IdResponse(id=call.params["datasetId"])


# --- syncing a file into records ------------------------------------------------------

RECORDS_PER_FILE_MAX = 20_000
_SYNC_SOURCE = """
SELECT f.storage_key, f.type, f.name, f.source_url, f.uploaded_at, d.record_max_tokens, d.separators
FROM dataset_files a JOIN files f ON f.id = a.file_id JOIN datasets d ON d.id = a.dataset_id
WHERE a.dataset_id = $1 AND a.file_id = $2 AND a.account_id = $3
"""
_REPLACE = """
WITH gone AS (DELETE FROM records WHERE dataset_id = $1 AND source = $3)
INSERT INTO records (id, account_id, dataset_id, text, source, meta, created_at, updated_at)
SELECT r.id, $2, $1, r.text, $3, r.meta, $4, $4 FROM unnest($5::text[], $6::text[], $7::jsonb[]) AS r (id, text, meta)
"""


def sync_handler(services: Any) -> queue.Handler:
    """The runner's handler of `dataset.file.sync` jobs."""

    async def run_sync(job: queue.Job) -> None:
        dataset_id, file_id = job.payload["datasetId"], job.payload["fileId"]
        ctx = Context(Principal(job.account_id, "sync"), services.pool, job.id, services)
        try:
            count = await _sync(ctx, dataset_id, file_id)
        except ApiError as exc:  # a document that cannot be read, a URL that cannot be fetched, ...
            await _sync_failed(ctx, dataset_id, file_id, exc.message[:1000])
            return
        if count is not None:
            log.info("file %s: %d records in dataset %s", file_id, count, dataset_id)

    return run_sync


async def _status(ctx: Context, file_id: str, status: str, error: str | None = None) -> None:
    await ctx.pool.execute(
        "UPDATE files SET sync_status = $3, sync_error = $4 WHERE id = $1 AND account_id = $2",
        file_id,
        ctx.account_id,
        status,
        error,
    )


async def _sync(ctx: Context, dataset_id: str, file_id: str) -> int | None:
    row = await ctx.pool.fetchrow(_SYNC_SOURCE, dataset_id, file_id, ctx.account_id)
    if row is None:
        return None  # detached or deleted since it was queued
    await _status(ctx, file_id, "syncing")
    if row["source_url"]:  # a URL's file is fetched again
        await files.fetch_into(ctx, file_id, row["source_url"], sync=False)
        row = await ctx.pool.fetchrow(_SYNC_SOURCE, dataset_id, file_id, ctx.account_id)
        if row is None:
            return None
    if row["uploaded_at"] is None:
        raise documents.DocumentError("the file has no content yet")
    max_tokens = documents.record_max_tokens(row["record_max_tokens"])
    with tempfile.TemporaryDirectory(prefix="botkit-sync-") as folder:
        path = Path(folder) / "content"
        async with await anyio.open_file(path, "wb") as out:
            async for chunk in ctx.services.storage.read(row["storage_key"]):
                await out.write(chunk)
        sections = await anyio.to_thread.run_sync(
            documents.extract, path, row["type"] or "", row["name"] or "", documents.Limits()
        )
    chunks = await anyio.to_thread.run_sync(documents.chunk, sections, max_tokens, row["separators"])
    if len(chunks) > RECORDS_PER_FILE_MAX:
        raise documents.DocumentError(f"the file makes more than {RECORDS_PER_FILE_MAX} records")
    now = now_ms()
    async with ctx.pool.connection() as conn, conn.transaction():
        # the file and the link still there (a file deleted during the sync makes no records)
        if not await conn.fetchval(
            "SELECT 1 FROM dataset_files a JOIN files f ON f.id = a.file_id "
            "WHERE a.dataset_id = $1 AND a.file_id = $2 AND a.account_id = $3 FOR UPDATE OF f",
            dataset_id,
            file_id,
            ctx.account_id,
        ):
            return None
        await conn.execute(
            _REPLACE,
            dataset_id,
            ctx.account_id,
            "file:" + file_id,
            now,
            [new_id() for _ in chunks],
            [c.text for c in chunks],
            [{**c.meta, "fileId": file_id} for c in chunks],
        )
        await conn.execute(
            "UPDATE files SET sync_status = 'synced', sync_error = NULL, synced_at = $3 WHERE id = $1 AND account_id = $2",
            file_id,
            ctx.account_id,
            now,
        )
        await record(conn, ctx, TABLE, "file.sync", dataset_id, {"file_id": file_id}, {"records": len(chunks)})
    return len(chunks)


async def _sync_failed(ctx: Context, dataset_id: str, file_id: str, message: str) -> None:
    with contextlib.suppress(Exception):
        async with ctx.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE files SET sync_status = 'error', sync_error = $3 WHERE id = $1 AND account_id = $2",
                file_id,
                ctx.account_id,
                message,
            )
            meta = {"error": message}
            await record(conn, ctx, TABLE, "file.sync_failed", dataset_id, {"file_id": file_id}, meta)


class DatasetFiles(ListAction):
    """The files attached to a dataset, paged by file id."""

    query = PageQuery
    summary = "List the files attached to a dataset"

    def select(self, ctx: Context, call: Call, q, cursor: str | None, limit: int) -> tuple[str, list]:
        cols = ", ".join(f"f.{c}" for c in FILES.columns)
        where = "a.dataset_id = $1 AND a.account_id = $2"
        args = [call.params["datasetId"], ctx.account_id, limit]
        if cursor:
            where += f" AND a.file_id {'<' if q.desc else '>'} $4"
            args.append(cursor)
        sql = (
            f"SELECT {cols} FROM dataset_files a JOIN files f ON f.id = a.file_id WHERE {where} "
            f"ORDER BY a.file_id {'DESC' if q.desc else 'ASC'} LIMIT $3"
        )
        return sql, args


ACTIONS: list[Action] = [
    *crud(
        TABLE,
        list="/dataset/list",
        fetch="/dataset/{datasetId}/fetch",
        create="/dataset/create",
        update="/dataset/{datasetId}/update",
        delete="/dataset/{datasetId}/delete",
    ),
    *crud(
        RECORDS,
        list="/dataset/{datasetId}/record/list",
        fetch="/dataset/{datasetId}/record/{recordId}/fetch",
        create="/dataset/{datasetId}/record/create",
        update="/dataset/{datasetId}/record/{recordId}/update",
        delete="/dataset/{datasetId}/record/{recordId}/delete",
        export="/dataset/{datasetId}/record/export",
    ),
    SearchDataset("/dataset/{datasetId}/search"),
    AttachFile("/dataset/{datasetId}/file/{fileId}/attach"),
    DetachFile("/dataset/{datasetId}/file/{fileId}/detach"),
    SyncDatasetFile("/dataset/{datasetId}/file/{fileId}/sync"),
    DatasetFiles(FILES, "/dataset/{datasetId}/file/list", parent=PARENT),
]
