"""Datasets and their records (the knowledge a bot retrieves from), the files
attached to them, and search (engine/retrieval.py ranks the records)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..actions.base import Action, Call, Context, now_ms
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
from ..actions.query import PageQuery
from ..actions.standard import ListAction, Parent, Table, crud, record, require_owned, require_parent
from ..engine import retrieval
from ..errors import NotFound
from .file import TABLE as FILES

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
        async with ctx.pool.connection() as conn:
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
        async with ctx.pool.connection() as conn, conn.transaction():
            await _require_both(conn, call, ctx)
            await record(conn, ctx, TABLE, "file.attach", call.params["datasetId"], {"file_id": call.params["fileId"]})
            await conn.execute(
                "INSERT INTO dataset_files (dataset_id, file_id, account_id, type, created_at) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dataset_id, file_id) DO UPDATE SET type = EXCLUDED.type",
                call.params["datasetId"],
                call.params["fileId"],
                ctx.account_id,
                call.body.type,
                now_ms(),
            )
        return IdResponse(id=call.params["datasetId"])


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
    DatasetFiles(FILES, "/dataset/{datasetId}/file/list", parent=PARENT),
]
