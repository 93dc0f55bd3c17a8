"""Field types shared by the resource structs: bounded strings, meta, ids.

The bounds are the API's promises; the spec states them because msgspec puts them
in the JSON Schema it generates."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..errors import BadRequest

META_MAX_KEYS = 50
META_MAX_KEY_LENGTH = 40
META_MAX_VALUE_LENGTH = 500  # a string value's characters; any other value's JSON length

Name = Annotated[str, msgspec.Meta(max_length=256)]
Alias = Annotated[str, msgspec.Meta(max_length=256)]
Description = Annotated[str, msgspec.Meta(max_length=4096)]
LongText = Annotated[str, msgspec.Meta(max_length=100_000)]
Ref = Annotated[str, msgspec.Meta(max_length=64, description="The id of a resource in the same account")]
Visibility = Literal["private", "protected", "public"]
Timestamp = Annotated[int, msgspec.Meta(ge=0, description="Epoch milliseconds")]
# A non-negative number stored as a double: at most 2**53, so an integer reads back as sent.
Amount = Annotated[float, msgspec.Meta(ge=0, le=2**53)]

MetaDict = Annotated[dict[str, Any], msgspec.Meta(
    description=(f"Meta data: at most {META_MAX_KEYS} keys, keys up to {META_MAX_KEY_LENGTH} "
                 f"characters, string values up to {META_MAX_VALUE_LENGTH} characters (other "
                 f"values up to {META_MAX_VALUE_LENGTH} characters as JSON). On update, "
                 '`{"$update": {...}}` merges (RFC 7386) instead of replacing.'),
    extra_json_schema={
        "maxProperties": META_MAX_KEYS,
        "propertyNames": {"minLength": 1, "maxLength": META_MAX_KEY_LENGTH},
    })]

_encode = msgspec.json.encode


def check_meta(meta: dict[str, Any], where: str = "meta", *, merge: bool = False) -> None:
    """Raise BadRequest naming the offending key. With merge, null values (deletions) pass."""
    if len(meta) > META_MAX_KEYS:
        raise BadRequest(f"{where}: at most {META_MAX_KEYS} keys are allowed, got {len(meta)}")
    for key, value in meta.items():
        if not key or len(key) > META_MAX_KEY_LENGTH:
            raise BadRequest(f"{where}: key {key[:60]!r} must be 1 to {META_MAX_KEY_LENGTH} characters long")
        if isinstance(value, str):
            if len(value) > META_MAX_VALUE_LENGTH:
                raise BadRequest(f"{where}.{key}: string values are at most {META_MAX_VALUE_LENGTH} characters")
        elif value is None or isinstance(value, (bool, int, float)):
            continue
        elif len(_encode(value)) > META_MAX_VALUE_LENGTH:
            raise BadRequest(f"{where}.{key}: values are at most {META_MAX_VALUE_LENGTH} characters as JSON")


class IdResponse(msgspec.Struct):
    id: str
