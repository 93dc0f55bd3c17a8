"""What every model provider is given and what it streams back.

A provider's `stream(request)` is an async iterator of `str` (a text token, as the
model produced it) and `Reasoning` pieces, ending with one `Finish`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .models import ModelInfo, Params


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(slots=True)
class Reasoning:
    """A piece of the model's reasoning (`delta.reasoning_content`), not part of the answer."""
    text: str


@dataclass(slots=True)
class Finish:
    reason: str                       # "stop", "length" or "tool_calls"
    tool_calls: list[ToolCall] = field(default_factory=list)
    input_tokens: int | None = None   # as the provider reported them (None: not reported)
    output_tokens: int | None = None


@dataclass(slots=True)
class Passage:
    """A retrieved dataset record (or inline extension record) in the context."""
    text: str
    score: float
    id: str | None = None
    source: str | None = None
    meta: dict | None = None


@dataclass(slots=True)
class ModelRequest:
    model: ModelInfo
    params: Params
    messages: list[dict[str, Any]]    # OpenAI chat messages
    tools: list[dict[str, Any]]       # OpenAI tool definitions
    max_tokens: int
    query: str = ""                   # the latest user message
    passages: list[Passage] = field(default_factory=list)
    requested: str = ""               # the model name the request asked for
    prefix: str = ""                  # what this turn already said (a continuation goes on from it)
