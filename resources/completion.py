"""Completions: `conversation/complete` (stateless), `conversation/{id}/complete`,
`conversation/{id}/send` and `conversation/{id}/receive`.

Everything a request can get wrong is checked before the first byte (a 4xx answer,
never an error line): the conversation, the bot, the model string, the functions,
and whether the context can fit the model at all. With `Accept: application/jsonl`
the answer streams `message` (context, activity), `token`, `usage` and a final
`result` event; the result's text equals the concatenated tokens.

What is stored (conversation routes): the user message when the request arrives;
the bot message, the activity messages of its tool calls and the usage row only
when the completion finished, together in one transaction. A completion that fails
or is abandoned mid-stream (upstream error, client gone) stores none of them: no
half-written bot message, ever."""

from __future__ import annotations

import re
from typing import Annotated, Any, AsyncIterator, Literal

import msgspec

from ..actions.base import Action, Call, Context, Stream, register
from ..errors import BadRequest, LimitsReached, NotFound
from ..actions.fields import Description, LongText, MetaDict, Name, Ref, check_meta
from ..actions.ids import new_id
from ..actions.standard import now_ms
from ..engine import models as engine_models
from ..engine.context import Parts, Turn
from ..engine.provider import Passage, Reasoning
from ..engine.run import Job, Limits as EngineLimits, Message as EngineMessage, Outcome, complete, prepare
from ..engine.tools import Tool, tool_name
from .bot import ModelName
from .common import Body
from .conversation import Entity, MessageType
from .search import clean_query, dataset_passages, rank_inline
from .usage import record_usage, tokens_used

MEMORIES_MAX = 20         # the conversation contact's newest memories join the context
MEMORY_SCORE = 0.5        # ... as records of this score (reconciliation drops lower scores first)
HISTORY_DEFAULT = 100     # messages of history loaded (interactionMaxMessages overrides)
ABILITIES_MAX = 50

# --- request bodies -------------------------------------------------------------

_JS_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,63}")


class FunctionParameters(msgspec.Struct, kw_only=True):
    type: Literal["object"]
    properties: dict[str, Any]
    required: Annotated[list[Annotated[str, msgspec.Meta(max_length=256)]], msgspec.Meta(max_length=100)] | None = None


class FunctionCallConfig(Body):
    start: bool | None = None
    end: bool | None = None


class FunctionDefinition(Body):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                      description="A valid JavaScript identifier, at most 64 characters")]
    description: Annotated[str, msgspec.Meta(max_length=4096)]
    parameters: FunctionParameters
    result: Annotated[dict[str, Any], msgspec.Meta(
        description='`{"data": ...}`: the engine answers the call with this data and goes on; '
                    '`{"channel": "..."}` or no result: the call is the client\'s to run '
                    '(the completion ends with reason "activity")')] | None = None
    call: FunctionCallConfig | None = None


class InlineRecord(Body):
    text: LongText
    meta: MetaDict | None = None


class InlineDataset(Body):
    records: Annotated[list[InlineRecord], msgspec.Meta(max_length=1000)]
    name: Name | None = None
    description: Description | None = None


class InlineAbility(Body):
    name: Name
    description: Description
    instruction: LongText
    secret_id: Ref | None = None
    meta: MetaDict | None = None


class InlineSkillset(Body):
    abilities: Annotated[list[InlineAbility], msgspec.Meta(max_length=100)]
    name: Name | None = None
    description: Description | None = None


class Feature(Body):
    name: Name
    options: dict[str, Any] | None = None


class Extensions(Body):
    backstory: LongText | None = None
    datasets: Annotated[list[InlineDataset], msgspec.Meta(max_length=20)] | None = None
    skillsets: Annotated[list[InlineSkillset], msgspec.Meta(max_length=20)] | None = None
    features: Annotated[list[Feature], msgspec.Meta(max_length=50)] | None = None


