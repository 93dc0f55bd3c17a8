"""Portals: on the hosted platform, a page under its own slug that presents an
account's bots. botkit serves no pages: a portal's slug and config are stored and
returned for the app that renders them."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ..actions.base import Action
from ..actions.fields import Alias, Body, Description, Item, MetaDict, Name, Ref
from ..actions.standard import Table, crud

Slug = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?(?![\s\S])",
        description="Lower-case letters, digits and inner hyphens, at most 64 characters",
    ),
]


class Portal(Item):
    meta: dict
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    blueprint_id: str | None = None
    slug: str | None = None
    config: dict | None = None


class PortalCreate(Body):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    blueprint_id: Ref | None = None
    slug: Slug | None = None
    config: (
        Annotated[
            dict[str, Any],
            msgspec.Meta(max_length=50, description="Stored and returned as given (the hosted portal's settings)"),
        ]
        | None
    ) = None


TABLE = Table(
    name="portals",
    noun="portal",
    item=Portal,
    create=PortalCreate,
    tag="Portal",
    refs={"blueprint_id": ("blueprints", "blueprint")},
)

ACTIONS: list[Action] = crud(
    TABLE,
    list="/portal/list",
    fetch="/portal/{portalId}/fetch",
    create="/portal/create",
    update="/portal/{portalId}/update",
    delete="/portal/{portalId}/delete",
)
