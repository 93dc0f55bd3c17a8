"""Conversations and their messages."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..actions.auth import enforce_limit
from ..actions.base import Call, Context, register
from ..actions.fields import Description, LongText, MetaDict, Name, Ref
from ..actions.ids import new_id
from ..actions.standard import CreateAction, Parent, Table, crud, now_ms
from .bot import ModelName
from .common import Body, Item
from .rating import vote_actions

MessageType = Literal["user", "bot", "reasoning", "context", "instruction", "backstory", "activity", "checkpoint"]


class Conversation(Item):
    meta: dict
    name: str | None = None
    description: str | None = None
    contact_id: str | None = None
    task_id: str | None = None
    space_id: str | None = None
    bot_id: str | None = None
    model: str | None = None
    backstory: str | None = None
    dataset_id: str | None = None
    skillset_id: str | None = None
    privacy: bool | None = None
    moderation: bool | None = None


class SeedMessage(Body):
    type: MessageType
    text: LongText


class ConversationCreate(Body):
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    contact_id: Ref | None = None
    task_id: Ref | None = None
    space_id: Ref | None = None
    bot_id: Ref | None = None
    model: ModelName | None = None
    backstory: LongText | None = None
    dataset_id: Ref | None = None
    skillset_id: Ref | None = None
    privacy: bool | None = None
    moderation: bool | None = None


class ConversationCreateBody(ConversationCreate):
    messages: Annotated[list[SeedMessage], msgspec.Meta(max_length=1000)] | None = None


class ConversationCreated(msgspec.Struct, omit_defaults=True):
    id: str
    messages: list[SeedMessage] | None = None


TABLE = Table(name="conversations", noun="conversation", item=Conversation, create=ConversationCreate,
              path="/conversation", tag="Conversation",
              refs={"bot_id": ("bots", "bot"), "contact_id": ("contacts", "contact"),
                    "task_id": ("tasks", "task"), "dataset_id": ("datasets", "dataset"),
                    "skillset_id": ("skillsets", "skillset")})

PARENT = Parent(table="conversations", param="conversationId", column="conversation_id", noun="conversation")


class Entity(msgspec.Struct):
    type: str
    begin: int
    end: int
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


MESSAGES = Table(name="messages", noun="message", item=Message, create=MessageCreate,
                 path="/conversation/{conversationId}/message", tag="Conversation", parent=PARENT,
                 defaults={"entities": list})

_INSERT_MESSAGES = ("INSERT INTO messages (id, account_id, conversation_id, type, text, created_at, updated_at) "
                    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
                    "$6::bigint[], $6::bigint[])")


class CreateConversation(CreateAction):
    """Creates the conversation and, in the same transaction, its seed `messages`."""

    def __init__(self) -> None:
        super().__init__(TABLE)
        self.body = ConversationCreateBody
        self.response = ConversationCreated

    async def run(self, ctx: Context, call: Call) -> ConversationCreated:
        values = self.values(ctx, call)
        seed = call.body.messages or []
        async with ctx.pool.connection() as conn:
            async with conn.transaction():
                await self.insert(conn, ctx, call, values)
                await insert_seed(conn, ctx, values["id"], seed)
        return ConversationCreated(id=values["id"], messages=seed or None)


async def insert_seed(conn, ctx: Context, conversation_id: str, seed: list[SeedMessage]) -> None:
    """A new conversation's first messages, in one statement (within the caller's transaction)."""
    if not seed:
        return
    await enforce_limit(conn, ctx.principal, "message", "messages", adding=len(seed))
    n = len(seed)
    await conn.execute(_INSERT_MESSAGES, [new_id() for _ in seed], [ctx.account_id] * n,
                       [conversation_id] * n, [m.type for m in seed], [m.text for m in seed], [now_ms()] * n)


class CreateMessage(CreateAction):
    def __init__(self) -> None:
        super().__init__(MESSAGES)
        self.response = MessageCreated

    async def run(self, ctx: Context, call: Call) -> MessageCreated:
        values = self.values(ctx, call)
        async with ctx.pool.connection() as conn:
            await self.insert(conn, ctx, call, values)
        return MessageCreated(id=values["id"], entities=call.body.entities or [])


def _replace_create(actions, create):
    return [create if a.path == create.path else a for a in actions]


register(*_replace_create(crud(TABLE, export=True), CreateConversation()),
         *vote_actions(TABLE),
         *_replace_create(crud(MESSAGES), CreateMessage()),
         *vote_actions(MESSAGES))
