"""Memories: facts a bot keeps about a contact."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..actions.base import Action, Call, Context
from ..actions.fields import Body, Description, Item, LongText, MetaDict, Name, Ref
from ..actions.standard import Table, crud, require_owned
from ..engine import retrieval


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


# --- search (the retrieval engine of records: engine/retrieval.py) -----------------

SEARCH_MAX = 20  # memories a search answers with
Search = Annotated[str, msgspec.Meta(min_length=1, max_length=retrieval.QUERY_MAX_CHARS)]


class MemorySearch(Body):
    search: Search
    bot_id: Ref | None = None
    contact_id: Ref | None = None


class ScopedMemorySearch(Body):
    search: Search


class FoundMemory(msgspec.Struct, omit_defaults=True):
    id: str
    text: str
    meta: dict | None = None


class MemorySearchResult(msgspec.Struct):
    items: list[FoundMemory]


class SearchMemories(Action):
    """The memories best matching `search`: the account's (narrowed by botId and
    contactId), or those of the bot or contact the path names (`scope`)."""

    tag = "Memory"
    response = MemorySearchResult

    def __init__(self, path: str, scope: str | None = None) -> None:
        super().__init__(path)
        self.scope = scope  # "bot" or "contact": the path's parent
        self.body = ScopedMemorySearch if scope else MemorySearch
        self.summary = f"Search a {scope}'s memories" if scope else "Search memories"

    async def run(self, ctx: Context, call: Call) -> MemorySearchResult:
        body = call.body
        bot_id = call.params.get("botId") if self.scope == "bot" else getattr(body, "bot_id", None)
        contact_id = call.params.get("contactId") if self.scope == "contact" else getattr(body, "contact_id", None)
        async with ctx.pool.connection(share=ctx.account_id) as conn:  # heavy: the account's share
            if self.scope:  # the parent must be the caller's
                table, given = ("bots", bot_id) if self.scope == "bot" else ("contacts", contact_id)
                await require_owned(conn, table, given, ctx.account_id, f"{self.scope} not found")
            found = await retrieval.search_memories(
                conn, ctx.account_id, body.search, bot_id=bot_id, contact_id=contact_id, limit=SEARCH_MAX
            )
        return MemorySearchResult(items=[FoundMemory(id=m.id, text=m.text, meta=m.meta) for m in found])


ACTIONS: list[Action] = [
    SearchMemories("/memory/search"),
    *crud(
        TABLE,
        list="/memory/list",
        fetch="/memory/{memoryId}/fetch",
        create="/memory/create",
        update="/memory/{memoryId}/update",
        delete="/memory/{memoryId}/delete",
        export="/memory/export",
    ),
]
