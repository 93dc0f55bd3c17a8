"""Conversations and their messages, their attachments (files uploaded to a
conversation: each completion in it is given them), the session tokens widgets use
for one conversation, and a conversation's usage. (Completing a conversation is in
completion/; its contact upsert is in contact.py.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from ..actions.auth import SESSION_DEFAULT_SECONDS, SESSION_MAX_SECONDS, enforce_limit
from ..actions.base import Action, Call, Context, now_ms
from ..actions.fields import SAFE_INTEGER, Body, Description, Item, LongText, MetaDict, Name, Ref
from ..actions.ids import new_id
from ..actions.query import PageQuery
from ..actions.standard import CreateAction, FetchAction, ListAction, Parent, Table, crud, record, require_owned
from ..errors import NotFound
from . import file as files
from .common import BOT_CONFIG, ConfigBody, Configured
from .rating import Rated, VoteAction
from .usage import UsageRange, tokens_in

MessageType = Literal["user", "bot", "reasoning", "context", "instruction", "backstory", "activity", "checkpoint"]


class Conversation(Configured):
    name: str | None = None
    description: str | None = None
    contact_id: str | None = None
    task_id: str | None = None
    space_id: str | None = None
    bot_id: str | None = None


class SeedMessage(Body):
    type: MessageType
    text: LongText


class ConversationCreate(ConfigBody):
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    contact_id: Ref | None = None
    task_id: Ref | None = None
    space_id: Ref | None = None
    bot_id: Ref | None = None


class ConversationCreateBody(ConversationCreate):
    messages: Annotated[list[SeedMessage], msgspec.Meta(max_length=1000)] | None = None


class ConversationCreated(msgspec.Struct, omit_defaults=True):
    id: str
    messages: list[SeedMessage] | None = None


TABLE = Table(
    name="conversations",
    noun="conversation",
    item=Conversation,
    create=ConversationCreate,
    tag="Conversation",
    refs={
        "bot_id": ("bots", "bot"),
        "contact_id": ("contacts", "contact"),
        "task_id": ("tasks", "task"),
        "dataset_id": ("datasets", "dataset"),
        "skillset_id": ("skillsets", "skillset"),
        "space_id": ("spaces", "space"),
    },
)

PARENT = Parent(table="conversations", param="conversationId", column="conversation_id", noun="conversation")


class Entity(msgspec.Struct):
    type: str
    begin: Annotated[int, msgspec.Meta(ge=0, le=SAFE_INTEGER)]
    end: Annotated[int, msgspec.Meta(ge=0, le=SAFE_INTEGER)]
    text: str
    replacement: dict[str, Any] | None = None


class Message(Item):
    meta: dict
    type: str
    text: str
    name: str | None = None
    description: str | None = None


class MessageCreate(Body):
    type: MessageType
    text: LongText
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    entities: Annotated[list[Entity], msgspec.Meta(max_length=1000)] | None = None


class MessageCreated(msgspec.Struct):
    id: str
    entities: list[Entity]


MESSAGES = Table(
    name="messages",
    noun="message",
    item=Message,
    create=MessageCreate,
    tag="Conversation",
    parent=PARENT,
    defaults={"entities": list},
)


# What a vote on a conversation or a message records (rating.py).
RATED = Rated(contact="t.contact_id", bot="t.bot_id", conversation="t.id", message="NULL", source="conversations t")
MESSAGE_RATED = Rated(
    contact="c.contact_id",
    bot="c.bot_id",
    conversation="t.conversation_id",
    message="t.id",
    source="messages t JOIN conversations c ON c.id = t.conversation_id",
)


# --- the SQL of conversations and messages that other modules use ---------------


@dataclass(slots=True)
class NewMessage:
    type: str
    text: str
    meta: dict | None = None
    entities: list | None = None


# meta and entities go as JSON text: a list inside the array would read as a dimension
_INSERT_MESSAGES = (
    "INSERT INTO messages (id, account_id, conversation_id, type, text, meta, entities, "
    "created_at, updated_at) "
    "SELECT id, $2, $3, type, text, meta::jsonb, entities::jsonb, $8, $8 FROM unnest($1::text[], "
    "$4::text[], $5::text[], $6::text[], $7::text[]) AS m (id, type, text, meta, entities)"
)
_JSON = msgspec.json.Encoder()


async def insert_messages(conn, account_id: str, conversation_id: str, messages: list[NewMessage]) -> list[str]:
    """Messages of one conversation, in one statement, in order (ids increase); NUL
    characters, which text columns refuse, are dropped."""
    ids = [new_id() for _ in messages]
    await conn.execute(
        _INSERT_MESSAGES,
        ids,
        account_id,
        conversation_id,
        [m.type for m in messages],
        [m.text.replace("\x00", "") for m in messages],
        [_JSON.encode(m.meta or {}).decode() for m in messages],
        [_JSON.encode(m.entities or []).decode() for m in messages],
        now_ms(),
    )
    return ids


async def insert_seed(conn, ctx: Context, conversation_id: str, seed: list[SeedMessage]) -> None:
    """A new conversation's first messages (within the caller's transaction)."""
    if seed:
        await enforce_limit(conn, ctx.principal, "message", "messages", adding=len(seed))
        await insert_messages(conn, ctx.account_id, conversation_id, [NewMessage(m.type, m.text) for m in seed])


_RUN_CONFIG = (
    f"SELECT id, bot_id, contact_id, task_id, {', '.join(BOT_CONFIG)} FROM conversations "
    "WHERE id = $1 AND account_id = $2"
)


async def run_config(conn, account_id: str, conversation_id: str):
    """What a completion of this conversation runs with (None: no such conversation here)."""
    return await conn.fetchrow(_RUN_CONFIG, conversation_id, account_id)


# A checkpoint stands for every message up to the one its meta names
# (`compacted.through`: the newest it summarised; messages stored while it was being
# written come after it), else up to itself (a checkpoint a client stored). The
# partial index messages_checkpoint finds the last one; messages_conversation serves
# the rest, so a completion reads no message the checkpoint covers.
_LAST_CHECKPOINT = (
    "SELECT id, text, LEAST(id, COALESCE((meta #>> '{compacted,through}') COLLATE \"C\", id)) AS through "
    "FROM messages WHERE conversation_id = $1 AND account_id = $2 AND type = 'checkpoint' ORDER BY id DESC LIMIT 1"
)
_AFTER = (
    "SELECT id, type, text, meta FROM messages WHERE conversation_id = $1 AND account_id = $2 "
    "AND id > $3 AND type <> 'checkpoint' ORDER BY id DESC LIMIT $4"
)


async def last_checkpoint(conn, account_id: str, conversation_id: str):
    """The conversation's last checkpoint (id, text, through), or None."""
    return await conn.fetchrow(_LAST_CHECKPOINT, conversation_id, account_id)


