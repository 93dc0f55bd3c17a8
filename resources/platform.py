"""platform/model/list: the models this server can call (engine/models.py), from
configuration, not the database. The id of a model is its name (what a model string
names)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..actions.base import Action, Call, Context, Stream
from ..actions.fields import Item
from ..actions.query import ListQuery
from ..actions.stream import item_lines, one
from ..engine.models import Registry
from ..engine.provider import ModelInfo


class PlatformModel(Item):
    name: str
    provider: str
    family: str
    type: Literal["language"]  # the kinds the SDKs know: decision, image, language, rerank, video
    default: bool
    max_tokens: int
    max_input_tokens: int
    max_output_tokens: int
    meta: dict
    description: str | None = None


class ModelListQuery(ListQuery, kw_only=True):
    cursor: (
        Annotated[str, msgspec.Meta(max_length=256, description="The name of the last model of the previous page")]
        | None
    ) = None


class PlatformModelList(msgspec.Struct):
    items: list[PlatformModel]
    cursor: str  # "" on an empty page, as every list


def _item(m: ModelInfo, default: str) -> PlatformModel:
    return PlatformModel(
        id=m.name,
        created_at=m.created_at,
        updated_at=m.created_at,
        name=m.name,
        provider=m.provider,
        family=m.family,
        type="language",
        default=m.name == default,
        max_tokens=m.max_tokens,
        max_input_tokens=m.max_input_tokens,
        max_output_tokens=m.max_output_tokens,
        meta={"default": m.name == default, "embedded": m.embedded, "vision": m.vision},
        description=m.description or None,
    )


def _select(models: Registry, q: ModelListQuery) -> list[PlatformModel]:
    """The models in order, after the cursor, matching the meta filters (as strings)."""
    items = sorted((_item(m, models.default) for m in models.models.values()), key=lambda i: i.id, reverse=q.desc)
    if q.meta:
        items = [i for i in items if all(str(i.meta.get(k)).lower() == v.lower() for k, v in q.meta.items())]
    if q.cursor is not None:
        items = [i for i in items if (i.id < q.cursor if q.desc else i.id > q.cursor)]
    return items


class ListPlatformModels(Action):
    method = "GET"
    tag = "Platform"
    summary = "List the models this server offers (from its configuration)"
    query = ModelListQuery
    response = PlatformModelList
    item = PlatformModel

    async def run(self, ctx: Context, call: Call) -> Any:
        q: ModelListQuery = call.query
        items = _select(ctx.services.models, q)
        if call.jsonl:
            return Stream(one(item_lines(items)))
        page = items[: q.take]
        return PlatformModelList(items=page, cursor=page[-1].id if page else "")


ACTIONS: list[Action] = [ListPlatformModels("/platform/model/list")]
