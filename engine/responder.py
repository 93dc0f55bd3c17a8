"""The embedded default model: a retrieval responder, not a generative model.

It needs no network and no weights, so `make run` answers out of the box. It
streams back the dataset records that best match the user's message (the engine
retrieved them for the context, exactly as it does for a real model), and says
plainly when nothing matches and that no generative model is configured. It never
calls functions."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from . import tokens
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
