"""Bots: a model, a backstory, a dataset and a skillset, under one id; the session
tokens that start a widget's conversation with one; a bot's usage."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..actions.auth import enforce_limit
from ..actions.base import Action, Call, Context, now_ms
from ..actions.fields import Alias, Body, Description, IdResponse, MetaDict, Name, Ref, Visibility
from ..actions.ids import new_id
from ..actions.standard import Table, crud, record
from ..errors import NotFound
from . import conversation, memory
from .common import BOT_CONFIG, BotConfig, ConfigBody, Configured, config_of
from .rating import Rated, VoteAction
from .usage import UsageRange, tokens_in


class Bot(Configured):
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    blueprint_id: str | None = None
    visibility: str | None = None


class BotCreate(ConfigBody):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    blueprint_id: Ref | None = None
    visibility: Visibility | None = None


TABLE = Table(
    name="bots",
    noun="bot",
    item=Bot,
    create=BotCreate,
    tag="Bot",
    refs={
        "dataset_id": ("datasets", "dataset"),
        "skillset_id": ("skillsets", "skillset"),
        "blueprint_id": ("blueprints", "blueprint"),
    },
)

_CONFIG_SQL = f"SELECT {', '.join(BOT_CONFIG)} FROM bots WHERE id = $1 AND account_id = $2"


async def config(conn, account_id: str, bot_id: str) -> BotConfig | None:
    """The bot's configuration (None: no such bot here)."""
    row = await conn.fetchrow(_CONFIG_SQL, bot_id, account_id)
    return config_of(row) if row is not None else None


async def exists(conn, account_id: str, bot_id: str) -> bool:
    return await conn.fetchval("SELECT 1 FROM bots WHERE id = $1 AND account_id = $2", bot_id, account_id) is not None


# What a vote on a bot records (rating.py).
RATED = Rated(contact="NULL", bot="t.id", conversation="NULL", message="NULL", source="bots t")

_CLONE_COLUMNS = [c for c in TABLE.insert_columns if c not in ("id", "account_id", "created_at", "updated_at")]
_CLONE_SQL = (
    f"INSERT INTO bots (id, account_id, created_at, updated_at, {', '.join(_CLONE_COLUMNS)}) "
    f"SELECT $1, account_id, $3, $3, {', '.join(_CLONE_COLUMNS)} FROM bots "
    f"WHERE id = $2 AND account_id = $4 RETURNING id"
)


class CloneBot(Action):
    tag = "Bot"
    summary = "Clone a bot: a new bot with the same configuration"
    body = Body
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        async with ctx.pool.connection() as conn, conn.transaction():
            await enforce_limit(conn, ctx.principal, "bot", "bots")
            cloned = await conn.fetchval(_CLONE_SQL, new_id(), call.params["botId"], now_ms(), ctx.account_id)
            if cloned is None:
                raise NotFound("bot not found")
            await record(conn, ctx, TABLE, "create", cloned, {}, {"clonedFrom": call.params["botId"]})
        return IdResponse(id=cloned)


class BotSessionCreate(conversation.ConversationSessionCreate):
    messages: Annotated[list[conversation.SeedMessage], msgspec.Meta(max_length=1000)] | None = None
    meta: MetaDict | None = None


class BotSessionCreated(msgspec.Struct, rename="camel", omit_defaults=True):
    id: str
    conversation_id: str
    token: str
    expires_at: int
    messages: list[conversation.SeedMessage] | None = None


class CreateBotSession(Action):
    tag = "Bot"
    summary = "Start a conversation with a bot and create a session token for it (for widgets)"
    body = BotSessionCreate
    response = BotSessionCreated

    async def run(self, ctx: Context, call: Call) -> BotSessionCreated:
        body: BotSessionCreate = call.body
        bot_id = call.params["botId"]
        seed = body.messages or []
        async with ctx.pool.connection() as conn, conn.transaction():
            if not await exists(conn, ctx.account_id, bot_id):
                raise NotFound("bot not found")
            conversation_id = await conversation.start_with_bot(conn, ctx, bot_id, body.meta or {}, seed)
        _, token, expires_at = ctx.services.issue_session(ctx.account_id, conversation_id, body.duration_in_seconds)
        return BotSessionCreated(
            id=bot_id, conversation_id=conversation_id, token=token, expires_at=expires_at, messages=seed or None
        )


class BotUsage(msgspec.Struct):
    tokens: int
    conversations: int
    messages: int


class FetchBotUsage(Action):
    method = "GET"
    tag = "Bot"
    summary = "A bot's usage: tokens, conversations and messages (optionally in a time range)"
    query = UsageRange
    response = BotUsage

    async def run(self, ctx: Context, call: Call) -> BotUsage:
        r: UsageRange = call.query
        bot_id = call.params["botId"]
        async with ctx.pool.connection() as conn:
            if not await exists(conn, ctx.account_id, bot_id):
                raise NotFound("bot not found")
            conversations, messages = await conversation.bot_counts(conn, ctx.account_id, bot_id, r.lo, r.hi)
            tokens = await tokens_in(conn, ctx.account_id, r.lo, r.hi, bot_id=bot_id)
        return BotUsage(tokens=tokens, conversations=conversations, messages=messages)


ACTIONS: list[Action] = [
    memory.SearchMemories("/bot/{botId}/memory/search", scope="bot"),
    *crud(
        TABLE,
        list="/bot/list",
        fetch="/bot/{botId}/fetch",
        create="/bot/create",
        update="/bot/{botId}/update",
        delete="/bot/{botId}/delete",
    ),
    CloneBot("/bot/{botId}/clone"),
    VoteAction(TABLE, "/bot/{botId}/upvote", RATED),
    VoteAction(TABLE, "/bot/{botId}/downvote", RATED),
    CreateBotSession("/bot/{botId}/session/create"),
    FetchBotUsage("/bot/{botId}/usage/fetch"),
]
