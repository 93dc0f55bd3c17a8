"""Teams: the teams an account belongs to. botkit has no shared team membership, so
an account is in exactly one team, its own (the team's id is the account's id, its
name, description and meta the account's)."""

from __future__ import annotations

from ..actions.base import Action
from ..actions.fields import Body, Item
from ..actions.standard import ListAction, Table


class Team(Item):
    meta: dict
    name: str | None = None
    description: str | None = None


TABLE = Table(name="accounts", noun="team", item=Team, create=Body, tag="Team", owner="id")

ACTIONS: list[Action] = [ListAction(TABLE, "/team/list", summary="List the teams the account belongs to (its own)")]