class Limits(Body):
    iterations: Annotated[int, msgspec.Meta(ge=1, le=100, description=(
        f"Model calls in one completion (tool-call rounds); default {EngineLimits.iterations}"))] | None = None
    continuations: Annotated[int, msgspec.Meta(ge=0, le=20, description=(
        f"Automatic continuations when the model stops for length; default {EngineLimits.continuations}"))] | None = None
    calls: Annotated[int, msgspec.Meta(ge=1, le=200, description=(
        f"Function/ability calls in one completion; default {EngineLimits.calls}"))] | None = None


Functions = Annotated[list[FunctionDefinition], msgspec.Meta(max_length=128)]


class InputMessage(Body):
    type: MessageType
    text: LongText
    meta: MetaDict | None = None


class Attachment(Body):
    url: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


class CompleteBody(Body):
    messages: Annotated[list[InputMessage], msgspec.Meta(max_length=1000)]
    bot_id: Ref | None = None
    model: ModelName | None = None
    backstory: LongText | None = None
    dataset_id: Ref | None = None
    skillset_id: Ref | None = None
    privacy: bool | None = None
    moderation: bool | None = None
    attachments: Annotated[list[Attachment], msgspec.Meta(max_length=100)] | None = None
    contact_id: Annotated[str, msgspec.Meta(max_length=64)] | dict[str, Any] | None = None
    functions: Functions | None = None
    extensions: Extensions | None = None
    limits: Limits | None = None


class ConversationCompleteBody(Body):
    text: LongText | None = None
    entities: Annotated[list[Entity], msgspec.Meta(max_length=1000)] | None = None
    functions: Functions | None = None
    extensions: Extensions | None = None
    limits: Limits | None = None


class SendBody(Body):
    text: LongText
    entities: Annotated[list[Entity], msgspec.Meta(max_length=1000)] | None = None
    functions: Functions | None = None
    extensions: Extensions | None = None


class ReceiveBody(Body):
    functions: Functions | None = None
    extensions: Extensions | None = None
    limits: Limits | None = None


# --- responses ----------------------------------------------------------------

class TokenUsage(msgspec.Struct):
    token: int


class End(msgspec.Struct):
    reason: Literal["length", "stop", "activity", "abort", "error", "iteration"]


class CompleteResult(msgspec.Struct):
    text: str
    usage: TokenUsage
    end: End


class ConversationCompleteResult(msgspec.Struct):
    id: str
    text: str
    usage: TokenUsage
    end: End


class SendResult(msgspec.Struct):
    id: str
    entities: list[Entity]


class ReceiveResult(msgspec.Struct):
    id: str
    text: str
    usage: TokenUsage


# --- JSONL events ---------------------------------------------------------------
# The structs document the stream in the spec (an action's `events`); the token line,
# the hot path, is written by hand and is byte-for-byte what TokenEvent encodes to.

_ENCODE = msgspec.json.encode


class TokenData(msgspec.Struct):
    token: str


class TokenEvent(msgspec.Struct, tag_field="type", tag="token"):
    data: TokenData


class ReasoningTokenEvent(msgspec.Struct, tag_field="type", tag="reasoningToken"):
    """The model's reasoning, as it streams (not part of the answer's text)."""
    data: TokenData


class MessageData(msgspec.Struct, omit_defaults=True):
    type: str
    text: str
    meta: dict | None = None


class MessageEvent(msgspec.Struct, tag_field="type", tag="message"):
    """A message the engine adds: `context` (the records used) or `activity` (a call)."""
    data: MessageData


class UsageData(msgspec.Struct, rename="camel"):
    model: str
    input_tokens_used: int
    output_tokens_used: int


class UsageEvent(msgspec.Struct, tag_field="type", tag="usage"):
    data: UsageData


class ErrorData(msgspec.Struct):
    message: str
    code: str


class ErrorEvent(msgspec.Struct, tag_field="type", tag="error"):
    """A failure after the stream started (the stream ends after it)."""
    data: ErrorData