async def messages_after(conn, account_id: str, conversation_id: str, through: str, limit: int) -> list:
    """The newest `limit` messages after `through` ("": from the first), checkpoints
    aside, newest first, as rows (id, type, text, meta)."""
    return await conn.fetch(_AFTER, conversation_id, account_id, through, limit)


async def history(conn, account_id: str, conversation_id: str, limit: int) -> list[tuple[str, str, dict | None]]:
    """What a completion reads, oldest first, as (type, text, meta): the last
    checkpoint (one of the `limit` messages) and the newest messages after what it
    covers; nothing it covers is read."""
    checkpoint = await last_checkpoint(conn, account_id, conversation_id) if limit > 1 else None
    through = checkpoint["through"] if checkpoint is not None else ""
    rows = await messages_after(conn, account_id, conversation_id, through, limit - (checkpoint is not None))
    head = [("checkpoint", checkpoint["text"], None)] if checkpoint is not None else []
    return head + [(r["type"], r["text"], r["meta"]) for r in reversed(rows)]


# Newest first, until `$5` characters are read (the row that crosses it included):
# the running sum streams over the index scan, so a long conversation is not loaded
# to compact it.
_TO_COMPACT = (
    "SELECT id, type, text FROM (SELECT id, type, text, sum(length(text)) OVER (ORDER BY id DESC) AS upto "
    "FROM messages WHERE conversation_id = $1 AND account_id = $2 AND id > $3 AND type <> 'checkpoint' "
    "ORDER BY id DESC LIMIT $4) m WHERE upto - length(text) < $5 ORDER BY id DESC"
)


