"""What every resource struct shares: the Item and Body bases, bounded strings,
meta and its limits, ids.

The bounds are the API's promises; the spec states them because msgspec puts them
in the JSON Schema it generates. Meta limits are checked by the structs themselves
(`__post_init__`; msgspec reports the ValueError as a validation error at the
field's path), so every body with a `meta` enforces them and nothing else must."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

import msgspec

META_MAX_KEYS = 50
META_MAX_KEY_LENGTH = 40
META_MAX_VALUE_LENGTH = 500  # a string value's characters; any other value's JSON length

Name = Annotated[str, msgspec.Meta(max_length=256)]
Alias = Annotated[str, msgspec.Meta(max_length=256)]
Description = Annotated[str, msgspec.Meta(max_length=4096)]
LongText = Annotated[str, msgspec.Meta(max_length=100_000)]
Ref = Annotated[str, msgspec.Meta(max_length=64, description="The id of a resource in the same account")]
Visibility = Literal["private", "protected", "public"]
# The largest integer every JSON client reads exactly (a JavaScript number's): larger
# ones are refused, never rounded (actions.base.decode checks the free-form values).
SAFE_INTEGER = 2**53
Timestamp = Annotated[int, msgspec.Meta(ge=0, le=SAFE_INTEGER, description="Epoch milliseconds")]
# A non-negative number; an integer stays an integer on the way back (5, never 5.0). The
# float's bound is strict: 2**53 + 1 sent as an integer fails the int and would round to
# 2**53 as a float.
Amount = Annotated[int, msgspec.Meta(ge=0, le=SAFE_INTEGER)] | Annotated[float, msgspec.Meta(ge=0, lt=SAFE_INTEGER)]


JSON_VALUE_REF = "#/components/schemas/JsonValue"  # json_value(), in the spec's components


def json_value() -> dict[str, Any]:
    """The schema of a free-form JSON value as the server takes it: any JSON whose
    integers are within ±2**53 (actions.base.decode refuses larger ones anywhere in a
    body), at any depth (the component refers to itself)."""
    inner = {"$ref": JSON_VALUE_REF}
    return {
        "anyOf": [
            {"type": ["null", "boolean", "string"]},
            {"type": "integer", "minimum": -SAFE_INTEGER, "maximum": SAFE_INTEGER},
            {"type": "number", "not": {"type": "integer"}},
            {"type": "array", "items": inner},
            {"type": "object", "additionalProperties": inner},
        ]
    }


MetaDict = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=(
            f"Meta data: at most {META_MAX_KEYS} keys, keys up to {META_MAX_KEY_LENGTH} "
            f"characters, string values up to {META_MAX_VALUE_LENGTH} characters (other "
            f"values up to {META_MAX_VALUE_LENGTH} characters as JSON). On update, "
            '`{"$update": {...}}` merges (RFC 7386) instead of replacing.'
        ),
        extra_json_schema={
            "maxProperties": META_MAX_KEYS,
            "propertyNames": {"minLength": 1, "maxLength": META_MAX_KEY_LENGTH},
            "additionalProperties": {"$ref": JSON_VALUE_REF},
        },
    ),
]

_encode = msgspec.json.encode


JSON_MAX_BYTES = 65_536  # a free-form JSON value in a request (function schemas, message meta, channel messages)


def check_json_size(value: Any, where: str, limit: int = JSON_MAX_BYTES) -> None:
    """ValueError (a 400 naming `where`) when `value` is larger than `limit` as JSON."""
    if len(_encode(value)) > limit:
        raise ValueError(f"{where}: at most {limit // 1024} KiB as JSON")


def check_meta(meta: dict[str, Any], where: str = "meta", *, merge: bool = False) -> None:
    """Raise ValueError naming the offending key. With merge, null values (deletions) pass."""
    if len(meta) > META_MAX_KEYS:
        raise ValueError(f"{where}: at most {META_MAX_KEYS} keys are allowed, got {len(meta)}")
    for key, value in meta.items():
        if not key or len(key) > META_MAX_KEY_LENGTH:
            raise ValueError(f"{where}: key {key[:60]!r} must be 1 to {META_MAX_KEY_LENGTH} characters long")
        if isinstance(value, str):
            if len(value) > META_MAX_VALUE_LENGTH:
                raise ValueError(f"{where}.{key}: string values are at most {META_MAX_VALUE_LENGTH} characters")
        elif (
            value is not None
            and not isinstance(value, (bool, int, float))
            and len(_encode(value)) > META_MAX_VALUE_LENGTH
        ):
            raise ValueError(f"{where}.{key}: values are at most {META_MAX_VALUE_LENGTH} characters as JSON")


def field_names(struct: type) -> tuple[str, ...]:
    """A struct's attribute names, in order (msgspec keeps them on the class)."""
    names: tuple[str, ...] = getattr(struct, "__struct_fields__")  # noqa: B009  (typed for mypy)
    return names


class Item(msgspec.Struct, rename="camel", omit_defaults=True):
    """A stored resource as the wire shows it. Attribute names are column names;
    absent (NULL) optional fields are omitted."""

    id: str
    created_at: int
    updated_at: int


class Body(msgspec.Struct, rename="camel", kw_only=True):
    """A request body: unknown fields are ignored; wrong types are a 400 naming the
    field; a `meta` object is held to the meta limits; `checks` names a check per
    field that a schema cannot say (it raises ValueError: a 400 naming it).
    The update body derived from a create body keeps its checks."""

    checks: ClassVar[dict[str, Callable[[Any], None]]] = {}
    # What the spec adds to the struct's schema: a rule across fields the types cannot say.
    schema_extra: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        meta = getattr(self, "meta", None)
        if isinstance(meta, dict):
            check_meta(meta)
        run_checks(self)


def run_checks(body: Body) -> None:
    for name, check in body.checks.items():
        value = getattr(body, name, None)
        if isinstance(value, (str, dict, list)):  # given (not None, not UNSET): checked
            check(value)


class UpdateBody(Body):
    """An update body (actions/standard.py derives one per table): `meta` replaces,
    `{"meta": {"$update": {...}}}` or a top-level `$update` merges (RFC 7386)."""

    merge: MetaDict | msgspec.UnsetType = msgspec.field(default=msgspec.UNSET, name="$update")
    schema_extra: ClassVar[dict[str, Any]] = {"not": {"required": ["meta", "$update"]}}

    def __post_init__(self) -> None:
        meta = getattr(self, "meta", msgspec.UNSET)
        if isinstance(meta, dict) and "$update" in meta:
            if len(meta) != 1:
                raise ValueError('meta: "$update" cannot be combined with other keys')
            if not isinstance(meta["$update"], dict):
                raise ValueError("meta.$update: must be an object")
            if self.merge is not msgspec.UNSET:
                raise ValueError('"$update" and "meta" cannot both be sent')
            self.merge = meta["$update"]
            self.meta = msgspec.UNSET
        elif meta is not msgspec.UNSET and self.merge is not msgspec.UNSET:
            raise ValueError('"$update" and "meta" cannot both be sent')
        elif isinstance(meta, dict):
            check_meta(meta)
        if isinstance(self.merge, dict):
            check_meta(self.merge, "$update", merge=True)
        run_checks(self)


class IdResponse(msgspec.Struct):
    id: str
