"""The platform catalogues that describe this server, from code and configuration, not
the database: platform/model/list (the models it can call, engine/models.py; a model's
id is its name, what a model string names) and platform/action/list (the action kinds
abilities can run, engine/abilities.py; an action's id is its kind)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..actions.base import Action, Call, Context, Stream
from ..actions.fields import Item
from ..actions.query import ListQuery
from ..actions.stream import item_lines, one
from ..engine import abilities
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
        Annotated[str, msgspec.Meta(max_length=256, description="The id of the last item of the previous page")] | None
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


def _select(items: list[Any], q: ModelListQuery) -> list[Any]:
    """A catalogue's items in id order, after the cursor, matching the meta filters (as strings)."""
    items = sorted(items, key=lambda i: i.id, reverse=q.desc)
    if q.meta:
        items = [i for i in items if all(str(i.meta.get(k)).lower() == v.lower() for k, v in q.meta.items())]
    if q.cursor is not None:
        items = [i for i in items if (i.id < q.cursor if q.desc else i.id > q.cursor)]
    return items


class ListCatalogue(Action):
    """A list of what the server itself is (`items`), paged and filtered as every list."""

    method = "GET"
    tag = "Platform"
    query = ModelListQuery

    def items(self, ctx: Context) -> list[Any]:
        raise NotImplementedError

    async def run(self, ctx: Context, call: Call) -> Any:
        q: ModelListQuery = call.query
        items = _select(self.items(ctx), q)
        if call.jsonl:
            return Stream(one(item_lines(items)))
        page = items[: q.take]
        assert self.response is not None  # each catalogue names its list struct
        return self.response(items=page, cursor=page[-1].id if page else "")


class ListPlatformModels(ListCatalogue):
    summary = "List the models this server offers (from its configuration)"
    response = PlatformModelList
    item = PlatformModel

    def items(self, ctx: Context) -> list[Any]:
        models: Registry = ctx.services.models
        return [_item(m, models.default) for m in models.models.values()]


class PlatformAction(Item):
    name: str
    description: str
    examples: list[str]
    meta: dict


class PlatformActionList(msgspec.Struct):
    items: list[PlatformAction]
    cursor: str


ACTION_KINDS = [
    PlatformAction(
        id=kind,
        created_at=0,
        updated_at=0,
        name=kind,
        description=description,
        examples=abilities.EXAMPLES_OF[kind],
        meta={
            "options": abilities.OPTIONS_OF[kind],
            "aliases": sorted(a for a, k in abilities.ALIASES.items() if k == kind),
        },
    )
    for kind, description in abilities.ACTIONS.items()
]


class ListPlatformActions(ListCatalogue):
    summary = "List the action kinds an ability's instruction can hold (the ones botkit runs)"
    response = PlatformActionList
    item = PlatformAction

    def items(self, ctx: Context) -> list[Any]:
        return ACTION_KINDS


ACTIONS: list[Action] = [
    ListPlatformActions("/platform/action/list"),
    ListPlatformModels("/platform/model/list"),
]
