"""Memories: facts a bot keeps about a contact."""

from __future__ import annotations

from ..actions.base import Action
from ..actions.fields import Body, Description, Item, LongText, MetaDict, Name, Ref
from ..actions.standard import Table, crud


class Memory(Item):
    meta: dict
    text: str
    name: str | None = None
    description: str | None = None
    contact_id: str | None = None
    bot_id: str | None = None


class MemoryCreate(Body):
    text: LongText
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    contact_id: Ref | None = None
    bot_id: Ref | None = None


TABLE = Table(
    name="memories",
    noun="memory",
    item=Memory,
    create=MemoryCreate,
    tag="Memory",
    refs={"contact_id": ("contacts", "contact"), "bot_id": ("bots", "bot")},
)

MEMORIES_MAX = 20  # the newest memories of a contact that join a completion's context


async def recent(conn, account_id: str, contact_id: str, limit: int = MEMORIES_MAX) -> list:
    """A contact's newest memories (id, text), newest first."""
    return await conn.fetch(
        "SELECT id, text FROM memories WHERE contact_id = $1 AND account_id = $2 ORDER BY id DESC LIMIT $3",
        contact_id,
        account_id,
        limit,
    )


ACTIONS: list[Action] = crud(
    TABLE,
    list="/memory/list",
    fetch="/memory/{memoryId}/fetch",
    create="/memory/create",
    update="/memory/{memoryId}/update",
    delete="/memory/{memoryId}/delete",
    export="/memory/export",
)