class CompleteResultEvent(msgspec.Struct, tag_field="type", tag="result"):
    data: CompleteResult


class ConversationCompleteResultEvent(msgspec.Struct, tag_field="type", tag="result"):
    data: ConversationCompleteResult


class ReceiveResultEvent(msgspec.Struct, tag_field="type", tag="result"):
    data: ReceiveResult


class SendResultEvent(msgspec.Struct, tag_field="type", tag="result"):
    data: SendResult


CompleteEvents = TokenEvent | ReasoningTokenEvent | MessageEvent | UsageEvent | ErrorEvent | CompleteResultEvent
ConversationCompleteEvents = TokenEvent | ReasoningTokenEvent | MessageEvent | UsageEvent | ErrorEvent | ConversationCompleteResultEvent
ReceiveEvents = TokenEvent | ReasoningTokenEvent | MessageEvent | UsageEvent | ErrorEvent | ReceiveResultEvent


def _token_line(token: str) -> bytes:
    return b'{"type":"token","data":{"token":' + _ENCODE(token) + b"}}\n"


def _reasoning_line(token: str) -> bytes:
    return b'{"type":"reasoningToken","data":{"token":' + _ENCODE(token) + b"}}\n"


def _message_line(m: EngineMessage) -> bytes:
    return _ENCODE(MessageEvent(MessageData(m.type, m.text, m.meta))) + b"\n"


def _usage_line(o: Outcome) -> bytes:
    return _ENCODE(UsageEvent(UsageData(o.model, o.input_tokens, o.output_tokens))) + b"\n"


def _result_line(result: Any) -> bytes:
    return b'{"type":"result","data":' + _ENCODE(result) + b"}\n"


# --- building a job ---------------------------------------------------------------

class Config(msgspec.Struct):
    """The bot configuration a completion runs with."""
    model: str | None = None
    backstory: str | None = None
    dataset_id: str | None = None
    skillset_id: str | None = None
    bot_id: str | None = None
    conversation_id: str | None = None
    contact_id: str | None = None
    task_id: str | None = None


def _limits(limits: Limits | None) -> EngineLimits:
    out = EngineLimits()
    if limits is not None:
        if limits.iterations is not None:
            out.iterations = limits.iterations
        if limits.continuations is not None:
            out.continuations = limits.continuations
        if limits.calls is not None:
            out.calls = limits.calls
    return out


def _function_tools(functions: list[FunctionDefinition] | None, taken: set[str]) -> list[Tool]:
    tools = []
    for i, f in enumerate(functions or ()):
        if not _JS_IDENTIFIER.fullmatch(f.name):
            raise BadRequest(f"functions[{i}].name: {f.name[:64]!r} is not a valid JavaScript identifier")
        if f.name in taken:
            raise BadRequest(f"functions[{i}].name: {f.name!r} is given twice")
        taken.add(f.name)
        result = f.result or {}
        has_result = "data" in result
        if result and not has_result and not isinstance(result.get("channel"), str):
            raise BadRequest(f'functions[{i}].result: give {{"data": ...}} or {{"channel": "..."}}')
        schema: dict[str, Any] = {"type": "object", "properties": f.parameters.properties}
        if f.parameters.required is not None:
            schema["required"] = f.parameters.required
        tools.append(Tool(name=f.name, description=f.description, parameters=schema, kind="function",
                          has_result=has_result, result=result.get("data")))
    return tools


_EMPTY_PARAMETERS = {"type": "object", "properties": {}}


