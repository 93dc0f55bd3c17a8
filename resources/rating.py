"""Ratings: the up- and down-votes on bots, conversations and messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec

from ..actions.base import Action, Call, Context, now_ms
from ..actions.fields import Body, Description, IdResponse, Item
from ..actions.ids import new_id
from ..actions.standard import Table, record
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


@dataclass(frozen=True)
class Rated:
    """What a vote records about its target, as SQL over the target's row `t`: its
    contact, bot, conversation and message, and the FROM clause that reaches them.
    Each target's module declares it (it is that module's SQL)."""

    contact: str
    bot: str
    conversation: str
    message: str
    source: str


class VoteAction(Action):
    """`.../upvote` or `.../downvote` of a bot, conversation or message: a rating row
    that records its target (and the target's contact, bot and conversation)."""

    def __init__(self, target: Table, path: str, rated: Rated) -> None:
        super().__init__(path)
        self.target = target
        verb = self.operation
        if verb not in ("upvote", "downvote"):
            raise ValueError(f"a vote route ends in /upvote or /downvote, got {path}")
        self.tag = target.tag
        self.summary = f"{verb.title()} a {target.noun}"
        self.body = Upvote if verb == "upvote" else Downvote
        self.response = IdResponse
        r = rated
        where = "t.id = $1 AND t.account_id = $2"
        if target.parent:
            where += f" AND t.{target.parent.column} = $7"
        self.sql = (
            "INSERT INTO ratings (id, account_id, created_at, updated_at, value, reason, "
            "contact_id, bot_id, conversation_id, message_id) "
            f"SELECT $3, t.account_id, $4, $4, $5, $6, {r.contact}, {r.bot}, {r.conversation}, {r.message} "
            f"FROM {r.source} WHERE {where} RETURNING id"
        )

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        target_id = call.params[self.target.id_param]
        args = [target_id, ctx.account_id, new_id(), now_ms(), call.body.value, call.body.reason]
        if self.target.parent:
            args.append(call.params[self.target.parent.param])
        async with ctx.pool.connection() as conn, conn.transaction():
            rating_id = await conn.fetchval(self.sql, *args)
            if rating_id is None:
                raise NotFound(f"{self.target.noun} not found")
            values = {self.target.parent.column: args[-1]} if self.target.parent else {}
            await record(conn, ctx, self.target, self.operation, target_id, values, {"ratingId": rating_id})
        return IdResponse(id=target_id)
