"""Usage: one row per completion (tokens in and out, per account, bot, conversation
and model), and the usage routes that report it. `tokens_used` is what partner
limits read."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec

from ..actions.base import Action, Call, Context, Param, now_ms, register
from ..errors import BadRequest, NotFound
from ..actions.fields import MetaDict
from ..actions.ids import new_id
from ..actions.standard import ListAction, Table
from .common import Body, Item


class Usage(Item):
    type: str
    count: int
    meta: dict
    name: str | None = None
    description: str | None = None
    conversation_id: str | None = None
    message_id: str | None = None
    task_id: str | None = None
    contact_id: str | None = None
    blueprint_id: str | None = None
    bot_id: str | None = None
    dataset_id: str | None = None
    skillset_id: str | None = None
    ability_id: str | None = None


class _NoCreate(Body):
    meta: MetaDict | None = None


TABLE = Table(name="usage", noun="usage", item=Usage, create=_NoCreate, path="/usage", tag="Usage")


async def record_usage(conn, account_id: str, *, model: str, input_tokens: int, output_tokens: int,
                       conversation_id: str | None = None, message_id: str | None = None,
                       bot_id: str | None = None, contact_id: str | None = None, task_id: str | None = None,
                       dataset_id: str | None = None, skillset_id: str | None = None) -> str:
    """One `token` usage row for one completion."""
    now = now_ms()
    usage_id = new_id()
    await conn.execute(
        "INSERT INTO usage (id, account_id, type, count, model, input_tokens, output_tokens, meta, "
        "conversation_id, message_id, bot_id, contact_id, task_id, dataset_id, skillset_id, created_at, updated_at) "
        "VALUES ($1, $2, 'token', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
        usage_id, account_id, input_tokens + output_tokens, model, input_tokens, output_tokens,
        {"model": model, "inputTokens": input_tokens, "outputTokens": output_tokens},
        conversation_id, message_id, bot_id, contact_id, task_id, dataset_id, skillset_id, now)
    return usage_id


async def tokens_used(conn, account_id: str, since_ms: int) -> int:
    """Tokens the account's completions used since `since_ms` (epoch ms): for limits."""
    value = await conn.fetchval(
        "SELECT COALESCE(sum(count), 0) FROM usage WHERE account_id = $1 AND type = 'token' AND created_at >= $2",
        account_id, since_ms)
    return int(value)


# --- routes -----------------------------------------------------------------

class DatabaseUsage(msgspec.Struct):
    datasets: int
    records: int
    skillsets: int
    abilities: int
    files: int
    users: int


class AccountUsage(msgspec.Struct):
    tokens: int
    conversations: int
    messages: int
    database: DatabaseUsage


class BotUsage(msgspec.Struct):
    tokens: int
    conversations: int
    messages: int


class ConversationUsage(msgspec.Struct):
    tokens: int
    messages: int


class SeriesPoint(msgspec.Struct):
    date: int
    total: int


class UsageSeries(msgspec.Struct):
    tokens: list[SeriesPoint]
    conversations: list[SeriesPoint]
    messages: list[SeriesPoint]


RANGE_PARAMS = (
    Param("from", {"type": "string", "format": "date-time"}, "Count from this time (ISO 8601), inclusive"),
    Param("to", {"type": "string", "format": "date-time"}, "Count until this time (ISO 8601), exclusive"),
)
_MAX_MS = 2 ** 53


def _time_range(query: list[tuple[str, str]]) -> tuple[int, int]:
    lo, hi = 0, _MAX_MS
    for key, value in query:
        if key not in ("from", "to"):
            continue
        try:
            if len(value) > 64:
                raise ValueError
            when = datetime.fromisoformat(value.strip())
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            ms = int(when.timestamp() * 1000)
        except (ValueError, OverflowError, OSError):
            raise BadRequest(f"{key}: not an ISO 8601 date-time") from None
        if key == "from":
            lo = max(0, ms)
        else:
            hi = max(0, ms)
    return lo, hi


class FetchAccountUsage(Action):
    method = "GET"
    path = "/usage/fetch"
    tag = "Usage"
    summary = "The account's usage: tokens, conversations, messages and stored resources"
    response = AccountUsage

    async def run(self, ctx: Context, call: Call) -> AccountUsage:
        a = ctx.account_id
        row = await ctx.pool.fetchrow(
            "SELECT (SELECT COALESCE(sum(count), 0) FROM usage WHERE account_id = $1 AND type = 'token') AS tokens, "
            "(SELECT count(*) FROM conversations WHERE account_id = $1) AS conversations, "
            "(SELECT count(*) FROM messages WHERE account_id = $1) AS messages, "
            "(SELECT count(*) FROM datasets WHERE account_id = $1) AS datasets, "
            "(SELECT count(*) FROM records WHERE account_id = $1) AS records, "
            "(SELECT count(*) FROM skillsets WHERE account_id = $1) AS skillsets, "
            "(SELECT count(*) FROM abilities WHERE account_id = $1) AS abilities, "
            "(SELECT count(*) FROM files WHERE account_id = $1) AS files, "
            "(SELECT count(*) FROM accounts WHERE parent_id = $1) AS users", a)
        return AccountUsage(tokens=int(row["tokens"]), conversations=row["conversations"], messages=row["messages"],
                            database=DatabaseUsage(datasets=row["datasets"], records=row["records"],
                                                   skillsets=row["skillsets"], abilities=row["abilities"],
                                                   files=row["files"], users=row["users"]))


