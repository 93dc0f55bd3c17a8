"""OpenAPI 3.1, generated from the route list and the msgspec structs: the spec
cannot drift from what is served, because both come from the same objects (each
action's body, query, response, item and events structs)."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from .. import errors
from ..actions.auth import scope_catalogue
from ..actions.base import Action
from ..actions.fields import JSON_VALUE_REF, json_value
from ..actions.stream import EndEvent, csv_columns

REF = "#/components/schemas/{name}"


def operation_id(path: str) -> str:
    words = [s for s in path.strip("/").split("/") if not s.startswith("{")]
    return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])


def _error_responses(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in errors.ALL:
        if action.public and cls is errors.NotAuthenticated:  # a bad signature is NOT_AUTHORIZED
            continue
        key = str(cls.status)
        out.setdefault(
            key,
            {"description": [], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        )
        out[key]["description"].append(cls.code)
    for value in out.values():
        value["description"] = " or ".join(value["description"])
    return out


def _query_parameters(query: type | None) -> list[dict[str, Any]]:
    """A query struct's fields as query parameters (an object field is a deepObject:
    `meta.<key>=value`)."""
    if query is None:
        return []
    schema = msgspec.json.schema(query)
    if "$ref" in schema:
        schema = schema["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", "")
        if "anyOf" in prop:  # `X | None`: the parameter is optional anyway
            options = [o for o in prop["anyOf"] if o.get("type") != "null"]
            if len(options) == 1:
                prop = {**options[0], **({"default": prop["default"]} if prop.get("default") is not None else {})}
            description = description or prop.pop("description", "")
        # An empty value is the parameter's absence (actions.query.gather), as the SDKs send it.
        param = {
            "in": "query",
            "name": name,
            "required": False,
            "allowEmptyValue": True,
            "schema": prop,
            "description": description,
        }
        if prop.get("type") == "object":
            param["style"], param["explode"] = "deepObject", True
        params.append(param)
    return params


def _path_schema(action: Action, name: str) -> dict[str, Any]:
    """A path parameter's schema: its type's, when the action holds it to one."""
    given = action.path_types.get(name)
    return msgspec.json.schema(given) if given is not None else {"type": "string"}


def _raw_responses(action: Action) -> dict[str, Any]:
    """A file's content answers besides 200 (resources/file.py: a range, no content yet,
    not modified since)."""
    if action.raw_response is None or action.method != "GET":
        return {}
    return {
        "204": {"description": "The file has no content yet"},
        "206": {
            "description": "The range asked for",
            "content": {action.raw_response: {"schema": {"type": "string", "format": "binary"}}},
        },
        "304": {"description": "Not modified since the ETag or date the request gave"},
    }


def _add_schema_extras(schema_of: dict[Any, dict], components: dict[str, Any]) -> None:
    """A body's `schema_extra` (actions.fields.Body): rules across its fields."""
    for t, schema in schema_of.items():
        extra = getattr(t, "schema_extra", None)
        if extra and "$ref" in schema:
            components[schema["$ref"].rsplit("/", 1)[1]].update(extra)


