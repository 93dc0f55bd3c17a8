"""Memories: facts a bot keeps about a contact."""

from __future__ import annotations

from ..actions.base import register
from ..actions.fields import Description, LongText, MetaDict, Name, Ref
from ..actions.standard import Table, crud
from .common import Body, Item


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


TABLE = Table(name="memories", noun="memory", item=Memory, create=MemoryCreate, path="/memory", tag="Memory",
              refs={"contact_id": ("contacts", "contact"), "bot_id": ("bots", "bot")})

register(*crud(TABLE, export=True))
