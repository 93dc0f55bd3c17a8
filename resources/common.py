"""What every resource struct shares."""

from __future__ import annotations


import msgspec


class Item(msgspec.Struct, rename="camel", omit_defaults=True):
    """A stored resource as the wire shows it. Attribute names are column names;
    absent (NULL) optional fields are omitted."""
    id: str
    created_at: int
    updated_at: int


class Body(msgspec.Struct, rename="camel", kw_only=True):
    """A request body: unknown fields are ignored; wrong types are a 400 naming the field."""


