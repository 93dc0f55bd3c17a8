"""Retrieval: the records of a dataset that best match a query, in PostgreSQL itself
(what `dataset/{datasetId}/search` answers and what a completion puts in its
context). Full-text
search (english stemming, a stored tsvector kept by the INSERT, so a record is
searchable as soon as its create returns) and pg_trgm word similarity for typos and
partial words.

Only candidates are scored: the records the indexes find in tiers (see _SQL), at most
a few hundred, so a search costs about the same at 100,000 records as at 1,000.

Score, from 0 to 1: 0.75 × the share of the query's words (stemmed, stop words
left out) that the record contains + 0.25 × pg_trgm word_similarity(query, record).
A record that contains more of the query's words always outranks one that contains
fewer (for queries of up to three words; beyond that, nearly always). A query of
stop words only is scored by word similarity alone. The dataset's searchMinScore,
searchMaxRecords and searchMaxTokens bound the answer (defaults below).

With embeddings on (engine/embeddings.py: the built-in model by default) and pgvector
present, the records nearest the query by cosine distance (the model's HNSW index;
records are embedded in the background, engine/vectors.py) join the candidates and
the score becomes 0.5 × the lexical score above + 0.5 × cosine similarity (a record
not embedded yet: its lexical score for both).

Memories (`search_memories`: memory/search and the bot's and contact's) are scored the
same way, lexically."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from ..errors import ApiError, BadRequest
from . import tokens, vectors
from .embeddings import embed, vector_literal
from .provider import EmbeddingsInfo, Passage, Timeouts

log = logging.getLogger("botkit.engine")

DEFAULT_MIN_SCORE = 0.0
DEFAULT_MAX_RECORDS = 10
DEFAULT_MAX_TOKENS = 3000
QUERY_MAX_CHARS = 2000  # a longer query (e.g. a whole user message) is cut here for search
# candidates of each tier scored exactly: 30 rank as well as 50 did (the same recall@5
# at 100,000 and 1,000,000 records), and scoring fewer took search p50 at 1,000,000
# records from 9.4 to 6.8 ms (bench/retrieval.py)
CANDIDATES = 30
RANKED = 2000  # matches of a tier ranked, at most
MEMORY_CANDIDATES = 50  # of each half of a memory search (full text, trigrams)
# the nearest records by the query's vector that join the lexical candidates: 30 of an
# HNSW search of 40 (pgvector's default ef_search) took the statement from 16 to 11 ms
# on 100,000 passages; fewer lost recall, more bought none (bench/retrieval.py)
VECTOR_CANDIDATES = 30
FILTER_MAX_KEYS = 20

Filter = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description='Meta filters: `{key: value}` or `{key: {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}`; '
        f"all must hold; at most {FILTER_MAX_KEYS} keys"
    ),
]


class ScoredRecord(msgspec.Struct, omit_defaults=True):
    id: str
    text: str
    score: float
    source: str | None = None
    meta: dict | None = None


# Candidates come in tiers, each only when the ones before found fewer than the limit:
# the records holding every query word, then those holding two of them, then any one;
# pg_trgm's word similarity (typos, partial words) only when full text found too few
# (for a query of three or more words: none), since its index answers a long query
# with thousands of rows to recheck. Each tier takes its CANDIDATES best by ts_rank
# among its first RANKED matches (a word in every other record must not make a search
# rank them all), and only the candidates are scored (ts_rank, not ts_rank_cd: cover
# density cost 14 µs a match on the pairs' tsquery, 15 ms for a query of common words,
# and ranked no better: recall@5 0.94 with either, p99 26 → 13 ms). $1 the dataset,
# $2 the account, $3 the query; the others are named where the tiers are used (the
# limit, the query's lexemes, and the tsqueries of all of them, any two and any one:
# NULL without lexemes).
_TIERS = """every_word AS (
    SELECT id FROM (
        SELECT r.id, r.search FROM records r
         WHERE {all}::tsquery IS NOT NULL AND r.dataset_id = $1 AND r.account_id = $2 AND r.search @@ {all}::tsquery
               {filter}
         LIMIT {ranked}) m
     ORDER BY ts_rank(m.search, {all}::tsquery) DESC LIMIT {candidates}),
