"""One completion: fit the context, call the model, stream tokens, run the tools it
calls (bounded by limits.iterations and limits.calls), continue when it stops for
length (limits.continuations), and report what happened.

`complete(job)` is an async iterator of events: `str` (a token), `Reasoning` (a
reasoning token), `Message` (an activity or context message the engine adds),
`Signal` (a model call begins or ends, or the completion stops short), `Waiting`
(for a client function's result on its channel) and, last, one `Outcome`. It raises
ApiError on failure; anything raised before its first event is a request error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

from . import openai, responder, tokens
from .context import DoesNotFit, Fitted, Parts, fit
from .provider import Finish, ModelInfo, ModelRequest, Params, Passage, Reasoning, Timeouts
from .tools import Tool, call_message, definitions, definitions_cost, parse_arguments
from .tools import run as run_tool

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
    channels: Channels | None = None  # None: a channel function is handed to the client like any other
    channel_wait: float = 120.0  # seconds a channel function's result may take


class Channels(Protocol):
    """Where a client function's result arrives (store/channels.py in the app):
    `listen(channel)` registers before the client is told to publish, and its
    `next(timeout)` gives the published message."""

    def listen(self, channel: str) -> AbstractAsyncContextManager[Any]: ...


@dataclass(slots=True)
class Waiting:
    """The completion waits for (begin) or got (end) a message on a client function's channel."""

    begin: bool
    channel: str
    name: str
    args: Any


@dataclass(slots=True)
class Signal:
    """A step of the completion, in the reference's event words: `completeBegin` and
    `completeEnd` around each model call, `abort` when it stops short."""

    type: str
    data: dict[str, Any]


@dataclass(slots=True)
class Message:
    type: str
    text: str
    meta: dict[str, Any] | None = None


# Why a completion ended, in the reference's words.
EndReason = Literal["length", "stop", "activity", "abort", "error", "iteration"]


@dataclass
class Outcome:
    text: str
    reason: EndReason
    input_tokens: int
    output_tokens: int
    model: str
    messages: list[Message]  # the activity messages to store with the bot message


def provider_stream(req: ModelRequest, timeouts: Timeouts) -> AsyncIterator[str | Reasoning | Finish]:
    if req.model.embedded:
        return responder.stream(req)
    return openai.stream(req, timeouts)


def prepare(job: Job):
    """Fit the first call's context now, so that a context that cannot fit is a 400
    before anything streams."""
    parts = job.parts
    parts.tools_cost = definitions_cost(job.tools, job.model.counter)
    return fit(job.model.max_input_tokens, parts)


def _max_tokens(job: Job) -> int:
    out = job.model.max_output_tokens
    if job.params.max_tokens is not None:
        out = min(out, job.params.max_tokens)
    return max(1, out)


def _fit(window: int, parts: Parts, first_call: bool) -> Fitted | None:
    """The context of the next call; None when a later call's no longer fits (the
    first call's not fitting is the request's 400)."""
    try:
        return fit(window, parts)
    except DoesNotFit:
        if first_call:
            raise
        return None


def _tokens_used(finish: Finish, fitted_cost: int, said: str, counter: tokens.Counter) -> tuple[int, int]:
    """(input, output) tokens of one model call: the provider's counts, else ours."""
    out = finish.output_tokens
    if out is None:
        out = counter.count(said) + sum(counter.count(c.arguments) for c in finish.tool_calls)
    return (finish.input_tokens if finish.input_tokens is not None else fitted_cost), out


def _context_message(passages: list[Passage]) -> Message:
    """The `context` message: the records the first call was shown."""
    records = [{"id": p.id, "score": round(p.score, 4)} if p.id else {"score": round(p.score, 4)} for p in passages]
    return Message("context", "\n\n".join(p.text for p in passages), {"records": records})


@dataclass
class _Calls:
    messages: list[Message]  # the activity messages of the calls
    tail: list[dict[str, Any]]  # the assistant message and the results, for the next call
    calls: int  # calls made so far in the completion
    stop: EndReason | None = None  # "activity" (the client's turn) or "iteration" (over limits.calls)
    refused: str | None = None  # the function called beyond limits.calls


async def _wait_for_channels(
    job: Job, finish: Finish, by_name: dict[str, Tool], calls: int, answered: dict[str, Any]
) -> AsyncIterator[Waiting]:
    """Client functions with a channel: say where the result is awaited, wait for it
    (bounded), and keep it for the call (`answered`, by call id)."""
    if job.channels is None:
        return
    for i, c in enumerate(finish.tool_calls):
        tool = by_name.get(c.name)
        if tool is None or tool.channel is None or calls + i >= job.limits.calls:
            continue
        args = parse_arguments(c.arguments)
        async with job.channels.listen(tool.channel) as listening:
            yield Waiting(True, tool.channel, c.name, args)
            try:
                message = await listening.next(job.channel_wait)
            except TimeoutError:
                message = {"error": f"no result arrived on channel {tool.channel} within {job.channel_wait:g} s"}
            except Exception as exc:  # a dropped listener
                message = {"error": str(exc)}
        answered[c.id] = message.get("data") if "data" in message else {"error": message.get("error", message)}
        yield Waiting(False, tool.channel, c.name, args)