async def _ability_tools(conn, account_id: str, skillset_id: str | None, extensions: Extensions | None,
                         taken: set[str]) -> list[Tool]:
    tools = []
    if skillset_id:
        rows = await conn.fetch("SELECT id, name, description, instruction FROM abilities "
                                "WHERE skillset_id = $1 AND account_id = $2 ORDER BY id LIMIT $3",
                                skillset_id, account_id, ABILITIES_MAX)
        for r in rows:
            tools.append(Tool(name=tool_name(r["name"] or "ability", taken), description=r["description"] or r["name"],
                              parameters=_EMPTY_PARAMETERS, kind="ability", instruction=r["instruction"],
                              ability_id=r["id"]))
    for skillset in (extensions.skillsets if extensions and extensions.skillsets else ()):
        for a in skillset.abilities:
            if len(tools) >= ABILITIES_MAX * 2:
                break
            tools.append(Tool(name=tool_name(a.name or "ability", taken), description=a.description or a.name,
                              parameters=_EMPTY_PARAMETERS, kind="ability", instruction=a.instruction))
    return tools


def _role(type_: str) -> str | None:
    return {"user": "user", "bot": "assistant"}.get(type_)


def _split(messages: list[tuple[str, str]]) -> tuple[list[str], list[Passage], list[Turn], Turn | None,
                                                      list[dict[str, Any]]]:
    """(type, text) messages, oldest first → (instructions, context passages, history,
    latest user message, what follows it). Backstory/instruction messages join the
    instructions; context messages are records (score 1); activity, reasoning and
    checkpoint messages are not shown to the model."""
    instructions: list[str] = []
    passages: list[Passage] = []
    turns: list[Turn] = []
    for type_, text in messages:
        if type_ in ("backstory", "instruction"):
            instructions.append(text)
        elif type_ == "context":
            passages.append(Passage(text=text, score=1.0))
        else:
            role = _role(type_)
            if role is not None:
                turns.append(Turn(role, text))
    last_user = max((i for i, t in enumerate(turns) if t.role == "user"), default=None)
    if last_user is None:
        return instructions, passages, turns, None, []
    after = [{"role": t.role, "content": t.text} for t in turns[last_user + 1:]]
    return instructions, passages, turns[:last_user], turns[last_user], after


async def _build(ctx: Context, conn, config: Config, messages: list[tuple[str, str]], *,
                 functions: list[FunctionDefinition] | None, extensions: Extensions | None,
                 limits: Limits | None) -> Job:
    reg = engine_models.registry()
    model, params, requested = reg.resolve(config.model)
    if params.interaction_max_messages is not None:
        messages = messages[-params.interaction_max_messages:]
    taken: set[str] = set()
    tools = _function_tools(functions, taken)
    tools += await _ability_tools(conn, ctx.account_id, config.skillset_id, extensions, taken)
    extra_instructions, context_passages, history, latest, after = _split(messages)
    if latest is None and not history and not after:
        raise BadRequest("there is no user or bot message to answer")
    query = clean_query(latest.text) if latest is not None else ""
    passages: list[Passage] = list(context_passages)
    match = mismatch = None
    if config.dataset_id and query:
        found, ds = await dataset_passages(conn, ctx.account_id, config.dataset_id, query)
        passages += found
        if ds is not None:
            match, mismatch = ds["match_instruction"], ds["mismatch_instruction"]
    if config.contact_id:
        rows = await conn.fetch("SELECT id, text FROM memories WHERE contact_id = $1 AND account_id = $2 "
                                "ORDER BY id DESC LIMIT $3", config.contact_id, ctx.account_id, MEMORIES_MAX)
        passages += [Passage(text=f"(remembered about this contact) {r['text']}", score=MEMORY_SCORE,
                             meta={"memoryId": r["id"]}) for r in rows]
    if extensions and extensions.datasets and query:
        inline = [(r.text, r.meta) for d in extensions.datasets for r in d.records]
        passages += rank_inline(query, inline)
    instructions = [s for s in (config.backstory, extensions.backstory if extensions else None) if s]
    instructions += extra_instructions
    parts = Parts(instructions="\n\n".join(instructions), passages=passages, history=history, latest=latest,
                  tail=after, match_instruction=match, mismatch_instruction=mismatch if query else None)
    job = Job(registry=reg, model=model, params=params, requested=requested, parts=parts, tools=tools,
              limits=_limits(limits), query=query)
    prepare(job)  # 400 now if even the instructions and the latest message cannot fit
    return job