async def to_compact(conn, account_id: str, conversation_id: str, through: str, limit: int, chars: int) -> list:
    """The newest messages after `through`, newest first, as rows (id, type, text):
    at most `limit`, and about `chars` characters of text."""
    return await conn.fetch(_TO_COMPACT, conversation_id, account_id, through, limit, chars)


async def store_checkpoint(conn, ctx: Context, conversation_id: str, text: str, meta: dict) -> str:
    """A checkpoint message and its event (within the caller's transaction); 404 when
    the conversation was deleted meanwhile."""
    await require_owned(conn, "conversations", conversation_id, ctx.account_id, "conversation not found")
    (message_id,) = await insert_messages(conn, ctx.account_id, conversation_id, [NewMessage("checkpoint", text, meta)])
    values = {"conversation_id": conversation_id}
    await record(conn, ctx, MESSAGES, "create", message_id, values, {"type": "checkpoint"})
    return message_id


async def contact_of(conn, account_id: str, conversation_id: str):
    """The conversation's row, locked for this transaction, with its contact_id (None: no such conversation)."""
    return await conn.fetchrow(
        "SELECT contact_id FROM conversations WHERE id = $1 AND account_id = $2 FOR UPDATE", conversation_id, account_id
    )


async def set_contact(conn, account_id: str, conversation_id: str, contact_id: str, now: int) -> None:
    await conn.execute(
        "UPDATE conversations SET contact_id = $3, updated_at = $4 WHERE id = $1 AND account_id = $2",
        conversation_id,
        account_id,
        contact_id,
        now,
    )


async def start_with_bot(conn, ctx: Context, bot_id: str, meta: dict, seed: list[SeedMessage]) -> str:
    """A new conversation with a bot (known to be the caller's), and its seed messages."""
    await enforce_limit(conn, ctx.principal, "conversation", "conversations")
    conversation_id = new_id()
    now = now_ms()
    await conn.execute(
        "INSERT INTO conversations (id, account_id, bot_id, meta, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $5)",
        conversation_id,
        ctx.account_id,
        bot_id,
        meta,
        now,
    )
    await insert_seed(conn, ctx, conversation_id, seed)
    return conversation_id


