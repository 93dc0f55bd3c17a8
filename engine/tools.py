"""Functions and abilities offered to the model as tools, and running the calls.

- A client function with `result.data` is run by the engine: the model gets that
  data as the call's result, and the engine goes on.
- A client function without a result (or with `result.channel`) is the client's to
  run: the engine emits the call as an activity message and ends the completion with
  `end.reason = "activity"`.
- A skillset ability (stored or inline `extensions.skillsets`) is offered with its
  name, description and the parameters its action block asks for; calling it runs
  its action (`execute`, engine/abilities.py) and gives the model the result, or, for
  an ability of free text only, gives the model the instruction to follow."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from . import tokens

_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(slots=True)
class Tool:
    name: str  # the name the model sees (OpenAI: ^[A-Za-z0-9_-]{1,64}$)
    description: str
    parameters: dict[str, Any]
    kind: str  # "function" or "ability"
    has_result: bool = False
    result: Any = None  # a function's fixed result.data
    channel: str | None = None  # a client function whose result is published to this channel
    instruction: str = ""  # an ability's instruction
    execute: Callable[[Any], Awaitable[Any]] | None = None  # an ability's action, given the arguments


def tool_name(raw: str, taken: set[str]) -> str:
    base = _SAFE.sub("_", raw.strip())[:60] or "tool"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base[:56]}_{n}"
    taken.add(name)
    return name


def definitions(tools: list[Tool]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description[:1024], "parameters": t.parameters},
        }
        for t in tools
    ]


def definitions_cost(tools: list[Tool], counter: tokens.Counter = tokens.ESTIMATE) -> int:
    return counter.count(msgspec.json.encode(definitions(tools)).decode()) if tools else 0


def call_message(calls: list[tuple[str, str, str]], said: str | None = None) -> dict[str, Any]:
    """The assistant message that makes tool calls, (id, name, arguments JSON) each, as
    OpenAI-compatible providers take it back."""
    return {
        "role": "assistant",
        "content": said or None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in calls
        ],
    }


def parse_arguments(raw: str) -> Any:
    try:
        return msgspec.json.decode(raw or "{}")
    except msgspec.DecodeError:
        return raw


async def run(tool: Tool | None, name: str, arguments: Any) -> Any:
    """The result the model gets for a call the engine runs itself. An action that
    fails gives the model the error (it may try otherwise), not the completion."""
    if tool is None:
        return {"error": f"there is no function named {name!r}"}
    if tool.execute is not None:
        try:
            return await tool.execute(arguments)
        except Exception as exc:  # noqa: BLE001 -- the model is told; the action's own errors are values
            return {"error": getattr(exc, "message", None) or str(exc) or type(exc).__name__}
    if tool.kind == "ability":
        return {"instruction": tool.instruction}
    return tool.result