# --- running it -------------------------------------------------------------------

def _storable(meta: dict) -> dict:
    """jsonb refuses NUL characters (a model may write them in tool arguments)."""
    raw = msgspec.json.encode(meta)
    if b"\\u0000" in raw:
        try:
            meta = msgspec.json.decode(raw.replace(b"\\u0000", b""))
        except msgspec.DecodeError:  # an escaped backslash before "u0000": drop the details
            meta = {"activity": {"type": "response"}}
    return meta


async def _store(ctx: Context, config: Config, outcome: Outcome) -> str | None:
    """The finished completion: activity messages, the bot message, the usage row."""
    async with ctx.pool.connection() as conn:
        async with conn.transaction():
            message_id = None
            if config.conversation_id is not None:
                now = now_ms()
                rows = [(new_id(), "activity", m.text.replace("\x00", ""), _storable(m.meta or {}))
                        for m in outcome.messages]
                if outcome.text or not rows:
                    rows.append((new_id(), "bot", outcome.text.replace("\x00", ""),
                                 {"model": outcome.model, "end": {"reason": outcome.reason}}))
                await conn.executemany(
                    "INSERT INTO messages (id, account_id, conversation_id, type, text, meta, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                    [(mid, ctx.account_id, config.conversation_id, type_, text, meta, now)
                     for mid, type_, text, meta in rows])
                message_id = rows[-1][0]
            await record_usage(conn, ctx.account_id, model=outcome.model, input_tokens=outcome.input_tokens,
                               output_tokens=outcome.output_tokens, conversation_id=config.conversation_id,
                               message_id=message_id, bot_id=config.bot_id, contact_id=config.contact_id,
                               task_id=config.task_id, dataset_id=config.dataset_id, skillset_id=config.skillset_id)
            return message_id


def _result(kind: str, message_id: str | None, outcome: Outcome) -> Any:
    usage = TokenUsage(token=outcome.input_tokens + outcome.output_tokens)
    end = End(reason=outcome.reason)
    if kind == "receive":
        return ReceiveResult(id=message_id or "", text=outcome.text, usage=usage)
    if kind == "conversation":
        return ConversationCompleteResult(id=message_id or "", text=outcome.text, usage=usage, end=end)
    return CompleteResult(text=outcome.text, usage=usage, end=end)


async def _collect(ctx: Context, config: Config, job: Job, kind: str) -> Any:
    outcome = None
    async for event in complete(job):
        if isinstance(event, Outcome):
            outcome = event
    assert outcome is not None
    message_id = await _store(ctx, config, outcome)
    return _result(kind, message_id, outcome)


async def _lines(ctx: Context, config: Config, job: Job, kind: str) -> AsyncIterator[bytes]:
    async for event in complete(job):
        if type(event) is str:
            yield _token_line(event)
        elif type(event) is Reasoning:
            yield _reasoning_line(event.text)
        elif isinstance(event, EngineMessage):
            yield _message_line(event)
        else:
            message_id = await _store(ctx, config, event)
            yield _usage_line(event) + _result_line(_result(kind, message_id, event))


async def _primed(lines: AsyncIterator[bytes]) -> Stream:
    """Wait for the first line before answering 200, so that a model that fails
    before its first token (429, unreachable, refused) is an HTTP error, not an
    error line. Each later failure is an error line (from the transport)."""
    try:
        first = await lines.__anext__()
    except StopAsyncIteration:
        first = b""
    except BaseException:
        await lines.aclose()
        raise

    async def chain() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for line in lines:
                yield line
        finally:
            await lines.aclose()

    return Stream(chain())


async def _answer(ctx: Context, call: Call, config: Config, job: Job, kind: str) -> Any:
    if call.jsonl:
        return await _primed(_lines(ctx, config, job, kind))
    return await _collect(ctx, config, job, kind)


