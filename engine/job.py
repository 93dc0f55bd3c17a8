"""Building a completion's Job from plain data: the model a model string names, the
messages split into instructions, context, history and the latest user message,
the functions and abilities as tools, and the context's parts.

Two steps, because retrieval needs the query before the job can be built:
`draft(...)` resolves the model and reads the messages (its `query` is what the
caller searches datasets and memories with); `build(draft, ...)` makes the Job and
fits its first context, so a request that cannot fit is a 400 before anything
streams."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..errors import BadRequest
from .context import Parts, Turn
from .models import Registry
from .provider import ModelInfo, Params, Passage, Timeouts
from .retrieval import clean_query
from .run import Job, Limits, prepare
from .tools import Tool, call_message, tool_name

ABILITIES_MAX = 50
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(slots=True)
class Function:
    """A client function offered with the request."""

    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of its arguments
    result: dict[str, Any] | None  # {"data": ...}: the engine answers with it; else the client runs it


@dataclass(slots=True)
class Ability:
    name: str
    description: str
    instruction: str
    parameters: dict[str, Any] | None = None  # JSON Schema of what its action asks for
    execute: Callable[[Any], Awaitable[Any]] | None = None  # its action (None: free text only)


@dataclass
class Draft:
    model: ModelInfo
    params: Params
    requested: str
    timeouts: Timeouts
    instructions: list[str]  # instruction/backstory messages of the conversation
    passages: list[Passage]  # its context messages
    history: list[Turn]
    latest: Turn | None
    after: list[dict[str, Any]]  # what follows the latest user message
    query: str = ""


@dataclass
class Extras:
    """What the request adds to the bot's configuration."""

    backstory: str | None = None
    functions: list[Function] = field(default_factory=list)
    abilities: list[Ability] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)  # retrieved records, memories, inline records
    match_instruction: str | None = None
    mismatch_instruction: str | None = None
    limits: Limits = field(default_factory=Limits)
    images: list[str] = field(default_factory=list)  # attached images, for a model that takes them


_ROLES = {"user": "user", "bot": "assistant"}
# (type, text, meta) as the reference stores and sends a message
InputMessage = tuple[str, str, dict[str, Any] | None]


def _activity_turn(text: str, meta: dict[str, Any] | None, n: int) -> Turn | None:
    """An answered function call (meta.activity of type "response": name, arguments,
    result) as the provider expects it: the assistant's call and the tool's result.
    A request still unanswered, or an activity without that meta, tells the model nothing."""
    activity = (meta or {}).get("activity")
    if not isinstance(activity, dict) or activity.get("type") != "response":
        return None
    function = activity.get("function")
    if not isinstance(function, dict) or "result" not in function:
        return None
    name = function.get("name")
    if not isinstance(name, str) or not name:
        return None
    call_id = f"call_{n}"
    arguments = function.get("arguments", {})
    call = call_message(
        [(call_id, name, arguments if isinstance(arguments, str) else msgspec.json.encode(arguments).decode())]
    )
    result = function["result"]
    content = result if isinstance(result, str) else msgspec.json.encode(result).decode()
    return Turn("assistant", text, (call, {"role": "tool", "tool_call_id": call_id, "content": content}))


def _split(messages: list[InputMessage]) -> tuple[list[str], list[Passage], list[Turn]]:
    """Backstory/instruction messages join the instructions; context messages are
    records (score 1); an answered activity is the function call and its result. A
    checkpoint stands for everything before it (the reference's summary of the
    conversation so far): what came earlier is dropped and its text joins the
    instructions. Reasoning is the model's own and is not sent back (an
    OpenAI-compatible Chat Completions request has no place for it)."""
    instructions: list[str] = []
    passages: list[Passage] = []
    turns: list[Turn] = []
    checkpoint: str | None = None
    for n, (type_, text, meta) in enumerate(messages):
        if type_ in ("backstory", "instruction"):
            instructions.append(text)
        elif type_ == "context":
            passages.append(Passage(text=text, score=1.0))
        elif type_ in _ROLES:
            turns.append(Turn(_ROLES[type_], text))
        elif type_ == "activity":
            if (turn := _activity_turn(text, meta, n)) is not None:
                turns.append(turn)
        elif type_ == "checkpoint":
            checkpoint, turns, passages = text, [], []
    if checkpoint:
        instructions.append(f"Summary of the conversation so far:\n{checkpoint}")
    return instructions, passages, turns


def draft(registry: Registry, model: str | None, messages: list[InputMessage]) -> Draft:
    """(type, text, meta) messages, oldest first, for the model a model string names."""
    info, params, requested = registry.resolve(model)
    if params.interaction_max_messages is not None:
        messages = messages[-params.interaction_max_messages :]
    instructions, passages, turns = _split(messages)
    last_user = max((i for i, t in enumerate(turns) if t.role == "user"), default=None)
    if last_user is None:
        if not turns:
            raise BadRequest("there is no user or bot message to answer")
        return Draft(info, params, requested, registry.timeouts, instructions, passages, turns, None, [])
    after = [m for t in turns[last_user + 1 :] for m in t.provider_messages()]
    latest = turns[last_user]
    return Draft(
        info,
        params,
        requested,
        registry.timeouts,
        instructions,
        passages,
        turns[:last_user],
        latest,
        after,
        query=clean_query(latest.text),
    )


def function_tools(functions: list[Function], taken: set[str]) -> list[Tool]:
    tools = []
    for i, f in enumerate(functions):
        if f.name in taken:
            raise BadRequest(f"functions[{i}].name: {f.name!r} is given twice")
        taken.add(f.name)
        result = f.result or {}
        tools.append(
            Tool(
                name=f.name,
                description=f.description,
                parameters=f.parameters,
                kind="function",
                has_result="data" in result,
                result=result.get("data"),
                channel=result.get("channel") if isinstance(result.get("channel"), str) else None,
            )
        )
    return tools


def ability_tools(abilities: list[Ability], taken: set[str]) -> list[Tool]:
    return [
        Tool(
            name=tool_name(a.name or "ability", taken),
            description=a.description or a.name,
            parameters=a.parameters or _EMPTY_PARAMETERS,
            kind="ability",
            instruction=a.instruction,
            execute=a.execute,
        )
        for a in abilities[: ABILITIES_MAX * 2]
    ]


def build(d: Draft, backstory: str | None, extras: Extras) -> Job:
    taken: set[str] = set()
    tools = function_tools(extras.functions, taken) + ability_tools(extras.abilities, taken)
    instructions = [s for s in (backstory, extras.backstory) if s] + d.instructions
    latest = d.latest
    if latest is not None and extras.images and d.model.vision:
        latest = Turn(latest.role, latest.text, latest.messages, tuple(extras.images))
    parts = Parts(
        instructions="\n\n".join(instructions),
        passages=d.passages + extras.passages,
        history=d.history,
        latest=latest,
        tail=d.after,
        match_instruction=extras.match_instruction,
        mismatch_instruction=extras.mismatch_instruction if d.query else None,
        counter=d.model.counter,
    )
    job = Job(
        model=d.model,
        params=d.params,
        requested=d.requested,
        parts=parts,
        timeouts=d.timeouts,
        tools=tools,
        limits=extras.limits,
        query=d.query,
    )
    prepare(job)  # 400 now if even the instructions and the latest message cannot fit
    return job
