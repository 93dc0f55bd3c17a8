"""Bots: a model, a backstory, a dataset and a skillset, under one id."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..actions.base import Action, Call, Context, register
from ..errors import NotFound
from ..actions.fields import Alias, Description, IdResponse, LongText, MetaDict, Name, Ref, Visibility
from ..actions.ids import new_id
from ..actions.standard import Table, crud, now_ms
from .common import Body, Item
from .rating import vote_actions

# `(?![\s\S])` is "end of input" in both Python and ECMA regexes; `$` would also
# match before a final newline in Python.
ModelName = Annotated[str, msgspec.Meta(max_length=256, pattern=r"^[\w.:\-]+(?:/\w+=[\w.\-]+)*(?![\s\S])",
                                        examples=["gpt-4o", "gpt-4o/temperature=0.2"])]


class Bot(Item):
    meta: dict
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    model: str | None = None
    backstory: str | None = None
    dataset_id: str | None = None
    skillset_id: str | None = None
    privacy: bool | None = None
    moderation: bool | None = None
    blueprint_id: str | None = None
    visibility: str | None = None


class BotCreate(Body):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    model: ModelName | None = None
    backstory: LongText | None = None
    dataset_id: Ref | None = None
    skillset_id: Ref | None = None
    privacy: bool | None = None
    moderation: bool | None = None
    blueprint_id: Ref | None = None
    visibility: Visibility | None = None


TABLE = Table(name="bots", noun="bot", item=Bot, create=BotCreate, path="/bot", tag="Bot",
              refs={"dataset_id": ("datasets", "dataset"), "skillset_id": ("skillsets", "skillset")})

_CLONE_COLUMNS = [c for c in TABLE.insert_columns if c not in ("id", "account_id", "created_at", "updated_at")]
_CLONE_SQL = (f"INSERT INTO bots (id, account_id, created_at, updated_at, {', '.join(_CLONE_COLUMNS)}) "
              f"SELECT $1, account_id, $3, $3, {', '.join(_CLONE_COLUMNS)} FROM bots "
              f"WHERE id = $2 AND account_id = $4 RETURNING id")


class CloneBot(Action):
    path = "/bot/{botId}/clone"
    tag = "Bot"
    summary = "Clone a bot: a new bot with the same configuration"
    body = Body
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        cloned = await ctx.pool.fetchval(_CLONE_SQL, new_id(), call.params["botId"], now_ms(), ctx.account_id)
        if cloned is None:
            raise NotFound("bot not found")
        return IdResponse(id=cloned)


register(*crud(TABLE), CloneBot(), *vote_actions(TABLE))
