"""The route table: built once from the action registry, matched segment by segment
(a dict lookup per segment, not a scan of regular expressions).

An action with `rest_param = True` (a space's storage routes) has a last path
parameter that takes the rest of the path, slashes and all (`.../download/a/b.txt`);
the action validates it."""

from __future__ import annotations

from ..actions.base import Action

_PARAM = "{}"
_REST = "{...}"
_MAX_SEGMENT = 128  # longer path parameters cannot be ids: not found, without a query


class RouteTable:
    def __init__(self, actions: list[Action]) -> None:
        self.root: dict = {}
        for action in actions:
            node = self.root
            names = []
            segments = action.path.strip("/").split("/")
            for i, segment in enumerate(segments):
                if segment.startswith("{") and segment.endswith("}"):
                    names.append(segment[1:-1])
                    rest = i == len(segments) - 1 and getattr(action, "rest_param", False)
                    segment = _REST if rest else _PARAM
                node = node.setdefault(segment, {})
            if "" in node:
                raise RuntimeError(f"two actions on one route: {action.path}")
            node[""] = (action, tuple(names))

    def match(self, path: str) -> tuple[Action, dict[str, str]] | None:
        node = self.root
        values = []
        segments = path.strip("/").split("/")
        for i, segment in enumerate(segments):
            rest = node.get(_REST)
            if rest is not None:
                values.append("/".join(segments[i:]))
                node = rest
                break
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