two_words AS (
    SELECT id FROM (
        SELECT r.id, r.search FROM records r
         WHERE (SELECT count(*) FROM every_word) < {limit} AND {two}::tsquery IS NOT NULL
           AND r.dataset_id = $1 AND r.account_id = $2 AND r.search @@ {two}::tsquery {filter}
         LIMIT {ranked}) m
     ORDER BY ts_rank(m.search, {two}::tsquery) DESC LIMIT {candidates}),
some_words AS (SELECT id FROM every_word UNION SELECT id FROM two_words),
any_word AS (
    SELECT id FROM (
        SELECT r.id, r.search FROM records r
         WHERE (SELECT count(*) FROM some_words) < {limit} AND {any}::tsquery IS NOT NULL
           AND r.dataset_id = $1 AND r.account_id = $2 AND r.search @@ {any}::tsquery {filter}
         LIMIT {ranked}) m
     ORDER BY ts_rank(m.search, {any}::tsquery) DESC LIMIT {candidates}),
lexical AS (SELECT id FROM some_words UNION SELECT id FROM any_word),
near_text AS (
    SELECT r.id FROM records r
     WHERE (SELECT count(*) FROM lexical) < CASE WHEN cardinality({lex}::text[]) <= 2 THEN {limit} ELSE 1 END
       AND r.dataset_id = $1 AND r.account_id = $2 AND $3 <% r.text {filter}
     ORDER BY word_similarity($3, r.text) DESC LIMIT {candidates})"""

# A candidate's lexical score is `base + w * word_similarity(query, text)`, in two parts
# so that the costly one can be left out (records; memories compute it whole):
# `base`, 0.75 × the share of the query's words it holds, and `w`, the weight of its
# pg_trgm word similarity to the query (0.25; all of the score for a query without words).
_LEXICAL_PARTS = """CASE WHEN cardinality(q.lex) = 0 THEN 0::float8
                ELSE 0.75 * cardinality(ARRAY(SELECT unnest(q.lex) INTERSECT
                                              SELECT unnest(tsvector_to_array(r.search))))::float8
                          / cardinality(q.lex)
           END AS base,
           CASE WHEN cardinality(q.lex) = 0 THEN 1::float8 ELSE 0.25::float8 END AS w"""

# A candidate's score is `low + weight * word_similarity(query, text)`, the similarity in
# [0, 1] and the costly part (pg_trgm reads the whole text: most of a search's time when
# every candidate had it). It is computed only for the candidates that can still make
# the limit, those whose best possible score reaches the limit-th best `low`: any other
# scores below at least `limit` candidates whatever its similarity, so the answer is the
# same. Each score is computed once (not again for the filter and for the order).
_SCORED = """bounds AS MATERIALIZED (
    SELECT r.id, r.text, r.source, r.meta, {low} AS low, {weight} AS weight
      FROM cand JOIN records r USING (id) {vector_join}, q, LATERAL (SELECT {parts}) l {vector_score}
     WHERE r.dataset_id = $1 AND r.account_id = $2
),
bar AS (SELECT low FROM bounds ORDER BY low DESC LIMIT 1 OFFSET $5::bigint - 1),
scored AS MATERIALIZED (
    SELECT id, text, source, meta, low + weight * word_similarity($3, text)::float8 AS score
      FROM bounds WHERE low + weight >= COALESCE((SELECT low FROM bar), '-infinity'::float8)
)
SELECT * FROM scored
WHERE score >= $4
ORDER BY score DESC, id
LIMIT $5"""

# Lexical search, one statement: $4 the minimum score, $5 the limit, $6 the query's
# lexemes, $7 all of them, $8 any two, $9 any one.
_SQL = (
    "WITH q AS (SELECT $6::text[] AS lex),\n"
    + _TIERS.format(
        limit="$5",
        lex="$6",
        all="$7",
        two="$8",
        any="$9",
        filter="{filter}",
        ranked="{ranked}",
        candidates="{candidates}",
    )
    + ",\ncand AS (SELECT id FROM lexical UNION SELECT id FROM near_text),\n"
    + _SCORED.format(low="l.base", weight="l.w", vector_join="", parts=_LEXICAL_PARTS, vector_score="")
)

# Hybrid search, two statements, so that the first runs while the query is embedded:
# the lexical candidates ($4 the limit, $5 the lexemes, $6 all, $7 any two, $8 any one),
# then those and the nearest records by the query's vector, scored ($4 the minimum
# score, $5 the limit, $6 the lexemes, $7 the vector, $8 the lexical candidates). The
# model's name and dimensions are written in, so that the planner can use the model's
# partial HNSW index. The score is half lexical, half cosine similarity (a record not
# embedded yet: its lexical score in both halves).
_CANDIDATES_SQL = (
    "WITH "
    + _TIERS.format(
        limit="$4",
        lex="$5",
        all="$6",
        two="$7",
        any="$8",
        filter="{filter}",
        ranked="{ranked}",
        candidates="{candidates}",
    )
    + "\nSELECT id FROM lexical UNION SELECT id FROM near_text"
)
_HYBRID_SQL = """WITH q AS (SELECT $6::text[] AS lex),
cand AS (
    SELECT unnest($8::text[]) AS id
    UNION
    (SELECT e.record_id FROM record_vectors e JOIN records r ON r.id = e.record_id
      WHERE e.dataset_id = $1 AND e.account_id = $2 AND e.model = {model} {filter}
      ORDER BY e.embedding::vector({dims}) <=> $7::vector({dims}) LIMIT {vector_candidates})
),
""" + _SCORED.format(
    low="0.5 * l.base + 0.5 * COALESCE(v.cos, l.base)",
    weight="CASE WHEN v.cos IS NULL THEN l.w ELSE 0.5 * l.w END",
    vector_join="LEFT JOIN record_vectors e ON e.record_id = r.id AND e.model = {model}",
    parts=_LEXICAL_PARTS.replace("{", "{{").replace("}", "}}"),
    # NULL when the record has no vector yet (GREATEST alone would make it 0)
    vector_score=", LATERAL (SELECT CASE WHEN e.record_id IS NOT NULL THEN "
    "GREATEST(0, 1 - (e.embedding::vector({dims}) <=> $7::vector({dims})))::float8 END AS cos) v",
)
# the query's lexemes in the order the query says them
_LEXEMES = "SELECT array_agg(lexeme ORDER BY positions[1]) FROM unnest(to_tsvector('english', $1))"
PAIRED_MAX = 8  # the first words whose pairs make the second tier (eight: 28 pairs)
ANY_MAX = 16  # the first words any one of which makes the third


def _tsquery_word(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


async def query_terms(conn, query: str) -> tuple[list[str], str | None, str | None, str | None]:
    """The query's lexemes (english stemming, stop words out), and the tsqueries of all
    of them, any two of the first PAIRED_MAX and any one of the first ANY_MAX."""
    lexemes = list(await conn.fetchval(_LEXEMES, query) or ())
    if not lexemes:
        return [], None, None, None
    words = [_tsquery_word(x) for x in lexemes]
    first = words[:PAIRED_MAX]
    pairs = " | ".join(f"({a} & {b})" for i, a in enumerate(first) for b in first[i + 1 :])
    return lexemes, " & ".join(words), pairs or None, " | ".join(words[:ANY_MAX])


def _sql(filter_sql: str) -> str:
    return _SQL.format(filter=filter_sql, candidates=CANDIDATES, ranked=RANKED)


def _hybrid_sql(filter_sql: str, model: str, dims: int) -> tuple[str, str]:
    return (
        _CANDIDATES_SQL.format(filter=filter_sql, candidates=CANDIDATES, ranked=RANKED),
        _HYBRID_SQL.format(
            filter=filter_sql, vector_candidates=VECTOR_CANDIDATES, model=_literal(model), dims=int(dims)
        ),
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_vector_tables: bool | None = None  # pgvector's tables exist here (looked up once a process)
_dimensions: dict[str, int] = {}  # a model's, once it has stored vectors (they never change)


async def _vector_model(conn, info: EmbeddingsInfo | None) -> tuple[str, int] | None:
    """(the model, its dimensions) when embeddings are on and the model has stored
    vectors here; None: lexical search."""
    global _vector_tables
    if info is None:
        return None
    if _vector_tables is None:
        _vector_tables = await vectors.has_vectors(conn)
    if not _vector_tables:
        return None
    dims = _dimensions.get(info.model)
    if dims is None:
        dims = await vectors.dimensions(conn, info.model)
        if dims is None:
            return None  # nothing embedded with this model yet
        _dimensions[info.model] = dims
    return info.model, dims


async def _query_vector(query: str, info: EmbeddingsInfo, dims: int, bounds: Timeouts) -> str | None:
    """The query's vector (pgvector's text form); None when the model fails."""
    try:
        (vector,) = await embed(info, [query], bounds)
    except ApiError as exc:
        log.warning("dataset search without embeddings: %s", exc.message)
        return None
    if len(vector) != dims:
        log.warning(
            "dataset search without embeddings: %s answered %d dimensions, not %d", info.model, len(vector), dims
        )
        return None
    return vector_literal(vector)


# pg_trgm's `<%` candidates (0.6 by default misses one-letter typos in short words),
# and a statement timeout tighter than the default: a search is ms of work when its
# indexes serve it, seconds only when something is wrong. And the prepared statements'
# generic plan from the first execution: the statement's shape (tiers, LIMITs, its
# indexes) decides the plan, not the values, and PostgreSQL's default re-planned the
# long statement at every search (5 ms of its 11 at 100,000 records, for the same plan).
SEARCH_TIMEOUT_MS = 5000
_THRESHOLD = (
    "SET LOCAL pg_trgm.word_similarity_threshold = 0.3; SET LOCAL plan_cache_mode = force_generic_plan; "
    f"SELECT set_config('statement_timeout', (CASE WHEN t = 0 OR t > {SEARCH_TIMEOUT_MS} THEN {SEARCH_TIMEOUT_MS} ELSE t END)::int::text, true) "
    "FROM (SELECT extract(epoch FROM current_setting('statement_timeout')::interval) * 1000 AS t) AS now"
)
# HNSW: enough of the graph for the candidates, and scanning on while the dataset's
# filter leaves too few (pgvector 0.8's iterative scans)
_HNSW = "SET LOCAL hnsw.ef_search = 40; SET LOCAL hnsw.iterative_scan = relaxed_order"

_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _filter_sql(filter: dict[str, Any] | None, first: int) -> tuple[str, list[Any]]:
    """AND-ed conditions on r.meta, with their arguments numbered from `first`."""
    if not filter:
        return "", []
    if len(filter) > FILTER_MAX_KEYS:
        raise BadRequest(f"filter: at most {FILTER_MAX_KEYS} keys")
    sql: list[str] = []
    args: list[Any] = []

    def arg(value: Any, cast: str) -> str:
        args.append(value)
        return f"${first + len(args) - 1}::{cast}"

    for key, cond in filter.items():
        if not key or len(key) > 40:
            raise BadRequest(f"filter: key {key[:60]!r} must be 1 to 40 characters long")
        op, value = "$eq", cond
        if isinstance(cond, dict):
            if len(cond) != 1 or next(iter(cond)) not in ("$eq", "$ne", *_OPS):
                raise BadRequest(f"filter.{key}: use one of $eq, $ne, $gt, $gte, $lt, $lte")
            op, value = next(iter(cond.items()))
        if op in ("$eq", "$ne"):
            if not isinstance(value, (str, int, float, bool)) or (isinstance(value, str) and len(value) > 500):
                raise BadRequest(f"filter.{key}: compare with a string (up to 500 characters), number or boolean")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
                raise BadRequest(f"filter.{key}: the number is too large")
            if isinstance(value, str) and "\x00" in value:
                raise BadRequest(f"filter.{key}: NUL characters are not allowed")
            test = f"r.meta @> {arg({key: value}, 'jsonb')}"
            sql.append(f"AND {test}" if op == "$eq" else f"AND NOT ({test})")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadRequest(f"filter.{key}: {op} compares with a number")
            try:
                number = float(value)
            except OverflowError:
                raise BadRequest(f"filter.{key}: the number is too large") from None
            if not math.isfinite(number):
                raise BadRequest(f"filter.{key}: the number is too large")
            k = arg(key, "text")
            sql.append(
                f"AND (CASE WHEN jsonb_typeof(r.meta -> {k}) = 'number' "
                f"THEN (r.meta ->> {k})::float8 {_OPS[op]} {arg(number, 'float8')} ELSE false END)"
            )
    return " ".join(sql), args


def _bounded(value: float | None, default: int, most: int) -> int:
    """A dataset setting as a count: unset → the default; at most `most` (also for inf)."""
    if value is None or math.isnan(value):
        return default
    return int(min(value, most))


def clean_query(text: str) -> str:
    return text.replace("\x00", " ")[:QUERY_MAX_CHARS]


@dataclass(frozen=True)
class Bounds:
    """A dataset's search settings (None: the defaults above)."""

    min_score: float | None = None
    max_records: float | None = None
    max_tokens: float | None = None


