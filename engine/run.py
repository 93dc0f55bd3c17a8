"""One completion: fit the context, call the model, stream tokens, run the tools it
calls (bounded by limits.iterations and limits.calls), continue when it stops for
length (limits.continuations), and report what happened.

`complete(job)` is an async iterator of events: `str` (a token), `Reasoning` (a
reasoning token), `Message` (an activity or context message the engine adds) and,
last, one `Outcome`. It raises
ApiError on failure; anything raised before its first event is a request error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import msgspec

from . import openai, responder, tokens
from .context import DoesNotFit, Parts, fit
from .provider import Finish, ModelInfo, ModelRequest, Params, Reasoning, Timeouts
from .tools import Tool, definitions, definitions_cost, parse_arguments, run as run_tool

DEFAULT_ITERATIONS = 6
DEFAULT_CALLS = 12
DEFAULT_CONTINUATIONS = 2
CONTINUE_PROMPT = "Continue exactly where your previous message stopped, without repeating anything."


@dataclass
class Limits:
    iterations: int = DEFAULT_ITERATIONS
    calls: int = DEFAULT_CALLS
    continuations: int = DEFAULT_CONTINUATIONS


@dataclass
class Job:
    """One completion to run, as plain data (engine/job.py builds it)."""
    model: ModelInfo
    params: Params
    requested: str
    parts: Parts
    timeouts: Timeouts = field(default_factory=Timeouts)
    tools: list[Tool] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    query: str = ""


@dataclass(slots=True)
class Message:
    type: str
    text: str
    meta: dict[str, Any] | None = None


@dataclass
class Outcome:
    text: str
    reason: str
    input_tokens: int
    output_tokens: int
    model: str
    messages: list[Message]   # the activity messages to store with the bot message


def provider_stream(req: ModelRequest, timeouts: Timeouts) -> AsyncIterator[str | Reasoning | Finish]:
    if req.model.embedded:
        return responder.stream(req)
    return openai.stream(req, timeouts)


def prepare(job: Job):
    """Fit the first call's context now, so that a context that cannot fit is a 400
    before anything streams."""
    parts = job.parts
    parts.tools_cost = definitions_cost(job.tools)
    return fit(job.model.max_input_tokens, parts)


def _max_tokens(job: Job) -> int:
    out = job.model.max_output_tokens
    if job.params.max_tokens is not None:
        out = min(out, job.params.max_tokens)
    return max(1, out)


async def complete(job: Job) -> AsyncIterator[str | Reasoning | Message | Outcome]:
    parts = job.parts
    window = job.model.max_input_tokens
    tool_defs = definitions(job.tools)
    by_name = {t.name: t for t in job.tools}
    pending: list[Message] = []
    text: list[str] = []
    stored: list[Message] = []
    input_tokens = output_tokens = 0
    iterations = calls = continuations = 0
    first_call = True
    reason = "stop"
    turn_prefix = ""  # the text of the current answer so far (for continuations)
    while True:
        try:
            fitted = fit(window, parts)
        except DoesNotFit:
            if first_call:
                raise
            reason = "length"  # the turn grew past the window: stop honestly
            break
        # the context message names the records the first call kept; it is emitted with
        # the first model output, so that a model failing before it is an HTTP error
        if first_call and fitted.passages:
            pending.append(Message("context", "\n\n".join(p.text for p in fitted.passages), {
                "records": [{"id": p.id, "score": round(p.score, 4)} if p.id else {"score": round(p.score, 4)}
                            for p in fitted.passages]}))
        first_call = False
        iterations += 1
        req = ModelRequest(model=job.model, params=job.params, messages=fitted.messages, tools=tool_defs,
                           max_tokens=_max_tokens(job), query=job.query, passages=fitted.passages,
                           requested=job.requested, prefix=turn_prefix)
        said: list[str] = []
        finish: Finish | None = None
        async for item in provider_stream(req, job.timeouts):
            if pending:
                for m in pending:
                    yield m
                pending.clear()
            if type(item) is str:
                said.append(item)
                yield item
            elif type(item) is Reasoning:
                yield item
            else:
                finish = item
        if finish is None:  # pragma: no cover - providers always finish or raise
            finish = Finish(reason="stop")
        call_text = "".join(said)
        text.append(call_text)
        input_tokens += finish.input_tokens if finish.input_tokens is not None else fitted.cost
        output_tokens += (finish.output_tokens if finish.output_tokens is not None
                          else tokens.count(call_text) + sum(tokens.count(c.arguments) for c in finish.tool_calls))
        if finish.reason == "tool_calls":
            turn_prefix = ""
            assistant = {"role": "assistant", "content": call_text or None, "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in finish.tool_calls]}
            results: list[dict[str, Any]] = []
            handed_over = False
            over_limit = False
            for c in finish.tool_calls:
                args = parse_arguments(c.arguments)
                tool = by_name.get(c.name)
                if calls >= job.limits.calls:
                    over_limit = True
                    break
                calls += 1
                if tool is not None and tool.kind == "function" and not tool.has_result:
                    m = Message("activity", f"{c.name}({c.arguments})", {"activity": {
                        "type": "request", "function": {"name": c.name, "arguments": args}}})
                    stored.append(m)
                    yield m
                    handed_over = True
                    continue
                result = run_tool(tool, c.name, args)
                encoded = msgspec.json.encode(result).decode()
                encoded = tokens.truncate(encoded, max(16, window // 4))
                m = Message("activity", f"{c.name}({c.arguments}) → {encoded}", {"activity": {
                    "type": "response", "function": {"name": c.name, "arguments": args, "result": result}}})
                stored.append(m)
                yield m
                results.append({"role": "tool", "tool_call_id": c.id, "content": encoded})
            if handed_over:
                reason = "activity"
                break
            if over_limit:
                reason = "iteration"
                break
            # answered calls must follow their assistant message
            assistant["tool_calls"] = assistant["tool_calls"][:len(results)]
            parts.tail.extend([assistant, *results])
            if iterations >= job.limits.iterations:
                reason = "iteration"
                break
            continue
        if finish.reason == "length":
            if continuations < job.limits.continuations:
                continuations += 1
                turn_prefix += call_text
                parts.tail.extend([{"role": "assistant", "content": call_text},
                                   {"role": "user", "content": CONTINUE_PROMPT}])
                continue
            reason = "length"
            break
        reason = "stop"
        break
    for m in pending:  # nothing streamed (an empty answer): still report the context
        yield m
    yield Outcome(text="".join(text), reason=reason, input_tokens=input_tokens, output_tokens=output_tokens,
                  model=job.model.name, messages=stored)