async def _check_limits(conn, ctx: Context, messages: int) -> None:
    """A partner's limits on its child account: messages a month, model tokens a month."""
    limits = getattr(ctx.principal, "limits", None)
    if not limits:
        return
    from ..actions.auth import enforce_limit, month_start_ms
    if messages:
        await enforce_limit(conn, ctx.principal, "message", "messages", adding=messages)
    cap = limits.get("tokens") if isinstance(limits, dict) else None
    if cap is not None and await tokens_used(conn, ctx.account_id, month_start_ms()) >= cap:
        raise LimitsReached(f"the account's tokens limit ({cap:g}) is reached")


# --- loading what a conversation runs with ------------------------------------------

_CONVERSATION = """
SELECT c.id, c.bot_id, c.contact_id, c.task_id,
       COALESCE(c.model, b.model) AS model, COALESCE(c.backstory, b.backstory) AS backstory,
       COALESCE(c.dataset_id, b.dataset_id) AS dataset_id, COALESCE(c.skillset_id, b.skillset_id) AS skillset_id
  FROM conversations c LEFT JOIN bots b ON b.id = c.bot_id AND b.account_id = c.account_id
 WHERE c.id = $1 AND c.account_id = $2
"""

_HISTORY = ("SELECT type, text FROM messages WHERE conversation_id = $1 AND account_id = $2 "
            "ORDER BY id DESC LIMIT $3")


async def _conversation(conn, ctx: Context, conversation_id: str) -> Config:
    row = await conn.fetchrow(_CONVERSATION, conversation_id, ctx.account_id)
    if row is None:
        raise NotFound("conversation not found")
    return Config(model=row["model"], backstory=row["backstory"], dataset_id=row["dataset_id"],
                  skillset_id=row["skillset_id"], bot_id=row["bot_id"], conversation_id=row["id"],
                  contact_id=row["contact_id"], task_id=row["task_id"])


async def _history(conn, ctx: Context, config: Config) -> list[tuple[str, str]]:
    limit = HISTORY_DEFAULT
    if config.model:
        _, params = engine_models.parse(config.model)
        if params.interaction_max_messages is not None:
            limit = params.interaction_max_messages
    rows = await conn.fetch(_HISTORY, config.conversation_id, ctx.account_id, limit)
    return [(r["type"], r["text"]) for r in reversed(rows)]


async def _insert_user_message(conn, ctx: Context, conversation_id: str, text: str,
                               entities: list[Entity] | None) -> str:
    message_id = new_id()
    now = now_ms()
    await conn.execute(
        "INSERT INTO messages (id, account_id, conversation_id, type, text, entities, created_at, updated_at) "
        "VALUES ($1, $2, $3, 'user', $4, $5, $6, $6)",
        message_id, ctx.account_id, conversation_id, text, msgspec.to_builtins(entities or []), now)
    return message_id


# --- the actions --------------------------------------------------------------------