SERIES_DAYS = 30
_DAY_MS = 86_400_000


class FetchUsageSeries(Action):
    method = "GET"
    path = "/usage/series/fetch"
    tag = "Usage"
    summary = f"Daily totals of the last {SERIES_DAYS} days (UTC days; date = the day's start in epoch ms)"
    response = UsageSeries

    async def run(self, ctx: Context, call: Call) -> UsageSeries:
        since = (now_ms() // _DAY_MS - SERIES_DAYS + 1) * _DAY_MS
        a = ctx.account_id
        async with ctx.pool.connection() as conn:
            tokens = await conn.fetch(
                "SELECT created_at / 86400000 * 86400000 AS date, sum(count) AS total FROM usage "
                "WHERE account_id = $1 AND type = 'token' AND created_at >= $2 GROUP BY 1 ORDER BY 1", a, since)
            conversations = await conn.fetch(
                "SELECT created_at / 86400000 * 86400000 AS date, count(*) AS total FROM conversations "
                "WHERE account_id = $1 AND created_at >= $2 GROUP BY 1 ORDER BY 1", a, since)
            messages = await conn.fetch(
                "SELECT created_at / 86400000 * 86400000 AS date, count(*) AS total FROM messages "
                "WHERE account_id = $1 AND created_at >= $2 GROUP BY 1 ORDER BY 1", a, since)

        def points(rows) -> list[SeriesPoint]:
            return [SeriesPoint(date=int(r["date"]), total=int(r["total"])) for r in rows]

        return UsageSeries(tokens=points(tokens), conversations=points(conversations), messages=points(messages))


class FetchBotUsage(Action):
    method = "GET"
    path = "/bot/{botId}/usage/fetch"
    tag = "Bot"
    summary = "A bot's usage: tokens, conversations and messages (optionally in a time range)"
    response = BotUsage
    query_params = RANGE_PARAMS

    async def run(self, ctx: Context, call: Call) -> BotUsage:
        lo, hi = _time_range(call.query)
        bot_id = call.params["botId"]
        row = await ctx.pool.fetchrow(
            "SELECT (SELECT 1 FROM bots WHERE id = $1 AND account_id = $2) AS found, "
            "(SELECT COALESCE(sum(count), 0) FROM usage WHERE bot_id = $1 AND account_id = $2 AND type = 'token' "
            " AND created_at >= $3 AND created_at < $4) AS tokens, "
            "(SELECT count(*) FROM conversations WHERE bot_id = $1 AND account_id = $2 "
            " AND created_at >= $3 AND created_at < $4) AS conversations, "
            "(SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            " WHERE c.bot_id = $1 AND c.account_id = $2 AND m.created_at >= $3 AND m.created_at < $4) AS messages",
            bot_id, ctx.account_id, lo, hi)
        if row["found"] is None:
            raise NotFound("bot not found")
        return BotUsage(tokens=int(row["tokens"]), conversations=row["conversations"], messages=row["messages"])


class FetchConversationUsage(Action):
    method = "GET"
    path = "/conversation/{conversationId}/usage/fetch"
    tag = "Conversation"
    summary = "A conversation's usage: tokens and messages (optionally in a time range)"
    response = ConversationUsage
    query_params = RANGE_PARAMS
    session = True

    async def run(self, ctx: Context, call: Call) -> ConversationUsage:
        lo, hi = _time_range(call.query)
        row = await ctx.pool.fetchrow(
            "SELECT (SELECT 1 FROM conversations WHERE id = $1 AND account_id = $2) AS found, "
            "(SELECT COALESCE(sum(count), 0) FROM usage WHERE conversation_id = $1 AND account_id = $2 "
            " AND type = 'token' AND created_at >= $3 AND created_at < $4) AS tokens, "
            "(SELECT count(*) FROM messages WHERE conversation_id = $1 AND account_id = $2 "
            " AND created_at >= $3 AND created_at < $4) AS messages",
            call.params["conversationId"], ctx.account_id, lo, hi)
        if row["found"] is None:
            raise NotFound("conversation not found")
        return ConversationUsage(tokens=int(row["tokens"]), messages=row["messages"])


register(ListAction(TABLE, summary="List usage rows (one per completion)"), FetchAccountUsage(),
         FetchUsageSeries(), FetchBotUsage(), FetchConversationUsage())