async def search_records(
    conn,
    account_id: str,
    dataset_id: str,
    query: str,
    bounds: Bounds,
    *,
    embeddings: EmbeddingsInfo | None = None,
    timeouts: Timeouts = Timeouts(),
    filter: dict[str, Any] | None = None,
) -> list[ScoredRecord]:
    """The best records of one dataset for `query`, best first, within the bounds."""
    query = clean_query(query)
    if not query.strip():
        return []
    limit = _bounded(bounds.max_records, DEFAULT_MAX_RECORDS, 1000)
    if limit <= 0:
        return []
    budget = _bounded(bounds.max_tokens, DEFAULT_MAX_TOKENS, 10_000_000)
    min_score = bounds.min_score
    floor = float(min_score) if min_score is not None and not math.isnan(min_score) else DEFAULT_MIN_SCORE
    model = await _vector_model(conn, embeddings)
    # the query is embedded (in a thread) while its lexical candidates are found
    embedding = (
        asyncio.ensure_future(_query_vector(query, embeddings, model[1], timeouts))
        if model is not None and embeddings is not None
        else None
    )
    try:
        terms = await query_terms(conn, query)
        where, extra = _filter_sql(filter, 10)
        async with conn.transaction():  # SET LOCAL: the settings end with the transaction
            await conn.execute(_THRESHOLD)
            if model is None or embedding is None:
                rows = await conn.fetch(_sql(where), dataset_id, account_id, query, floor, limit, *terms, *extra)
            else:
                # both statements take the filter's values after their eight
                first, second = _hybrid_sql(_filter_sql(filter, 9)[0], *model)
                found = [r[0] for r in await conn.fetch(first, dataset_id, account_id, query, limit, *terms, *extra)]
                vector = await embedding
                if vector is None:  # the model failed: lexical
                    rows = await conn.fetch(_sql(where), dataset_id, account_id, query, floor, limit, *terms, *extra)
                else:
                    await conn.execute(_HNSW)
                    rows = await conn.fetch(
                        second, dataset_id, account_id, query, floor, limit, terms[0], vector, found, *extra
                    )
    finally:
        if embedding is not None and not embedding.done():
            embedding.cancel()
    out: list[ScoredRecord] = []
    used = 0
    for r in rows:
        cost = tokens.count(r["text"])
        if out and used + cost > budget:
            break
        if not out and cost > budget:  # the best record alone is over the budget: shortened
            out.append(
                ScoredRecord(
                    id=r["id"],
                    text=tokens.truncate(r["text"], budget),
                    score=round(float(r["score"]), 6),
                    source=r["source"],
                    meta=r["meta"],
                )
            )
            break
        used += cost
        out.append(
            ScoredRecord(
                id=r["id"], text=r["text"], score=round(float(r["score"]), 6), source=r["source"], meta=r["meta"]
            )
        )
    return out


