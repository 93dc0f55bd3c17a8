"""The route table: built once from the action registry, matched segment by segment
(a dict lookup per segment, not a scan of regular expressions)."""

from __future__ import annotations

from ..actions.base import Action

_PARAM = "{}"
_MAX_SEGMENT = 128  # longer path parameters cannot be ids: not found, without a query


class RouteTable:
    def __init__(self, actions: list[Action]) -> None:
        self.root: dict = {}
        for action in actions:
            node = self.root
            names = []
            for segment in action.path.strip("/").split("/"):
                if segment.startswith("{") and segment.endswith("}"):
                    names.append(segment[1:-1])
                    segment = _PARAM
                node = node.setdefault(segment, {})
            if "" in node:
                raise RuntimeError(f"two actions on one route: {action.path}")
            node[""] = (action, tuple(names))

    def match(self, path: str) -> tuple[Action, dict[str, str]] | None:
        node = self.root
        values = []
        for segment in path.strip("/").split("/"):
            if not segment:  # "a//b": no route has an empty segment
                return None
            child = node.get(segment)
            if child is None:
                child = node.get(_PARAM)
                if child is None or len(segment) > _MAX_SEGMENT:
                    return None
                values.append(segment)
            node = child
        leaf = node.get("")
        if leaf is None:
            return None
        action, names = leaf
        return action, dict(zip(names, values, strict=True))
