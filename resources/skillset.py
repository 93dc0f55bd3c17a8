"""Skillsets and their abilities (the functions a bot may call)."""

from __future__ import annotations

from ..actions.base import register
from ..actions.fields import Alias, Description, LongText, MetaDict, Name, Ref, Visibility
from ..actions.standard import Parent, Table, crud
from .common import Body, Item


class Skillset(Item):
    meta: dict
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    blueprint_id: str | None = None
    visibility: str | None = None


class SkillsetCreate(Body):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    blueprint_id: Ref | None = None
    visibility: Visibility | None = None


TABLE = Table(name="skillsets", noun="skillset", item=Skillset, create=SkillsetCreate, path="/skillset",
              tag="Skillset")

PARENT = Parent(table="skillsets", param="skillsetId", column="skillset_id", noun="skillset")


class Ability(Item):
    name: str
    description: str
    meta: dict
    instruction: str
    blueprint_id: str | None = None
    secret_id: str | None = None
    file_id: str | None = None
    bot_id: str | None = None
    space_id: str | None = None


class AbilityCreate(Body):
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    blueprint_id: Ref | None = None
    secret_id: Ref | None = None
    file_id: Ref | None = None
    bot_id: Ref | None = None
    space_id: Ref | None = None
    instruction: LongText | None = None


ABILITIES = Table(name="abilities", noun="ability", item=Ability, create=AbilityCreate,
                  path="/skillset/{skillsetId}/ability", tag="Skillset", parent=PARENT,
                  refs={"secret_id": ("secrets", "secret"), "file_id": ("files", "file"), "bot_id": ("bots", "bot")},
                  # the reference always returns these three; an ability created without them has them empty
                  defaults={"name": str, "description": str, "instruction": str})

register(*crud(TABLE), *crud(ABILITIES, export=True))
