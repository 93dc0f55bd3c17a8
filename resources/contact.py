"""Contacts: the people who talk to bots, known by a fingerprint that is unique per account."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..actions.base import Action, Call, Context, register
from ..errors import NotFound
from ..actions.fields import Description, IdResponse, MetaDict, Name, Timestamp, check_meta
from ..actions.ids import new_id
from ..actions.standard import CreateAction, ListAction, Parent, Table, crud, now_ms
from . import conversation, memory, secret, task
from .common import Body, Item
from .rating import contact_ratings

Short = Annotated[str, msgspec.Meta(max_length=256)]
Fingerprint = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Contact(Item):
    meta: dict
    fingerprint: str
    name: str | None = None
    description: str | None = None
    email: str | None = None
    phone: str | None = None
    nick: str | None = None
    preferences: str | None = None
    verified_at: int | None = None


class ContactUpsert(Body):
    """What conversation/{id}/contact/upsert may set; create adds the rest."""
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    fingerprint: Fingerprint | None = None
    email: Short | None = None
    phone: Short | None = None
    nick: Short | None = None


class ContactCreate(ContactUpsert, kw_only=True):
    preferences: Description | None = None
    verified_at: Timestamp | None = None


class ContactEnsure(ContactCreate, kw_only=True):
    fingerprint: Fingerprint  # required here: it is what "ensure" looks up


TABLE = Table(name="contacts", noun="contact", item=Contact, create=ContactCreate, path="/contact",
              tag="Contact", defaults={"fingerprint": new_id})

PARENT = Parent(table="contacts", param="contactId", column="contact_id", noun="contact")

# The no-op DO UPDATE makes RETURNING give the existing row's id: one atomic
# statement, so concurrent ensures with one fingerprint agree on one contact.
_ENSURE_SQL = (TABLE.insert_sql + " ON CONFLICT (account_id, fingerprint) "
               "DO UPDATE SET fingerprint = EXCLUDED.fingerprint RETURNING id")


class EnsureContact(CreateAction):
    """The contact with this fingerprint: the existing one, or a new one made from the body.
    Idempotent, and safe under concurrent calls with the same fingerprint."""

    def __init__(self) -> None:
        super().__init__(TABLE)
        self.path = "/contact/ensure"
        self.summary = "Find the contact with this fingerprint, or create it"
        self.body = ContactEnsure

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        values = self.values(ctx, call)
        found = await ctx.pool.fetchval(_ENSURE_SQL, *(values[c] for c in TABLE.insert_columns))
        return IdResponse(id=found)


_UPSERT_FIELDS = ("name", "description", "meta", "email", "phone", "nick")


class UpsertConversationContact(Action):
    """The conversation's contact: with a fingerprint, the contact that has it (made when
    missing); without one, the conversation's current contact (made when it has none).
    Sent fields are written to it and the conversation points to it."""
    path = "/conversation/{conversationId}/contact/upsert"
    tag = "Conversation"
    summary = "Create or update the contact of a conversation"
    body = ContactUpsert
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        body = call.body
        if body.meta:
            check_meta(body.meta)
        sent = {f: getattr(body, f) for f in _UPSERT_FIELDS if getattr(body, f) is not None}
        now = now_ms()
        async with ctx.pool.connection() as conn:
            async with conn.transaction():
                current = await conn.fetchrow(
                    "SELECT contact_id FROM conversations WHERE id = $1 AND account_id = $2 FOR UPDATE",
                    call.params["conversationId"], ctx.account_id)
                if current is None:
                    raise NotFound("conversation not found")
                contact_id = None if body.fingerprint else current["contact_id"]
                if contact_id is None:
                    fingerprint = body.fingerprint or new_id()
                    contact_id = await conn.fetchval(
                        "INSERT INTO contacts (id, account_id, fingerprint, meta, created_at, updated_at) "
                        "VALUES ($1, $2, $3, '{}', $4, $4) ON CONFLICT (account_id, fingerprint) "
                        "DO UPDATE SET fingerprint = EXCLUDED.fingerprint RETURNING id",
                        new_id(), ctx.account_id, fingerprint, now)
                if sent:
                    assign = ", ".join(f"{c} = ${i}" for i, c in enumerate(sent, start=3))
                    await conn.execute(f"UPDATE contacts SET {assign}, updated_at = ${3 + len(sent)} "
                                       f"WHERE id = $1 AND account_id = $2",
                                       contact_id, ctx.account_id, *sent.values(), now)
                await conn.execute("UPDATE conversations SET contact_id = $3, updated_at = $4 "
                                   "WHERE id = $1 AND account_id = $2",
                                   call.params["conversationId"], ctx.account_id, contact_id, now)
        return IdResponse(id=contact_id)


def _nested(table: Table, noun: str, summary: str) -> ListAction:
    return ListAction(table, path=f"/contact/{{contactId}}/{noun}/list", parent=PARENT, summary=summary)


register(*crud(TABLE, export=True), EnsureContact(),
         _nested(conversation.TABLE, "conversation", "List a contact's conversations"),
         _nested(memory.TABLE, "memory", "List a contact's memories"),
         _nested(secret.TABLE, "secret", "List a contact's secrets"),
         _nested(task.TABLE, "task", "List a contact's tasks"),
         contact_ratings(PARENT), UpsertConversationContact())
