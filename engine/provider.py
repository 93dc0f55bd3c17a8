"""The engine's plain data, at the bottom of its imports: what a model is, what a
model string sets, and what every model provider is given and streams back.

A provider's `stream(request)` is an async iterator of `str` (a text token, as the
model produced it) and `Reasoning` pieces, ending with one `Finish`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import tokens


@dataclass(frozen=True)
class ModelInfo:
    name: str  # the name requests use
    provider: str  # "botkit", "openai", "openai-compatible", ...
    family: str
    max_tokens: int  # the context window (input + output)
    max_input_tokens: int
    max_output_tokens: int
    upstream: str = ""  # the model name sent to the provider
    base_url: str | None = None  # None: the embedded retrieval responder
    api_key: str | None = None
    description: str = ""
    created_at: int = 0
    vision: bool = False  # accepts images in a user message (attachments are sent to it as image parts)

    @property
    def embedded(self) -> bool:
        return self.base_url is None

    @property
    def counter(self) -> tokens.Counter:
        """How its tokens are counted: exactly for a model tiktoken knows, else the estimate."""
        return tokens.ESTIMATE if self.embedded else tokens.for_model(self.upstream or self.name)


@dataclass
class Params:
    """What a model string sets (None: the model's default)."""

    max_tokens: int | None = None
    temperature: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    interaction_max_messages: int | None = None


@dataclass(frozen=True)
class EmbeddingsInfo:
    """The embedding model of dataset search: the built-in one (no base_url), or an
    OpenAI-compatible `/embeddings` endpoint and the model it serves."""

    model: str
    base_url: str | None = None
    api_key: str | None = None


@dataclass(frozen=True)
class Timeouts:
    """Every upstream call's bounds: connect, each chunk's read, and retries."""

    connect: float = 5.0
    read: float = 60.0
    retries: int = 2


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
    reason: str  # "stop", "length" or "tool_calls"
    tool_calls: list[ToolCall] = field(default_factory=list)
    input_tokens: int | None = None  # as the provider reported them (None: not reported)
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
    messages: list[dict[str, Any]]  # OpenAI chat messages
    tools: list[dict[str, Any]]  # OpenAI tool definitions
    max_tokens: int
    query: str = ""  # the latest user message
    passages: list[Passage] = field(default_factory=list)
    requested: str = ""  # the model name the request asked for
    prefix: str = ""  # what this turn already said (a continuation goes on from it)