async def bot_counts(conn, account_id: str, bot_id: str, lo: int, hi: int) -> tuple[int, int]:
    """(conversations, messages) of one bot made in [lo, hi) ms."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM conversations WHERE bot_id = $1 AND account_id = $2 "
        " AND created_at >= $3 AND created_at < $4) AS conversations, "
        "(SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        " WHERE c.bot_id = $1 AND c.account_id = $2 AND m.created_at >= $3 AND m.created_at < $4) AS messages",
        bot_id,
        account_id,
        lo,
        hi,
    )
    return row["conversations"], row["messages"]


# --- actions ------------------------------------------------------------------------


class CreateConversation(CreateAction):
    """Creates the conversation and, in the same transaction, its seed `messages`."""

    body = ConversationCreateBody
    response = ConversationCreated

    async def run(self, ctx: Context, call: Call) -> ConversationCreated:
        values = self.values(ctx, call)
        seed = call.body.messages or []
        async with ctx.pool.connection() as conn, conn.transaction():
            await self.insert(conn, ctx, call, values)
            await insert_seed(conn, ctx, values["id"], seed)
        return ConversationCreated(id=values["id"], messages=seed or None)


class CreateMessage(CreateAction):
    response = MessageCreated

    async def run(self, ctx: Context, call: Call) -> MessageCreated:
        values = self.values(ctx, call)
        async with ctx.pool.connection() as conn, conn.transaction():
            await self.insert(conn, ctx, call, values)
        return MessageCreated(id=values["id"], entities=call.body.entities or [])


Duration = Annotated[
    float,
    msgspec.Meta(
        gt=0,
        lt=SAFE_INTEGER,
        description=(
            f"Seconds the token stays valid (default {SESSION_DEFAULT_SECONDS}; "
            f"more than {SESSION_MAX_SECONDS} is taken as {SESSION_MAX_SECONDS})"
        ),
    ),
]


class ConversationSessionCreate(Body):
    duration_in_seconds: Duration = SESSION_DEFAULT_SECONDS


class SessionCreated(msgspec.Struct, rename="camel"):
    id: str  # the conversation's id, as the reference says
    token: str
    expires_at: int


class CreateConversationSession(Action):
    """A session token carries the routes it allows (every action made with
    session=True, bound to this conversation) and its lifetime, nothing more."""

    tag = "Conversation"
    summary = "Create a session token for one conversation (for widgets)"
    body = ConversationSessionCreate
    response = SessionCreated

    async def run(self, ctx: Context, call: Call) -> SessionCreated:
        conversation_id = call.params["conversationId"]
        if (
            await ctx.pool.fetchval(
                "SELECT 1 FROM conversations WHERE id = $1 AND account_id = $2", conversation_id, ctx.account_id
            )
            is None
        ):
            raise NotFound("conversation not found")
        _, token, expires_at = ctx.services.issue_session(
            ctx.account_id, conversation_id, call.body.duration_in_seconds
        )
        return SessionCreated(id=conversation_id, token=token, expires_at=expires_at)


class ConversationUsage(msgspec.Struct):
    tokens: int
    messages: int


class FetchConversationUsage(Action):
    method = "GET"
    tag = "Conversation"
    summary = "A conversation's usage: tokens and messages (optionally in a time range)"
    query = UsageRange
    response = ConversationUsage

    async def run(self, ctx: Context, call: Call) -> ConversationUsage:
        r: UsageRange = call.query
        conversation_id = call.params["conversationId"]
        async with ctx.pool.connection() as conn:
            messages = await conn.fetchval(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM conversations WHERE id = $1 AND account_id = $2) THEN "
                "(SELECT count(*) FROM messages WHERE conversation_id = $1 AND account_id = $2 "
                " AND created_at >= $3 AND created_at < $4) END",
                conversation_id,
                ctx.account_id,
                r.lo,
                r.hi,
            )
            if messages is None:
                raise NotFound("conversation not found")
            tokens = await tokens_in(conn, ctx.account_id, r.lo, r.hi, conversation_id=conversation_id)
        return ConversationUsage(tokens=tokens, messages=messages)


# --- attachments ---------------------------------------------------------------------

ATTACHMENTS_IN_CONTEXT = 10  # the newest attachments a completion is given


class UploadAttachment(files.UploadFile):
    """A new file of the account, attached to the conversation, with the content the
    request gives (as `file/{id}/upload` takes it); the answer names the file."""

    tag = "Conversation"
    summary = "Upload a file as a conversation attachment (the bodies of file/{fileId}/upload)"
    session = True

    async def run(self, ctx: Context, call: Call) -> files.UploadResult:
        conversation_id = call.params["conversationId"]
        spec = call.body.file if call.body is not None and isinstance(call.body.file, files.UploadSpec) else None
        name = spec.name if spec is not None else None
        now = now_ms()
        file_id = new_id()
        async with ctx.pool.connection() as conn, conn.transaction():
            await require_owned(conn, "conversations", conversation_id, ctx.account_id, "conversation not found")
            await files.insert_row(conn, ctx, file_id, name, {"conversationId": conversation_id}, now)
            await conn.execute(
                "INSERT INTO attachments (id, account_id, conversation_id, file_id, created_at, updated_at) "
                "VALUES ($1, $2, $3, $1, $4, $4)",
                file_id,
                ctx.account_id,
                conversation_id,
                now,
            )
            await record(conn, ctx, TABLE, "attachment.create", conversation_id, {"file_id": file_id})
        answer = await self.upload_into(ctx, call, file_id)
        answer.name = answer.name or name
        return answer


class ListAttachments(ListAction):
    """A conversation's attachments (the files), newest first by default."""

    query = PageQuery
    summary = "List a conversation's attachments"

    def select(self, ctx: Context, call: Call, q, cursor: str | None, limit: int) -> tuple[str, list]:
        cols = ", ".join(f"f.{c}" for c in files.TABLE.columns)
        where = "a.conversation_id = $1 AND a.account_id = $2"
        args: list[Any] = [call.params["conversationId"], ctx.account_id, limit]
        if cursor:
            where += f" AND a.id {'<' if q.desc else '>'} $4"
            args.append(cursor)
        sql = (
            f"SELECT {cols} FROM attachments a JOIN files f ON f.id = a.file_id WHERE {where} "
            f"ORDER BY a.id {'DESC' if q.desc else 'ASC'} LIMIT $3"
        )
        return sql, args