def _free_form_is_safe_json(node: Any) -> None:
    """Every value the structs leave free (an `Any`, a `dict[str, Any]`, the fields of a
    body it does not name: ignored) is JSON whose integers are within ±2**53, as
    actions.base.decode holds every body to."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "object" and "additionalProperties" not in node:
        node["additionalProperties"] = {"$ref": JSON_VALUE_REF}
    for key in ("properties", "$defs"):
        for sub in node.get(key, {}).values():
            if isinstance(sub, dict) and not set(sub) - {"description", "title"}:
                sub["$ref"] = JSON_VALUE_REF  # an Any
            _free_form_is_safe_json(sub)
    for key in ("items", "additionalProperties"):
        _free_form_is_safe_json(node.get(key))
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(key, ()):
            _free_form_is_safe_json(sub)


def _scope_schema(struct: dict[str, Any], catalogue: dict[str, frozenset[str]]) -> dict[str, Any]:
    """The scope struct's schema as one self-contained choice per set of actions: the
    resource paths that have exactly those, with actions among them ("*": any route's).
    Each choice repeats the struct's properties (rather than an anyOf beside them), and
    resources of one action set share a choice: a schema generator gives up on the
    intersection of the struct with some thirty choices (schemathesis's canonicaliser)."""
    base = {k: v for k, v in struct.items() if k not in ("title", "description")}

    def choice(resources: list[str], actions: frozenset[str]) -> dict[str, Any]:
        properties = json.loads(json.dumps(base["properties"]))
        properties["resource"] = {"const": resources[0]} if len(resources) == 1 else {"enum": resources}
        listed = properties["actions"]["anyOf"][0]
        listed["items"] = {**listed["items"], "enum": sorted(actions)}
        return {**base, "properties": properties}

    every = frozenset().union(*catalogue.values())
    groups: dict[frozenset[str], list[str]] = {}
    for resource in sorted(catalogue):
        groups.setdefault(catalogue[resource], []).append(resource)
    ordered = sorted(groups.items(), key=lambda g: g[1][0])
    choices = [choice(["*"], every), *(choice(resources, actions) for actions, resources in ordered)]
    return {"title": struct.get("title", "Scope"), "description": struct.get("description", ""), "anyOf": choices}


def _components(actions: list[Action]) -> tuple[dict[Any, dict], dict[str, Any]]:
    """(each struct's schema, the components): the structs' schemas with what the
    server holds them to besides their types."""
    types: list[Any] = [EndEvent]
    for action in actions:
        for t in (action.body, action.response, action.item, action.events):
            if t is not None and t not in types:
                types.append(t)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = dict(zip(types, schemas, strict=True))
    _add_schema_extras(schema_of, components)
    # A body's fields it does not name are ignored, but held to the same rule as every
    # free-form value: JSON whose integers are within ±2**53 (actions.base.decode).
    for schema in components.values():
        _free_form_is_safe_json(schema)
    if "Scope" in components:  # a token's scope names a route (actions.auth.check_scopes)
        components["Scope"] = _scope_schema(components["Scope"], scope_catalogue(actions))
    components["JsonValue"] = {"description": "Any JSON value whose integers are within ±2**53", **json_value()}
    return schema_of, components


def build_spec(actions: list[Action]) -> dict[str, Any]:
    schema_of, components = _components(actions)
    components["Error"] = {
        "type": "object",
        "properties": {
            "message": {"type": "string"},
            "code": {"type": "string"},
            "requestId": {"type": "string", "description": "On 5xx answers"},
        },
        "required": ["message", "code"],
    }
    paths: dict[str, dict] = {}
    op_ids: set[str] = set()
    for action in actions:
        op_id = operation_id(action.path)
        if op_id in op_ids:  # e.g. /conversation/complete and /conversation/{conversationId}/complete
            op_id = operation_id(re.sub(r"{(\w+)}", r"\1", action.path))
        op_ids.add(op_id)
        params = [
            {"in": "path", "name": name, "required": True, "schema": _path_schema(action, name)}
            for name in re.findall(r"{(\w+)}", action.path)
        ]
        params += _query_parameters(action.query)
        ok: dict[str, Any] = {"description": "Success", "content": {}}
        if action.response is not None:
            ok["content"]["application/json"] = {"schema": schema_of[action.response]}
        if action.raw_response is not None:
            ok["content"][action.raw_response] = {"schema": {"type": "string", "format": "binary"}}
        if action.item is not None:
            item = {
                "type": "object",
                "properties": {"type": {"type": "string", "enum": ["item"]}, "data": schema_of[action.item]},
                "required": ["type", "data"],
            }
            ok["content"]["application/jsonl"] = {
                "schema": {
                    "description": "With `Accept: application/jsonl`: the whole collection, one line per item; "
                    "with `Accept: application/jsonl; end=true`, then an `end` line (a stream without it was cut)",
                    "oneOf": [item, schema_of[EndEvent]],
                }
            }
        if action.item is not None and getattr(action, "answers_csv", False):  # exports
            ok["content"]["text/csv"] = {
                "schema": {
                    "type": "string",
                    "description": "With `Accept: text/csv`: the whole collection as RFC 4180 CSV, a header row "
                    f"({','.join(csv_columns(action.item))}), then a row per item: text as it is, numbers, "
                    "booleans, objects and lists as compact JSON, null or absent empty",
                }
            }
        events = action.events  # a struct or union of tagged structs: a JSONL stream
        if events is not None:
            ok["content"]["application/jsonl"] = {
                "schema": {**schema_of[events], "description": "With `Accept: application/jsonl`: one event per line"}
            }
        op: dict[str, Any] = {
            "operationId": op_id,
            "summary": action.summary or op_id,
            "tags": [action.tag] if action.tag else [],
            "parameters": params,
            "responses": {"200": ok, **_raw_responses(action), **_error_responses(action)},
        }
        if action.public:
            op["security"] = []
        if action.body is not None:
            # an absent body reads as `{}`: required exactly when `{}` is not a valid body
            # (an upload's too: bytes, a form or JSON, it needs one)
            required = any(f.required for f in msgspec.structs.fields(action.body))
            op["requestBody"] = {
                "required": required,
                "content": {"application/json": {"schema": schema_of[action.body]}},
            }
        for content_type in action.body_types:  # streamed bodies
            op.setdefault("requestBody", {"required": False, "content": {}})
            schema: dict[str, Any] = {"type": "string", "format": "binary"}
            if content_type == "multipart/form-data":
                schema = {"type": "object", "properties": {"file": schema}, "required": ["file"]}
            op["requestBody"]["content"][content_type] = {"schema": schema}
        paths.setdefault(action.path, {})[action.method.lower()] = op
    paths["/spec.json"] = {
        "get": {
            "operationId": "specFetch",
            "summary": "This OpenAPI document",
            "security": [],
            "tags": ["Platform"],
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    status = {"application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string"}}}}}
    paths["/healthz"] = {
        "servers": [{"url": "/"}],
        "get": {
            "operationId": "healthFetch",
            "summary": "Liveness: the process answers (no database, so it never queues behind tenant work)",
            "security": [],
            "tags": ["Platform"],
            "responses": {"200": {"description": "Alive", "content": status}},
        },
    }
    paths["/readyz"] = {
        "servers": [{"url": "/"}],
        "get": {
            "operationId": "readyFetch",
            "summary": "Readiness: the database answers, on a connection of its own (not the request pool)",
            "security": [],
            "tags": ["Platform"],
            "responses": {
                "200": {"description": "Ready", "content": status},
                "503": {
                    "description": "The database is unavailable (with Retry-After)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "botkit API",
            "version": "1",
            "description": "The ChatBotKit v1 wire protocol, self-hosted. Lists take "
            "`Accept: application/jsonl` to stream the whole collection.",
        },
        "servers": [{"url": "/v1"}, {"url": "/api/v1"}],
        "security": [{"BearerAuth": []}],
        "components": {
            "schemas": components,
            "securitySchemes": {
                "BearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <token>` (or `Token <token>`)",
                }
            },
        },
        "paths": paths,
    }