async def _run_calls(
    job: Job,
    finish: Finish,
    said: str,
    by_name: dict[str, Tool],
    calls: int,
    window: int,
    answered: dict[str, Any] | None = None,
) -> _Calls:
    """The model's tool calls: a client function without a result hands the turn
    over (unless its result came over its channel: `answered`); any other is
    answered here (bounded by limits.calls)."""
    answered = answered or {}
    done = _Calls([], [], calls)
    results: list[dict[str, Any]] = []
    for c in finish.tool_calls:
        if done.calls >= job.limits.calls:
            done.stop = done.stop or "iteration"
            done.refused = c.name
            break
        done.calls += 1
        args = parse_arguments(c.arguments)
        tool = by_name.get(c.name)
        if c.id not in answered and tool is not None and tool.kind == "function" and not tool.has_result:
            done.messages.append(
                Message(
                    "activity",
                    f"{c.name}({c.arguments})",
                    {"activity": {"type": "request", "function": {"name": c.name, "arguments": args}}},
                )
            )
            done.stop = "activity"
            continue
        result = answered[c.id] if c.id in answered else await run_tool(tool, c.name, args)
        encoded = job.model.counter.truncate(msgspec.json.encode(result).decode(), max(16, window // 4))
        done.messages.append(
            Message(
                "activity",
                f"{c.name}({c.arguments}) → {encoded}",
                {"activity": {"type": "response", "function": {"name": c.name, "arguments": args, "result": result}}},
            )
        )
        results.append({"role": "tool", "tool_call_id": c.id, "content": encoded})
    # answered calls must follow their assistant message
    calls_made = [(c.id, c.name, c.arguments) for c in finish.tool_calls][: len(results)]
    done.tail = [call_message(calls_made, said), *results]
    return done


async def _call_model(
    req: ModelRequest, timeouts: Timeouts, pending: list[Message | Signal], said: list[str], finished: list[Finish]
) -> AsyncIterator[str | Reasoning | Message | Signal]:
    """One model call's stream; the messages waiting to be sent go out with its first output."""
    async for item in provider_stream(req, timeouts):
        while pending:
            yield pending.pop(0)
        if type(item) is str:
            said.append(item)
            yield item
        elif isinstance(item, Finish):
            finished.append(item)
        else:
            yield item


async def complete(job: Job) -> AsyncIterator[str | Reasoning | Message | Signal | Waiting | Outcome]:
    parts = job.parts
    window = job.model.max_input_tokens
    tool_defs = definitions(job.tools)
    by_name = {t.name: t for t in job.tools}
    pending: list[Message | Signal] = []
    text: list[str] = []
    stored: list[Message] = []
    input_tokens = output_tokens = 0
    iterations = calls = continuations = 0
    first_call = True
    reason: EndReason = "stop"
    turn_prefix = ""  # the text of the current answer so far (for continuations)
    while True:
        fitted = _fit(window, parts, first_call)
        if fitted is None:
            reason = "length"  # the turn grew past the window: stop honestly
            break
        # the context message names the records the first call kept; it is emitted with
        # the first model output, so that a model failing before it is an HTTP error
        if first_call and fitted.passages:
            pending.append(_context_message(fitted.passages))
        first_call = False
        iterations += 1
        pending.insert(0, Signal("completeBegin", {"iteration": iterations}))
        req = ModelRequest(
            model=job.model,
            params=job.params,
            messages=fitted.messages,
            tools=tool_defs,
            max_tokens=_max_tokens(job),
            query=job.query,
            passages=fitted.passages,
            requested=job.requested,
            prefix=turn_prefix,
        )
        said: list[str] = []
        finished: list[Finish] = []
        async for item in _call_model(req, job.timeouts, pending, said, finished):
            yield item
        finish = finished[0] if finished else Finish(reason="stop")  # providers always finish or raise
        yield Signal("completeEnd", {"iteration": iterations, "reason": finish.reason})
        call_text = "".join(said)
        text.append(call_text)
        used_in, used_out = _tokens_used(finish, fitted.cost, call_text, job.model.counter)
        input_tokens += used_in
        output_tokens += used_out
        if finish.reason == "tool_calls":
            turn_prefix = ""
            answered: dict[str, Any] = {}
            async for event in _wait_for_channels(job, finish, by_name, calls, answered):
                yield event
            done = await _run_calls(job, finish, call_text, by_name, calls, window, answered)
            calls = done.calls
            for m in done.messages:
                stored.append(m)
                yield m
            if done.refused is not None:
                limit = f"the calls limit ({job.limits.calls}) is reached"
                yield Signal("abort", {"reason": limit, "functionName": done.refused})
            if done.stop is not None:
                reason = done.stop
                break
            parts.tail.extend(done.tail)
            if iterations >= job.limits.iterations:
                reason = "iteration"
                break
            continue
        if finish.reason == "length":
            if continuations < job.limits.continuations:
                continuations += 1
                turn_prefix += call_text
                parts.tail.extend(
                    [{"role": "assistant", "content": call_text}, {"role": "user", "content": CONTINUE_PROMPT}]
                )
                continue
            reason = "length"
            break
        reason = "stop"
        break
    for step in pending:  # nothing streamed (an empty answer): still report the context
        if isinstance(step, Message):
            yield step
    yield Outcome(
        text="".join(text),
        reason=reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        model=job.model.name,
        messages=stored,
    )
