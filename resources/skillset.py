"""Skillsets and their abilities (the functions a bot may call)."""

from __future__ import annotations

from ..actions.base import Action
from ..actions.fields import Alias, Body, Description, Item, LongText, MetaDict, Name, Ref, Visibility
from ..actions.standard import Parent, Table, crud
from ..engine import abilities
from ..engine.job import ABILITIES_MAX


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


TABLE = Table(
    name="skillsets",
    noun="skillset",
    item=Skillset,
    create=SkillsetCreate,
    tag="Skillset",
    refs={"blueprint_id": ("blueprints", "blueprint")},
)

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

    # an action block botkit cannot run is a 400 now, not a surprise when a model calls it
    checks = {"instruction": abilities.check}


ABILITIES = Table(
    name="abilities",
    noun="ability",
    item=Ability,
    create=AbilityCreate,
    tag="Skillset",
    parent=PARENT,
    refs={
        "secret_id": ("secrets", "secret"),
        "file_id": ("files", "file"),
        "bot_id": ("bots", "bot"),
        "space_id": ("spaces", "space"),
        "blueprint_id": ("blueprints", "blueprint"),
    },
    # the reference always returns these three; an ability created without them has them empty
    defaults={"name": str, "description": str, "instruction": str},
)


async def abilities_of(conn, account_id: str, skillset_id: str) -> list:
    """A skillset's abilities as completions run them (oldest first): name,
    description, instruction, secret_id, bot_id."""
    return await conn.fetch(
        "SELECT name, description, instruction, secret_id, bot_id FROM abilities "
        "WHERE skillset_id = $1 AND account_id = $2 ORDER BY id LIMIT $3",
        skillset_id,
        account_id,
        ABILITIES_MAX,
    )


ACTIONS: list[Action] = [
    *crud(
        TABLE,
        list="/skillset/list",
        fetch="/skillset/{skillsetId}/fetch",
        create="/skillset/create",
        update="/skillset/{skillsetId}/update",
        delete="/skillset/{skillsetId}/delete",
    ),
    *crud(
        ABILITIES,
        list="/skillset/{skillsetId}/ability/list",
        fetch="/skillset/{skillsetId}/ability/{abilityId}/fetch",
        create="/skillset/{skillsetId}/ability/create",
        update="/skillset/{skillsetId}/ability/{abilityId}/update",
        delete="/skillset/{skillsetId}/ability/{abilityId}/delete",
        export="/skillset/{skillsetId}/ability/export",
    ),
]
