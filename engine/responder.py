"""The embedded default model: a retrieval responder, not a generative model.

It needs no network and no weights, so `make run` answers out of the box. It
streams back the dataset records that best match the user's message (the engine
retrieved them for the context, exactly as it does for a real model), and says
plainly when nothing matches and that no generative model is configured. It never
calls functions. Asked to compact a conversation, it quotes the conversation's most
informative sentences (`summary`): extractive, never a made-up paraphrase."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from . import retrieval, tokens
from .models import RETRIEVAL_MODEL
from .provider import Finish, ModelRequest

_PIECE = re.compile(r"\s*\S+")
MAX_PASSAGES = 3


def answer(req: ModelRequest) -> str:
    note = "(This is botkit's built-in retrieval responder, not a generative model: no language model is configured"
    if req.requested and req.requested != RETRIEVAL_MODEL:
        note += f', so the requested model "{req.requested[:80]}" is not available'
    note += ". Set BOTKIT_MODEL_BASE_URL and BOTKIT_MODELS to use one.)"
    passages = [p for p in req.passages if p.text.strip()][:MAX_PASSAGES]
    if not req.query.strip():
        return "There is no user message to answer. " + note
    if not passages:
        return "I found nothing in the knowledge base that matches your message. " + note
    parts = ["Here is what I found in the knowledge base that best matches your message:"]
    for i, p in enumerate(passages, 1):
        parts.append(f"{i}. {p.text.strip()}")
    parts.append(note)
    return "\n\n".join(parts)


async def stream(req: ModelRequest) -> AsyncIterator[str | Finish]:
    text = answer(req)
    if req.prefix and text.startswith(req.prefix):
        text = text[len(req.prefix) :]  # a continuation: go on where the last call stopped
    budget = req.max_tokens
    out = []
    reason = "stop"
    for m in _PIECE.finditer(text):
        piece = m.group()
        cost = tokens.count(piece)
        if cost > budget:
            reason = "length"
            break
        budget -= cost
        out.append(piece)
        yield piece
    prompt = sum(tokens.message_cost(str(m.get("content") or "")) for m in req.messages)
    yield Finish(reason=reason, input_tokens=prompt, output_tokens=tokens.count("".join(out)))


# --- compaction (engine/compaction.py): an extractive summary -----------------------

SUMMARY_HEADER = (
    "Extractive summary by botkit's built-in responder (not a generative model: these are "
    "the conversation's most informative sentences, quoted as they were written):"
)
SUMMARY_SENTENCES = 12
SENTENCE_TOKENS = 60  # a longer sentence is quoted up to this many tokens
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+")
_LABELED = re.compile(r"^(User|Bot|Instruction|Function call|Earlier): (.+)$")
# retrieval's stop words, and the ones that carry little in a sentence of a conversation
_STOP = retrieval.STOP_WORDS | frozenset(
    [
        "about",
        "after",
        "again",
        "also",
        "any",
        "been",
        "before",
        "being",
        "can",
        "could",
        "did",
        "does",
        "doing",
        "done",
        "had",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "just",
        "let",
        "like",
        "may",
        "more",
        "most",
        "now",
        "off",
        "once",
        "only",
        "other",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "some",
        "such",
        "those",
        "through",
        "too",
        "under",
        "until",
        "very",
        "while",
        "whom",
        "would",
        "yes",
        "yours",
    ]
)


def _units(labeled: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(label, sentence) pairs; a summary this responder wrote before keeps its labels."""
    out = []
    for label, text in labeled:
        if label == "Earlier":
            text = text.removeprefix(SUMMARY_HEADER)
        for sentence in _SENTENCE.split(text):
            sentence = " ".join(sentence.split())
            m = _LABELED.match(sentence) if label == "Earlier" else None
            if m:
                out.append((m.group(1), m.group(2)))
            elif sentence:
                out.append((label, sentence))
    return out


def _words(sentence: str) -> set[str]:
    return {w for w in _WORD.findall(sentence.lower()) if len(w) > 2 and w not in _STOP}


def summary(labeled: list[tuple[str, str]], budget: int) -> str:
    """An honest extractive summary of (label, text) messages, oldest first: the
    sentences whose content words the conversation uses most (SumBasic: a chosen
    sentence's words then count for less, so the summary does not repeat itself),
    newer first on ties, quoted in their order, within `budget` tokens. Deterministic."""
    units = _units(labeled)
    words = [_words(s) for _, s in units]
    counts: dict[str, int] = {}
    for ws in words:
        for w in ws:
            counts[w] = counts.get(w, 0) + 1
    total = sum(counts.values()) or 1
    weight = {w: n / total for w, n in counts.items()}
    left = budget - tokens.count(SUMMARY_HEADER)
    chosen: dict[int, str] = {}
    # sentences without content words ("ok", "Hi!") only when there is nothing else
    remaining = {i for i, ws in enumerate(words) if ws} or set(range(len(units)))
    while remaining and len(chosen) < SUMMARY_SENTENCES:
        # ties: the newer one
        _, best = max((sum(weight[w] for w in words[i]), i) for i in remaining)
        remaining.discard(best)
        label, sentence = units[best]
        quoted = tokens.truncate(sentence, SENTENCE_TOKENS)
        line = f"{label}: {quoted}{'…' if quoted != sentence else ''}"
        cost = tokens.count(line)
        if cost > left:
            continue
        left -= cost
        chosen[best] = line
        for w in words[best]:
            weight[w] *= weight[w]
    if not chosen:
        return ""
    return "\n".join([SUMMARY_HEADER, *(chosen[i] for i in sorted(chosen))])
