"""Files (metadata; upload and download come with the file-content work)."""

from __future__ import annotations

from ..actions.base import register
from ..actions.fields import Alias, Description, MetaDict, Name, Ref, Visibility
from ..actions.standard import Table, crud
from .common import Body, Item


class File(Item):
    meta: dict
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    blueprint_id: str | None = None
    visibility: str | None = None
    type: str | None = None
    size: int | None = None


class FileCreate(Body):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    blueprint_id: Ref | None = None
    visibility: Visibility | None = None


TABLE = Table(name="files", noun="file", item=File, create=FileCreate, path="/file", tag="File")

register(*crud(TABLE))
