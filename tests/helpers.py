"""Shared test helpers: every table the standard actions serve, and how to make one row."""

from __future__ import annotations

import botkit.resources  # noqa: F401  (registers the actions)
from botkit.actions.base import REGISTRY
from botkit.actions.standard import CreateAction, Table

# The smallest valid create body of each resource.
MINIMAL = {
    "message": {"type": "user", "text": "hello"},
    "record": {"text": "hello"},
    "memory": {"text": "remember this"},
}

# A field each resource lets us change and read back.
EDITABLE = {
    "message": ("text", "changed"),
    "record": ("text", "changed"),
    "memory": ("text", "changed"),
    "rating": None,
}


def tables() -> list[Table]:
    seen: dict[str, Table] = {}
    for action in REGISTRY:
        if isinstance(action, CreateAction) and action.path == f"{action.table.path}/create":
            seen.setdefault(action.table.name, action.table)
    return list(seen.values())


def prefix_for(api, table: Table) -> str:
    """The route prefix of `table` with its parent made (in api's account) when nested."""
    if table.parent is None:
        return table.path.lstrip("/")
    parent_noun = table.parent.noun
    parent_id = api.post(f"{parent_noun}/create", json={}).json()["id"]
    return table.path.lstrip("/").replace("{" + table.parent.param + "}", parent_id)


def create(api, prefix: str, noun: str, **fields) -> str:
    response = api.post(f"{prefix}/create", json={**MINIMAL.get(noun, {}), **fields})
    assert response.status_code == 200, response.text
    return response.json()["id"]
