"""Compaction: the messages since a conversation's last checkpoint, summarised by
its model into the text of the next checkpoint (resources/completion/ stores it;
context building then starts from it: engine/job.py puts the checkpoint's text into
the instructions, after the backstory, as the summary of the conversation so far).

One model call, bounded, newest-weighted: the previous checkpoint and the newest
messages that fit the model's input window go in as one transcript (a user message
under the summarising instructions, so the model summarises rather than answers);
older messages that do not fit are left out, and the transcript says how many (what
the conversation is about now matters most; one call keeps the cost predictable).
The embedded responder has no model to ask: it quotes the most informative sentences
(responder.summary)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError
from . import openai, responder
from .provider import Finish, ModelInfo, ModelRequest, Params, Timeouts

SUMMARY_TOKENS = 1000  # a checkpoint's text at most (the model's own output limit may be lower)
INSTRUCTIONS = (
    "You compact conversations. Summarise the conversation transcript the user gives you, "
    "for the assistant to continue the conversation from your summary alone: keep the facts, "
    "names, numbers, decisions, the user's preferences and open questions; say nothing that "
    "is not in the transcript. Write only the summary, in the language of the conversation, "
    f"at most {SUMMARY_TOKENS * 3 // 4} words."
)
# what each stored message type is in a transcript (reasoning is the model's own,
# context messages are records that retrieval finds again: neither goes in)
LABELS = {
    "user": "User",
    "bot": "Bot",
    "activity": "Function call",
    "instruction": "Instruction",
    "backstory": "Instruction",
}
EARLIER = "Earlier"  # the previous checkpoint's label


@dataclass
class Compacted:
    text: str
    input_tokens: int
    output_tokens: int
    messages: int  # the messages the summary covers (the newest ones that fit)
    omitted: bool  # older ones since the previous checkpoint did not fit and are left out


def chars_that_may_fit(model: ModelInfo) -> int:
    """More text than the model's input window can take (tokens are rarely longer
    than 8 characters on average): what a compaction reads at most."""
    return model.max_input_tokens * 8


def summarisable(type_: str) -> bool:
    return type_ in LABELS


def _transcript(
    model: ModelInfo, previous: str | None, messages: list[tuple[str, str]], budget: int
) -> tuple[list[tuple[str, str]], int]:
    """The (label, text) lines that fit `budget` tokens, oldest first: the previous
    checkpoint first, then the newest messages (a newest one too long alone is cut)."""
    counter = model.counter
    head = [(EARLIER, previous)] if previous else []
    left = budget - sum(counter.message_cost(f"{label}: {text}") for label, text in head)
    kept: list[tuple[str, str]] = []
    for type_, text in reversed(messages):
        cost = counter.message_cost(f"{LABELS[type_]}: {text}")
        if cost > left:
            if not kept:  # the newest message alone: its beginning
                kept.append((LABELS[type_], counter.truncate(text, max(0, left - 8))))
            break
        left -= cost
        kept.append((LABELS[type_], text))
    return head + kept[::-1], len(messages) - len(kept)


def _render(lines: list[tuple[str, str]], omitted: bool) -> str:
    note = ["(Earlier messages did not fit and are left out.)"] if omitted else []
    return "\n\n".join(note + [f"{label}: {text}" for label, text in lines])


async def compact(
    model: ModelInfo,
    params: Params,
    requested: str,
    previous: str | None,
    messages: list[tuple[str, str]],
    timeouts: Timeouts,
    older: bool = False,
) -> Compacted:
    """Summarise (type, text) messages, oldest first (only `summarisable` types),
    after the `previous` checkpoint's text (`older`: messages between the two were
    not even read)."""
    counter = model.counter
    out = min(SUMMARY_TOKENS, model.max_output_tokens, params.max_tokens or SUMMARY_TOKENS)
    system = {"role": "system", "content": INSTRUCTIONS}
    budget = model.max_input_tokens - counter.message_cost(INSTRUCTIONS) - 16  # the omission note
    lines, left_out = _transcript(model, previous, messages, budget)
    covered, omitted = len(messages) - left_out, older or left_out > 0
    if model.embedded:
        text = responder.summary(lines, out)
        cost = sum(counter.message_cost(t) for _, t in lines)
        return Compacted(text, cost, counter.count(text), covered, omitted)
    user = {"role": "user", "content": _render(lines, omitted)}
    req = ModelRequest(
        model=model, params=params, messages=[system, user], tools=[], max_tokens=max(1, out), requested=requested
    )
    said: list[str] = []
    finish = Finish(reason="stop")
    async for item in openai.stream(req, timeouts):
        if type(item) is str:
            said.append(item)
        elif isinstance(item, Finish):
            finish = item
    text = "".join(said).strip()
    if not text:  # a checkpoint stands for what it summarises: an empty one would lose it all
        raise ModelError("the model's summary was empty; nothing was compacted")
    prompt = counter.message_cost(INSTRUCTIONS) + counter.message_cost(user["content"])
    input_tokens = finish.input_tokens if finish.input_tokens is not None else prompt
    output_tokens = finish.output_tokens if finish.output_tokens is not None else counter.count(text)
    return Compacted(text, input_tokens, output_tokens, covered, omitted)