class CompleteConversation(Action):
    path = "/conversation/complete"
    tag = "Conversation"
    summary = ("Complete the next message of the given messages, without storing them "
               "(JSON, or `Accept: application/jsonl` for token, message, usage and result events)")
    body = CompleteBody
    response = CompleteResult
    events = CompleteEvents

    async def run(self, ctx: Context, call: Call) -> Any:
        body: CompleteBody = call.body
        for i, m in enumerate(body.messages):
            if m.meta is not None:
                check_meta(m.meta, f"messages[{i}].meta")
        config = Config(model=body.model, backstory=body.backstory, dataset_id=body.dataset_id,
                        skillset_id=body.skillset_id, bot_id=body.bot_id)
        async with ctx.pool.connection() as conn:
            if body.bot_id is not None:
                bot = await conn.fetchrow("SELECT model, backstory, dataset_id, skillset_id FROM bots "
                                          "WHERE id = $1 AND account_id = $2", body.bot_id, ctx.account_id)
                if bot is None:
                    raise NotFound("botId: bot not found")
                config.model = config.model or bot["model"]
                config.backstory = config.backstory or bot["backstory"]
                config.dataset_id = config.dataset_id or bot["dataset_id"]
                config.skillset_id = config.skillset_id or bot["skillset_id"]
            for column, table, noun in (("dataset_id", "datasets", "dataset"), ("skillset_id", "skillsets", "skillset")):
                ref = getattr(body, column)
                if ref is not None and await conn.fetchval(
                        f"SELECT 1 FROM {table} WHERE id = $1 AND account_id = $2", ref, ctx.account_id) is None:
                    raise NotFound(f"{noun}Id: {noun} not found")
            await _check_limits(conn, ctx, 0)
            job = await _build(ctx, conn, config, [(m.type, m.text) for m in body.messages],
                               functions=body.functions, extensions=body.extensions, limits=body.limits)
        return await _answer(ctx, call, config, job, "stateless")


class CompleteInConversation(Action):
    path = "/conversation/{conversationId}/complete"
    tag = "Conversation"
    summary = ("Add the user's `text` to the conversation and complete the bot's answer, stored when "
               "finished (JSON, or `Accept: application/jsonl` for events)")
    body = ConversationCompleteBody
    response = ConversationCompleteResult
    events = ConversationCompleteEvents
    session = True

    async def run(self, ctx: Context, call: Call) -> Any:
        body: ConversationCompleteBody = call.body
        async with ctx.pool.connection() as conn:
            config = await _conversation(conn, ctx, call.params["conversationId"])
            # One transaction: a request refused while building (bad model, functions, a message
            # too long for the model) leaves no user message behind.
            await _check_limits(conn, ctx, 2 if body.text is not None else 1)
            async with conn.transaction():
                if body.text is not None:
                    await _insert_user_message(conn, ctx, config.conversation_id, body.text, body.entities)
                job = await _build(ctx, conn, config, await _history(conn, ctx, config),
                                   functions=body.functions, extensions=body.extensions, limits=body.limits)
        return await _answer(ctx, call, config, job, "conversation")


class SendMessage(Action):
    path = "/conversation/{conversationId}/send"
    tag = "Conversation"
    summary = "Add the user's message to the conversation (conversation/{id}/receive answers it)"
    body = SendBody
    response = SendResult
    events = SendResultEvent
    session = True

    async def run(self, ctx: Context, call: Call) -> Any:
        body: SendBody = call.body
        async with ctx.pool.connection() as conn:
            config = await _conversation(conn, ctx, call.params["conversationId"])
            await _check_limits(conn, ctx, 1)
            message_id = await _insert_user_message(conn, ctx, config.conversation_id, body.text, body.entities)
        result = SendResult(id=message_id, entities=body.entities or [])
        if call.jsonl:
            async def one() -> AsyncIterator[bytes]:
                yield _result_line(result)
            return Stream(one())
        return result


class ReceiveMessage(Action):
    path = "/conversation/{conversationId}/receive"
    tag = "Conversation"
    summary = ("Complete and store the bot's answer to the conversation so far "
               "(JSON, or `Accept: application/jsonl` for events)")
    body = ReceiveBody
    response = ReceiveResult
    events = ReceiveEvents
    session = True

    async def run(self, ctx: Context, call: Call) -> Any:
        body: ReceiveBody = call.body
        async with ctx.pool.connection() as conn:
            config = await _conversation(conn, ctx, call.params["conversationId"])
            await _check_limits(conn, ctx, 1)
            job = await _build(ctx, conn, config, await _history(conn, ctx, config), functions=body.functions,
                               extensions=body.extensions, limits=body.limits)
        return await _answer(ctx, call, config, job, "receive")


register(CompleteConversation(), CompleteInConversation(), SendMessage(), ReceiveMessage())
