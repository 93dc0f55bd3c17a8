"""Context building and token reconciliation: what the model is shown, fitted to its
input window.

The context is, in this order: the system message (instructions: backstory,
extension backstory, tool notes; then the retrieved records), the history, the
latest user message, and the messages of the current turn (tool calls and their
results, a continuation's partial answer).

When it does not fit the window (as engine/tokens.py counts), it is cut in this
priority order:
  1. the oldest history messages go first, one by one, until it fits or the history
     is empty;
  2. then the lowest-scoring records, one by one;
never the instructions, never the latest user message, never the current turn.
If those alone do not fit, the request fails with 400 (before anything streams)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest
from . import tokens
from .provider import Passage

RECORDS_HEADER = "Relevant records from the knowledge base (most relevant first):"
IMAGE_COST = 765  # tokens an image part is counted as (OpenAI's estimate for one high-detail tile set)
PASSAGE_OVERHEAD = 3  # "[n] " (3 pieces up to n = 9999); the "\n\n" separators cost nothing


@dataclass(slots=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str
    # the provider messages when a turn is not one {role, content}: a function call and its result
    messages: tuple[dict[str, Any], ...] = ()
    images: tuple[str, ...] = ()  # image URLs (data: URLs of attachments) sent with a user's text

    def provider_messages(self) -> list[dict[str, Any]]:
        if self.images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": self.text}]
            parts += [{"type": "image_url", "image_url": {"url": url}} for url in self.images]
            return [{"role": self.role, "content": parts}]
        return list(self.messages) or [{"role": self.role, "content": self.text}]

    def cost(self, counter: tokens.Counter = tokens.ESTIMATE) -> int:
        if self.messages:
            return sum(message_cost(m, counter) for m in self.messages)
        return counter.message_cost(self.text) + IMAGE_COST * len(self.images)


class DoesNotFit(BadRequest):
    """The parts that are never dropped exceed the window."""


@dataclass
class Fitted:
    messages: list[dict[str, Any]]
    passages: list[Passage]  # kept, best first
    history: list[Turn]  # kept, oldest first
    dropped_history: int = 0
    dropped_passages: int = 0
    cost: int = 0


@dataclass
class Parts:
    instructions: str
    passages: list[Passage] = field(default_factory=list)  # any order; ranked here
    history: list[Turn] = field(default_factory=list)  # oldest first
    latest: Turn | None = None
    tail: list[dict[str, Any]] = field(default_factory=list)
    tools_cost: int = 0
    match_instruction: str | None = None
    mismatch_instruction: str | None = None
    counter: tokens.Counter = tokens.ESTIMATE  # the model's (engine/tokens.py)


def message_cost(message: dict[str, Any], counter: tokens.Counter = tokens.ESTIMATE) -> int:
    content = message.get("content")
    if isinstance(content, list):  # text and image parts
        text = " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        images = sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
        cost = counter.message_cost(text) + IMAGE_COST * images
    else:
        cost = counter.message_cost(str(content or ""))
    for call in message.get("tool_calls") or ():
        fn = call.get("function", {})
        cost += counter.count(fn.get("name", "")) + counter.count(fn.get("arguments", "")) + 3
    return cost


def messages_cost(messages: list[dict[str, Any]], counter: tokens.Counter = tokens.ESTIMATE) -> int:
    return sum(message_cost(m, counter) for m in messages)


def passage_cost(p: Passage, counter: tokens.Counter = tokens.ESTIMATE) -> int:
    return counter.count(p.text) + PASSAGE_OVERHEAD


def _system(parts: Parts, passages: list[Passage]) -> str:
    blocks = [parts.instructions] if parts.instructions.strip() else []
    if passages:
        blocks.append(parts.match_instruction or RECORDS_HEADER)
        blocks.extend(f"[{i}] {p.text}" for i, p in enumerate(passages, 1))
    elif parts.mismatch_instruction and not parts.passages:
        blocks.append(parts.mismatch_instruction)
    return "\n\n".join(blocks)


def fit(window: int, parts: Parts) -> Fitted:
    ranked = sorted(parts.passages, key=lambda p: -p.score)  # stable: ties keep their order
    counter = parts.counter
    fixed = parts.tools_cost + sum(message_cost(m, counter) for m in parts.tail)
    if parts.latest is not None:
        fixed += parts.latest.cost(counter)
    system_fixed = counter.count(_system(parts, []))
    header = counter.count(parts.match_instruction or RECORDS_HEADER) if ranked else 0

    # a system message exists when there are instructions or records
    def system_cost(n_passages: int, passage_total: int) -> int:
        if not system_fixed and not n_passages:
            return 0
        return system_fixed + tokens.MESSAGE_OVERHEAD + (header + passage_total if n_passages else 0)

    mandatory = fixed + system_cost(0, 0)
    if mandatory > window:
        what = "the latest user message" if parts.latest is not None else "the instructions"
        raise DoesNotFit(
            f"{what} and the instructions need {mandatory} tokens, more than the model's "
            f"input window of {window} tokens"
        )
    history_costs = [t.cost(counter) for t in parts.history]
    passage_costs = [passage_cost(p, counter) for p in ranked]
    h_total = sum(history_costs)
    p_total = sum(passage_costs)
    n_p = len(ranked)
    first = 0  # history[first:] is kept
    while fixed + system_cost(n_p, p_total) + h_total > window and first < len(history_costs):
        h_total -= history_costs[first]
        first += 1
    while fixed + system_cost(n_p, p_total) + h_total > window and n_p:
        n_p -= 1
        p_total -= passage_costs[n_p]
    kept = ranked[:n_p]
    history = parts.history[first:]
    messages: list[dict[str, Any]] = []
    system = _system(parts, kept)
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(m for t in history for m in t.provider_messages())
    if parts.latest is not None:
        messages.extend(parts.latest.provider_messages())
    messages.extend(parts.tail)
    return Fitted(
        messages=messages,
        passages=kept,
        history=history,
        dropped_history=first,
        dropped_passages=len(ranked) - n_p,
        cost=messages_cost(messages, counter) + parts.tools_cost,
    )
