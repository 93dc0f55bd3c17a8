"""platform/model/list: the models this server can call (engine/models.py), from
configuration, not the database. The id of a model is its name (what a model string
names)."""

from __future__ import annotations

from typing import Any, AsyncIterator

import msgspec

from ..actions.base import Action, Call, Context, Stream, register
from ..errors import BadRequest
from ..actions.standard import LIST_PARAMS, TAKE_DEFAULT, TAKE_MAX, _META_FILTER
from ..engine import models as engine_models
from .common import Item


class PlatformModel(Item):
    name: str
    provider: str
    family: str
    max_tokens: int
    max_input_tokens: int
    max_output_tokens: int
    meta: dict
    description: str | None = None


class PlatformModelList(msgspec.Struct):
    items: list[PlatformModel]
    cursor: str | msgspec.UnsetType = msgspec.UNSET


def _item(m: engine_models.ModelInfo) -> PlatformModel:
    return PlatformModel(id=m.name, created_at=m.created_at, updated_at=m.created_at, name=m.name,
                         provider=m.provider, family=m.family, max_tokens=m.max_tokens,
                         max_input_tokens=m.max_input_tokens, max_output_tokens=m.max_output_tokens,
                         meta={"default": m.name == engine_models.registry().default,
                               "embedded": m.embedded},
                         description=m.description or None)


_ENCODE = msgspec.json.encode


class ListPlatformModels(Action):
    method = "GET"
    path = "/platform/model/list"
    tag = "Platform"
    summary = "List the models this server offers (from its configuration)"
    response = PlatformModelList
    item = PlatformModel
    query_params = LIST_PARAMS

    def _select(self, call: Call) -> tuple[list[PlatformModel], int, str | None]:
        desc, take, cursor, meta = True, TAKE_DEFAULT, None, {}
        for key, value in call.query:
            if key == "order":
                if value not in ("asc", "desc"):
                    raise BadRequest("order: must be 'asc' or 'desc'")
                desc = value == "desc"
            elif key == "take":
                if not (value.isascii() and value.isdigit() and len(value) <= 3 and 1 <= int(value) <= TAKE_MAX):
                    raise BadRequest(f"take: must be an integer from 1 to {TAKE_MAX}")
                take = int(value)
            elif key == "cursor":
                cursor = value or None
            elif key.startswith("meta"):
                m = _META_FILTER.match(key)
                if m is None:
                    raise BadRequest(f"{key[:60]}: meta filters are meta.<key>=<value> or meta[key]=value")
                meta[m.group(1) or m.group(2)] = value
        items = sorted((_item(m) for m in engine_models.registry().models.values()),
                       key=lambda i: i.id, reverse=desc)
        if meta:
            items = [i for i in items if all(str(i.meta.get(k)).lower() == v.lower() for k, v in meta.items())]
        if cursor is not None:
            items = [i for i in items if (i.id < cursor if desc else i.id > cursor)]
        return items, take, cursor

    async def run(self, ctx: Context, call: Call) -> Any:
        items, take, _ = self._select(call)
        if call.jsonl:
            return Stream(self._stream(items))
        page = items[:take]
        return PlatformModelList(items=page, cursor=page[-1].id if len(items) > take else msgspec.UNSET)

    @staticmethod
    async def _stream(items: list[PlatformModel]) -> AsyncIterator[bytes]:
        yield b"".join(b'{"type":"item","data":' + _ENCODE(i) + b"}\n" for i in items) or b""


register(ListPlatformModels())