async def attachments_of(conn, account_id: str, conversation_id: str, limit: int = ATTACHMENTS_IN_CONTEXT) -> list:
    """The newest attachments with content (id, name, type, size, storage_key), oldest first."""
    rows = await conn.fetch(
        "SELECT f.id, f.name, f.type, f.size, f.storage_key FROM attachments a JOIN files f ON f.id = a.file_id "
        "WHERE a.conversation_id = $1 AND a.account_id = $2 AND f.uploaded_at IS NOT NULL ORDER BY a.id DESC LIMIT $3",
        conversation_id,
        account_id,
        limit,
    )
    return list(reversed(rows))


ACTIONS: list[Action] = [
    *crud(
        TABLE,
        list="/conversation/list",
        create=CreateConversation(TABLE, "/conversation/create"),
        fetch=FetchAction(TABLE, "/conversation/{conversationId}/fetch", session=True),
        update="/conversation/{conversationId}/update",
        delete="/conversation/{conversationId}/delete",
        export="/conversation/export",
    ),
    VoteAction(TABLE, "/conversation/{conversationId}/upvote", RATED),
    VoteAction(TABLE, "/conversation/{conversationId}/downvote", RATED),
    *crud(
        MESSAGES,
        list=ListAction(MESSAGES, "/conversation/{conversationId}/message/list", session=True, budget="history"),
        fetch="/conversation/{conversationId}/message/{messageId}/fetch",
        create=CreateMessage(MESSAGES, "/conversation/{conversationId}/message/create", budget="messages"),
        update="/conversation/{conversationId}/message/{messageId}/update",
        delete="/conversation/{conversationId}/message/{messageId}/delete",
    ),
    VoteAction(MESSAGES, "/conversation/{conversationId}/message/{messageId}/upvote", MESSAGE_RATED),
    VoteAction(MESSAGES, "/conversation/{conversationId}/message/{messageId}/downvote", MESSAGE_RATED),
    UploadAttachment("/conversation/{conversationId}/attachment/upload"),
    ListAttachments(files.TABLE, "/conversation/{conversationId}/attachment/list", parent=PARENT, session=True),
    CreateConversationSession("/conversation/{conversationId}/session/create"),
    FetchConversationUsage("/conversation/{conversationId}/usage/fetch", session=True),
]