# A contact's or a bot's memories (or all an account's), scored as records are: $1 the
# account, $2 the bot or NULL, $3 the query, $4 the contact or NULL, $5 the limit.
_MEMORIES_SQL = f"""
WITH q AS (
    SELECT tsvector_to_array(to_tsvector('english', $3)) AS lex,
           NULLIF(replace(plainto_tsquery('english', $3)::text, ' & ', ' | '), '')::tsquery AS any_word
), cand AS (
    (SELECT r.id FROM memories r, q
      WHERE r.account_id = $1 AND ($2::text IS NULL OR r.bot_id = $2) AND ($4::text IS NULL OR r.contact_id = $4)
        AND q.any_word IS NOT NULL AND r.search @@ q.any_word
      ORDER BY ts_rank_cd(r.search, q.any_word) DESC LIMIT {MEMORY_CANDIDATES})
    UNION
    (SELECT r.id FROM memories r
      WHERE r.account_id = $1 AND ($2::text IS NULL OR r.bot_id = $2) AND ($4::text IS NULL OR r.contact_id = $4)
        AND $3 <% r.text
      ORDER BY word_similarity($3, r.text) DESC LIMIT {MEMORY_CANDIDATES})
)
SELECT r.id, r.text, r.meta, l.base + l.w * word_similarity($3, r.text)::float8 AS score
  FROM cand JOIN memories r USING (id), q, LATERAL (SELECT {_LEXICAL_PARTS}) l
 ORDER BY score DESC, id
 LIMIT $5
"""


