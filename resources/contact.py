"""Contacts: the people who talk to bots, known by a fingerprint that is unique per
account; the lists of what belongs to a contact; and a conversation's contact.

`conversation/{conversationId}/contact/upsert` is here, not in conversation.py: it
writes contacts, and conversation.py cannot import this module, which imports it
(to list a contact's conversations)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..actions.base import Action, Call, Context, now_ms
from ..actions.fields import Body, Description, IdResponse, Item, MetaDict, Name, Timestamp
from ..actions.ids import new_id
from ..actions.standard import CreateAction, ListAction, Parent, Table, crud, record, require_owned
from ..errors import NotFound
from . import conversation, memory, rating, secret, space, task

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


TABLE = Table(
    name="contacts", noun="contact", item=Contact, create=ContactCreate, tag="Contact", defaults={"fingerprint": new_id}
)

PARENT = Parent(table="contacts", param="contactId", column="contact_id", noun="contact")

# The no-op DO UPDATE makes RETURNING give the existing row's id: one atomic
# statement, so concurrent ensures with one fingerprint agree on one contact.
_ENSURE_SQL = (
    TABLE.insert_sql + " ON CONFLICT (account_id, fingerprint) "
    "DO UPDATE SET fingerprint = EXCLUDED.fingerprint RETURNING id, xmax = 0 AS made"
)


async def resolve(conn, ctx: Context, given: str | ContactEnsure) -> str:
    """A completion's `contactId`: a contact of this account by id, or by fingerprint
    (found, or made from what is given)."""
    if isinstance(given, str):
        await require_owned(conn, "contacts", given, ctx.account_id, "contactId: contact not found")
        return given
    return await ENSURE.ensure(conn, ctx, Call(params={}, body=given))


class EnsureContact(CreateAction):
    """The contact with this fingerprint: the existing one, or a new one made from the body.
    Idempotent, and safe under concurrent calls with the same fingerprint."""

    summary = "Find the contact with this fingerprint, or create it"
    body = ContactEnsure

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        async with ctx.pool.connection() as conn, conn.transaction():
            return IdResponse(id=await self.ensure(conn, ctx, call))

    async def ensure(self, conn, ctx: Context, call: Call) -> str:
        """The contact's id; a contact made now is recorded (`contact.create`)."""
        values = self.values(ctx, call)
        row = await conn.fetchrow(_ENSURE_SQL, *(values[c] for c in TABLE.insert_columns))
        if row["made"]:  # xmax = 0: inserted, not the conflict's update
            await record(conn, ctx, TABLE, "create", row["id"], {})
        return row["id"]


ENSURE = EnsureContact(TABLE, "/contact/ensure")


_UPSERT_FIELDS = ("name", "description", "meta", "email", "phone", "nick")


class UpsertConversationContact(Action):
    """The conversation's contact: with a fingerprint, the contact that has it (made when
    missing); without one, the conversation's current contact (made when it has none).
    Sent fields are written to it and the conversation points to it."""

    tag = "Conversation"
    summary = "Create or update the contact of a conversation"
    body = ContactUpsert
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        body = call.body
        sent = {f: getattr(body, f) for f in _UPSERT_FIELDS if getattr(body, f) is not None}
        now = now_ms()
        async with ctx.pool.connection() as conn, conn.transaction():
            current = await conversation.contact_of(conn, ctx.account_id, call.params["conversationId"])
            if current is None:
                raise NotFound("conversation not found")
            contact_id = None if body.fingerprint else current["contact_id"]
            if contact_id is None:
                fingerprint = body.fingerprint or new_id()
                contact_id = await conn.fetchval(
                    "INSERT INTO contacts (id, account_id, fingerprint, meta, created_at, updated_at) "
                    "VALUES ($1, $2, $3, '{}', $4, $4) ON CONFLICT (account_id, fingerprint) "
                    "DO UPDATE SET fingerprint = EXCLUDED.fingerprint RETURNING id",
                    new_id(),
                    ctx.account_id,
                    fingerprint,
                    now,
                )
            if sent:
                assign = ", ".join(f"{c} = ${i}" for i, c in enumerate(sent, start=3))
                await conn.execute(
                    f"UPDATE contacts SET {assign}, updated_at = ${3 + len(sent)} WHERE id = $1 AND account_id = $2",
                    contact_id,
                    ctx.account_id,
                    *sent.values(),
                    now,
                )
            await conversation.set_contact(conn, ctx.account_id, call.params["conversationId"], contact_id, now)
        return IdResponse(id=contact_id)


ACTIONS: list[Action] = [
    *crud(
        TABLE,
        list="/contact/list",
        fetch="/contact/{contactId}/fetch",
        create="/contact/create",
        update="/contact/{contactId}/update",
        delete="/contact/{contactId}/delete",
        export="/contact/export",
    ),
    ENSURE,
    ListAction(
        conversation.TABLE,
        "/contact/{contactId}/conversation/list",
        parent=PARENT,
        summary="List a contact's conversations",
    ),
    ListAction(memory.TABLE, "/contact/{contactId}/memory/list", parent=PARENT, summary="List a contact's memories"),
    memory.SearchMemories("/contact/{contactId}/memory/search", scope="contact"),
    ListAction(
        rating.TABLE, "/contact/{contactId}/rating/list", parent=PARENT, summary="List the ratings a contact gave"
    ),
    ListAction(secret.TABLE, "/contact/{contactId}/secret/list", parent=PARENT, summary="List a contact's secrets"),
    secret.VerifySecret("/contact/{contactId}/secret/{secretId}/verify", contact=True),
    secret.RevokeSecret("/contact/{contactId}/secret/{secretId}/revoke", contact=True),
    secret.AuthenticateSecret("/contact/{contactId}/secret/{secretId}/authenticate", contact=True),
    ListAction(space.TABLE, "/contact/{contactId}/space/list", parent=PARENT, summary="List a contact's spaces"),
    ListAction(task.TABLE, "/contact/{contactId}/task/list", parent=PARENT, summary="List a contact's tasks"),
    UpsertConversationContact("/conversation/{conversationId}/contact/upsert"),
]
