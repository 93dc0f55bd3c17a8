"""Session tokens for browser widgets: short-lived JWTs bound to one conversation,
carrying the routes they allow and their lifetime, nothing more."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..actions.auth import SESSION_DEFAULT_SECONDS, SESSION_MAX_SECONDS, enforce_limit, issue_session, session_routes
from ..actions.base import REGISTRY, Action, Call, Context, register
from ..errors import NotFound
from ..actions.fields import MetaDict, check_meta
from ..actions.ids import new_id
from ..actions.standard import now_ms
from . import conversation
from .common import Body

Duration = Annotated[float, msgspec.Meta(gt=0, le=SESSION_MAX_SECONDS, description=(
    f"Seconds the token stays valid (default {SESSION_DEFAULT_SECONDS}, at most {SESSION_MAX_SECONDS})"))]

# What a session may do: read its conversation and its messages (and, with the
# engine, complete/send/receive: those actions set `session = True` themselves).
for _action in REGISTRY:
    if _action.path in ("/conversation/{conversationId}/fetch", "/conversation/{conversationId}/message/list"):
        _action.session = True


class ConversationSessionCreate(Body):
    duration_in_seconds: Duration = SESSION_DEFAULT_SECONDS


class SessionCreated(msgspec.Struct, rename="camel"):
    id: str
    token: str
    expires_at: int


class BotSessionCreate(Body):
    duration_in_seconds: Duration = SESSION_DEFAULT_SECONDS
    messages: Annotated[list[conversation.SeedMessage], msgspec.Meta(max_length=1000)] | None = None
    meta: MetaDict | None = None


class BotSessionCreated(msgspec.Struct, rename="camel", omit_defaults=True):
    id: str
    conversation_id: str
    token: str
    expires_at: int
    messages: list[conversation.SeedMessage] | None = None


class CreateConversationSession(Action):
    path = "/conversation/{conversationId}/session/create"
    tag = "Conversation"
    summary = "Create a session token for one conversation (for widgets)"
    body = ConversationSessionCreate
    response = SessionCreated

    async def run(self, ctx: Context, call: Call) -> SessionCreated:
        conversation_id = call.params["conversationId"]
        found = await ctx.pool.fetchval("SELECT 1 FROM conversations WHERE id = $1 AND account_id = $2",
                                        conversation_id, ctx.account_id)
        if found is None:
            raise NotFound("conversation not found")
        session_id, token, expires_at = issue_session(
            ctx.services.session_key, ctx.account_id, session_routes(conversation_id, REGISTRY),
            call.body.duration_in_seconds)
        return SessionCreated(id=session_id, token=token, expires_at=expires_at)


_INSERT_CONVERSATION = ("INSERT INTO conversations (id, account_id, bot_id, meta, created_at, updated_at) "
                        "SELECT $1, $2, b.id, $4, $5, $5 FROM bots b WHERE b.id = $3 AND b.account_id = $2 "
                        "RETURNING id")


class CreateBotSession(Action):
    path = "/bot/{botId}/session/create"
    tag = "Bot"
    summary = "Start a conversation with a bot and create a session token for it (for widgets)"
    body = BotSessionCreate
    response = BotSessionCreated

    async def run(self, ctx: Context, call: Call) -> BotSessionCreated:
        body = call.body
        if body.meta:
            check_meta(body.meta)
        seed = body.messages or []
        conversation_id = new_id()
        async with ctx.pool.connection() as conn:
            async with conn.transaction():
                await enforce_limit(conn, ctx.principal, "conversation", "conversations")
                made = await conn.fetchval(_INSERT_CONVERSATION, conversation_id, ctx.account_id,
                                           call.params["botId"], body.meta or {}, now_ms())
                if made is None:
                    raise NotFound("bot not found")
                await conversation.insert_seed(conn, ctx, conversation_id, seed)
        session_id, token, expires_at = issue_session(
            ctx.services.session_key, ctx.account_id, session_routes(conversation_id, REGISTRY),
            body.duration_in_seconds)
        return BotSessionCreated(id=call.params["botId"], conversation_id=conversation_id, token=token,
                                 expires_at=expires_at, messages=seed or None)


register(CreateConversationSession(), CreateBotSession())