async def search_memories(
    conn, account_id: str, query: str, *, bot_id: str | None = None, contact_id: str | None = None, limit: int = 20
) -> list[ScoredRecord]:
    """The memories that best match `query`, best first (of one bot, one contact, or both)."""
    query = clean_query(query)
    if not query.strip():
        return []
    async with conn.transaction():
        await conn.execute(_THRESHOLD)
        rows = await conn.fetch(_MEMORIES_SQL, account_id, bot_id, query, contact_id, limit)
    return [ScoredRecord(id=r["id"], text=r["text"], score=round(float(r["score"]), 6), meta=r["meta"]) for r in rows]


def passages(records: list[ScoredRecord]) -> list[Passage]:
    return [Passage(text=r.text, score=r.score, id=r.id, source=r.source, meta=r.meta) for r in records]


_WORD = re.compile(r"\w+")
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def rank_inline(query: str, texts: list[tuple[str, dict | None]], limit: int = DEFAULT_MAX_RECORDS) -> list[Passage]:
    """Inline `extensions.datasets` records, scored in Python the same way in spirit:
    0.75 × the share of the query's words a record contains + 0.25 × word overlap."""
    words = {w for w in _WORD.findall(query.lower()) if w not in STOP_WORDS}
    if not words:
        return []
    out = []
    for text, meta in texts:
        have = set(_WORD.findall(text.lower()))
        hit = len(words & have)
        if not hit:
            continue
        score = 0.75 * hit / len(words) + 0.25 * hit / max(1, len(words | have))
        out.append(Passage(text=text, score=round(score, 6), meta=meta))
    out.sort(key=lambda p: -p.score)
    return out[:limit]
