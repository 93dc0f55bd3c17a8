"""Ratings: the up- and down-votes on bots, conversations and messages."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..actions.base import Action, Call, Context, now_ms
from ..actions.fields import Body, Description, IdResponse, Item
from ..actions.ids import new_id
from ..actions.standard import Table
from ..errors import NotFound


class Rating(Item):
    meta: dict
    value: int
    name: str | None = None
    description: str | None = None
    contact_id: str | None = None
    bot_id: str | None = None
    conversation_id: str | None = None
    message_id: str | None = None
    reason: str | None = None


class Upvote(Body):
    value: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100
    reason: Description | None = None


class Downvote(Body):
    value: Annotated[int, msgspec.Meta(ge=-100, le=-1)] = -100
    reason: Description | None = None


TABLE = Table(name="ratings", noun="rating", item=Rating, create=Upvote, tag="Rating")

# What a vote records about its target: (contact, bot, conversation, message), per target table.
_TARGET = {
    "bots": ("NULL", "t.id", "NULL", "NULL", "bots t"),
    "conversations": ("t.contact_id", "t.bot_id", "t.id", "NULL", "conversations t"),
    "messages": (
        "c.contact_id",
        "c.bot_id",
        "t.conversation_id",
        "t.id",
        "messages t JOIN conversations c ON c.id = t.conversation_id",
    ),
}


class VoteAction(Action):
    """`.../upvote` or `.../downvote` of a bot, conversation or message: a rating row
    that records its target (and the target's contact, bot and conversation)."""

    def __init__(self, target: Table, path: str) -> None:
        super().__init__(path)
        self.target = target
        verb = self.operation
        if verb not in ("upvote", "downvote"):
            raise ValueError(f"a vote route ends in /upvote or /downvote, got {path}")
        self.tag = target.tag
        self.summary = f"{verb.title()} a {target.noun}"
        self.body = Upvote if verb == "upvote" else Downvote
        self.response = IdResponse
        contact, bot, conversation, message, source = _TARGET[target.name]
        where = "t.id = $1 AND t.account_id = $2"
        if target.parent:
            where += f" AND t.{target.parent.column} = $7"
        self.sql = (
            "INSERT INTO ratings (id, account_id, created_at, updated_at, value, reason, "
            "contact_id, bot_id, conversation_id, message_id) "
            f"SELECT $3, t.account_id, $4, $4, $5, $6, {contact}, {bot}, {conversation}, {message} "
            f"FROM {source} WHERE {where} RETURNING id"
        )

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        target_id = call.params[self.target.id_param]
        args = [target_id, ctx.account_id, new_id(), now_ms(), call.body.value, call.body.reason]
        if self.target.parent:
            args.append(call.params[self.target.parent.param])
        if await ctx.pool.fetchval(self.sql, *args) is None:
            raise NotFound(f"{self.target.noun} not found")
        return IdResponse(id=target_id)
