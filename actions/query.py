"""Query strings as msgspec structs: the list query (cursor, order, take and meta
filters) that every list takes, and how query pairs become a struct's input. The
spec documents each query struct's fields as its parameters."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from ..errors import BadRequest
from .fields import META_MAX_KEY_LENGTH, META_MAX_KEYS, META_MAX_VALUE_LENGTH, check_meta
from .ids import ID_PATTERN

TAKE_DEFAULT = 25
TAKE_MAX = 100
FILTER_MAX_LENGTH = 256

_META_KEY = re.compile(r"^meta(?:\.([^\[\].]+)|\[([^\[\]]+)\])$")


def gather(pairs: list[tuple[str, str]], meta: bool) -> dict[str, Any]:
    """Query pairs as a struct's input: a key given twice is refused (which one would
    count?), an empty value is absent, and `meta.<key>` / `meta[key]` pairs are gathered
    into `meta`."""
    values: dict[str, Any] = {}
    filters: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:  # PostgreSQL stores no NUL: drop them, as bodies do
            key, value = key.replace("\x00", ""), value.replace("\x00", "")
        if key in seen:
            raise BadRequest(f"{key[:60]}: given more than once")
        seen.add(key)
        if key == "meta" and value == "":  # empty is absent, here too
            continue
        if key.startswith("meta"):
            m = _META_KEY.match(key)
            if m is None:
                raise BadRequest(f"{key[:60]}: meta filters are meta.<key>=<value> or meta[key]=value")
            name = m.group(1) or m.group(2)
            if name in filters:  # meta.a and meta[a]
                raise BadRequest(f"meta filter {name[:60]!r}: given more than once")
            filters[name] = value
        elif value == "":
            values.pop(key, None)
        else:
            values[key] = value
    if filters:
        if not meta:
            raise BadRequest("meta filters are not supported on this list")
        values["meta"] = filters
    return values


# Empty is the first page: the last page answers `"cursor": ""`, and clients send it back.
Cursor = Annotated[
    str,
    msgspec.Meta(
        pattern=f"^(?:{ID_PATTERN[1:-1]})?$",
        description="The id of the last item of the previous page (empty: the first page)",
    ),
]
Order = Annotated[Literal["asc", "desc"], msgspec.Meta(description="Order by creation time")]
Take = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        description=f"Items per page (default {TAKE_DEFAULT}; more than {TAKE_MAX} is taken as {TAKE_MAX})",
    ),
]
MetaFilter = Annotated[
    dict[str, str],
    msgspec.Meta(
        description=("Meta filters, `meta.<key>=<value>` (or `meta[key]=value`); all must match"),
        # what gather() and check_meta() take: a key without brackets, as a meta key is
        extra_json_schema={
            "maxProperties": META_MAX_KEYS,
            "propertyNames": {
                "minLength": 1,
                "maxLength": META_MAX_KEY_LENGTH,
                "pattern": r"^[^\[\]]*[^\[\]\u0000][^\[\]]*$",
            },
            "additionalProperties": {"type": "string", "maxLength": META_MAX_VALUE_LENGTH},
        },
    ),
]
Filter = Annotated[str, msgspec.Meta(max_length=FILTER_MAX_LENGTH)]


class PageQuery(msgspec.Struct, kw_only=True):
    """A keyset page: lists that cannot filter by meta."""

    cursor: Cursor | None = None
    order: Order = "desc"
    take: Take = TAKE_DEFAULT

    def __post_init__(self) -> None:
        # The hosted platform clamps: refusing a large `take` would break apps that ask for it.
        self.take = min(self.take, TAKE_MAX)

    @property
    def desc(self) -> bool:
        return self.order == "desc"


class ListQuery(PageQuery, kw_only=True):
    meta: MetaFilter | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.meta:
            check_meta(self.meta, "meta filter")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_QUERIES: dict[tuple, type] = {}


def list_query(noun: str, filters: tuple[str, ...] = (), meta: bool = True) -> type:
    """The list query of one table: the standard fields plus equality filters on
    columns (`botId=...`), named once per table so the spec shows each once."""
    base = ListQuery if meta else PageQuery
    if not filters:
        return base
    key = (noun, filters, meta)
    if key not in _QUERIES:
        fields = [
            (c, Annotated[Filter, msgspec.Meta(description=f"Only items whose {camel(c)} equals this")] | None, None)
            for c in filters
        ]
        _QUERIES[key] = msgspec.defstruct(
            f"{noun[:1].upper()}{noun[1:]}ListQuery", fields, bases=(base,), kw_only=True, rename="camel"
        )
    return _QUERIES[key]
