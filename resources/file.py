"""Files (metadata; upload and download come with the file-content work)."""

from __future__ import annotations

from ..actions.base import Action
from ..actions.fields import Alias, Body, Description, Item, MetaDict, Name, Ref, Visibility
from ..actions.standard import Table, crud


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


TABLE = Table(name="files", noun="file", item=File, create=FileCreate, tag="File")

ACTIONS: list[Action] = crud(
    TABLE,
    list="/file/list",
    fetch="/file/{fileId}/fetch",
    create="/file/create",
    update="/file/{fileId}/update",
    delete="/file/{fileId}/delete",
)
