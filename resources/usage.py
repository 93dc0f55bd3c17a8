"""Usage: one row per completion (tokens in and out, per account, bot, conversation
and model), and the account's usage routes. `tokens_used` is what partner limits
read; bot/{id}/usage/fetch and conversation/{id}/usage/fetch (in bot.py and
conversation.py) read `tokens_in` and take the `UsageRange` query."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec

from ..actions.base import Action, Call, Context, now_ms
from ..actions.fields import Body, Item, MetaDict
from ..actions.ids import new_id
from ..actions.standard import ListAction, Table, count_owned, daily_counts


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


TABLE = Table(name="usage", noun="usage", item=Usage, create=_NoCreate, tag="Usage")


async def record_usage(
    conn,
    account_id: str,
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    conversation_id: str | None = None,
    message_id: str | None = None,
    bot_id: str | None = None,
    contact_id: str | None = None,
    task_id: str | None = None,
    dataset_id: str | None = None,
    skillset_id: str | None = None,
) -> str:
    """One `token` usage row for one completion."""
    now = now_ms()
    usage_id = new_id()
    await conn.execute(
        "INSERT INTO usage (id, account_id, type, count, model, input_tokens, output_tokens, meta, "
        "conversation_id, message_id, bot_id, contact_id, task_id, dataset_id, skillset_id, created_at, updated_at) "
        "VALUES ($1, $2, 'token', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
        usage_id,
        account_id,
        input_tokens + output_tokens,
        model,
        input_tokens,
        output_tokens,
        {"model": model, "inputTokens": input_tokens, "outputTokens": output_tokens},
        conversation_id,
        message_id,
        bot_id,
        contact_id,
        task_id,
        dataset_id,
        skillset_id,
        now,
    )
    return usage_id


async def tokens_used(conn, account_id: str, since_ms: int) -> int:
    """Tokens the account's completions used since `since_ms` (epoch ms): for limits."""
    value = await conn.fetchval(
        "SELECT COALESCE(sum(count), 0) FROM usage WHERE account_id = $1 AND type = 'token' AND created_at >= $2",
        account_id,
        since_ms,
    )
    return int(value)


async def tokens_in(
    conn, account_id: str, lo: int, hi: int, *, bot_id: str | None = None, conversation_id: str | None = None
) -> int:
    """Tokens used in [lo, hi) ms by one bot's or one conversation's completions."""
    column, value = ("bot_id", bot_id) if bot_id is not None else ("conversation_id", conversation_id)
    total = await conn.fetchval(
        f"SELECT COALESCE(sum(count), 0) FROM usage WHERE {column} = $1 AND account_id = $2 AND type = 'token' "
        "AND created_at >= $3 AND created_at < $4",
        value,
        account_id,
        lo,
        hi,
    )
    return int(total)


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


class SeriesPoint(msgspec.Struct):
    date: int
    total: int


class UsageSeries(msgspec.Struct):
    tokens: list[SeriesPoint]
    conversations: list[SeriesPoint]
    messages: list[SeriesPoint]


_MAX_MS = 2**53
When = Annotated[str, msgspec.Meta(max_length=64, extra_json_schema={"format": "date-time"})]


def _ms(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        when = datetime.fromisoformat(value.strip())
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0, int(when.timestamp() * 1000))
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{name}: not an ISO 8601 date-time") from None


class UsageRange(msgspec.Struct, kw_only=True):
    """A time range: `from` (inclusive) and `to` (exclusive), ISO 8601."""

    start: Annotated[When, msgspec.Meta(description="Count from this time (ISO 8601), inclusive")] | None = (
        msgspec.field(default=None, name="from")
    )
    end: Annotated[When, msgspec.Meta(description="Count until this time (ISO 8601), exclusive")] | None = (
        msgspec.field(default=None, name="to")
    )

    def __post_init__(self) -> None:
        self.lo, self.hi  # noqa: B018  (a bad date is a 400 when the query is decoded)

    @property
    def lo(self) -> int:
        return _ms("from", self.start, 0)

    @property
    def hi(self) -> int:
        return _ms("to", self.end, _MAX_MS)


# What the account's usage counts, table by table (the column naming the account).
_COUNTED = {
    "conversations": "account_id",
    "messages": "account_id",
    "datasets": "account_id",
    "records": "account_id",
    "skillsets": "account_id",
    "abilities": "account_id",
    "files": "account_id",
    "accounts": "parent_id",
}


class FetchAccountUsage(Action):
    method = "GET"
    tag = "Usage"
    summary = "The account's usage: tokens, conversations, messages and stored resources"
    response = AccountUsage

    async def run(self, ctx: Context, call: Call) -> AccountUsage:
        a = ctx.account_id
        async with ctx.pool.connection() as conn:
            tokens = await conn.fetchval(
                "SELECT COALESCE(sum(count), 0) FROM usage WHERE account_id = $1 AND type = 'token'", a
            )
            n = await count_owned(conn, a, _COUNTED)
        return AccountUsage(
            tokens=int(tokens),
            conversations=n["conversations"],
            messages=n["messages"],
            database=DatabaseUsage(
                datasets=n["datasets"],
                records=n["records"],
                skillsets=n["skillsets"],
                abilities=n["abilities"],
                files=n["files"],
                users=n["accounts"],
            ),
        )


SERIES_DAYS = 30
_DAY_MS = 86_400_000


class FetchUsageSeries(Action):
    method = "GET"
    tag = "Usage"
    summary = f"Daily totals of the last {SERIES_DAYS} days (UTC days; date = the day's start in epoch ms)"
    response = UsageSeries

    async def run(self, ctx: Context, call: Call) -> UsageSeries:
        since = (now_ms() // _DAY_MS - SERIES_DAYS + 1) * _DAY_MS
        a = ctx.account_id
        async with ctx.pool.connection() as conn:
            tokens = await conn.fetch(
                "SELECT created_at / 86400000 * 86400000 AS date, sum(count) AS total FROM usage "
                "WHERE account_id = $1 AND type = 'token' AND created_at >= $2 GROUP BY 1 ORDER BY 1",
                a,
                since,
            )
            conversations = await daily_counts(conn, "conversations", a, since)
            messages = await daily_counts(conn, "messages", a, since)

        def points(rows) -> list[SeriesPoint]:
            return [SeriesPoint(date=int(r["date"]), total=int(r["total"])) for r in rows]

        return UsageSeries(tokens=points(tokens), conversations=points(conversations), messages=points(messages))


ACTIONS: list[Action] = [
    FetchAccountUsage("/usage/fetch"),
    ListAction(TABLE, "/usage/list", summary="List usage rows (one per completion)"),
    FetchUsageSeries("/usage/series/fetch"),
]
