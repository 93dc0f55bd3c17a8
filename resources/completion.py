"""Completions: `conversation/complete` (stateless), `conversation/{id}/complete`,
`conversation/{id}/send` and `conversation/{id}/receive`: their bodies, answers and
events, and the actions, which load what a completion runs with and hand it to the
engine (engine/job.py builds the job, engine/run.py runs it).

These four conversation routes live here rather than in conversation.py because a
completion reads bots, datasets, skillsets and memories, and bot.py itself depends on
conversation.py.

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

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from ..actions.auth import enforce_limit, month_start_ms
from ..actions.base import Action, Call, Context, Stream
from ..actions.fields import Body, Description, LongText, MetaDict, Name, Ref
from ..actions.standard import check_refs
from ..actions.stream import (
    ErrorEvent,
    MessageEvent,
    ReasoningTokenEvent,
    TokenEvent,
    UsageEvent,
    message_line,
    one,
    primed,
    reasoning_line,
    result_event,
    result_line,
    token_line,
    usage_line,
)
from ..engine import job as engine_job
from ..engine import retrieval
from ..engine.models import parse as parse_model
from ..engine.provider import Passage, Reasoning
from ..engine.run import Job, Outcome, complete
from ..engine.run import Limits as EngineLimits
from ..engine.run import Message as EngineMessage
from ..errors import LimitsReached, NotFound
from . import bot, conversation, dataset, memory, skillset, usage
from .common import BOT_CONFIG, BotConfig, overlay
from .conversation import Entity, MessageType, NewMessage

MEMORY_SCORE = 0.5  # a contact's memories join the context as records of this score
HISTORY_DEFAULT = 100  # messages of history loaded (interactionMaxMessages overrides)

# --- request bodies -------------------------------------------------------------


class FunctionParameters(msgspec.Struct, kw_only=True):
    type: Literal["object"]
    properties: dict[str, Any]
    required: Annotated[list[Annotated[str, msgspec.Meta(max_length=256)]], msgspec.Meta(max_length=100)] | None = None


class FunctionCallConfig(Body):
    start: bool | None = None
    end: bool | None = None


class FunctionDefinition(Body):
    name: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z_$][A-Za-z0-9_$]{0,63}(?![\s\S])",
            description="A valid JavaScript identifier, at most 64 characters",
        ),
    ]
    description: Annotated[str, msgspec.Meta(max_length=4096)]
    parameters: FunctionParameters
    result: (
        Annotated[
            dict[str, Any],
            msgspec.Meta(
                description='`{"data": ...}`: the engine answers the call with this data and goes on; '
                '`{"channel": "..."}` or no result: the call is the client\'s to run '
                '(the completion ends with reason "activity")'
            ),
        ]
        | None
    ) = None
    call: FunctionCallConfig | None = None

    def __post_init__(self) -> None:
        result = self.result
        if result and "data" not in result and not isinstance(result.get("channel"), str):
            raise ValueError('result: give {"data": ...} or {"channel": "..."}')

    def engine(self) -> engine_job.Function:
        schema: dict[str, Any] = {"type": "object", "properties": self.parameters.properties}
        if self.parameters.required is not None:
            schema["required"] = self.parameters.required
        return engine_job.Function(self.name, self.description, schema, self.result)


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
    iterations: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=100,
                description=(f"Model calls in one completion (tool-call rounds); default {EngineLimits.iterations}"),
            ),
        ]
        | None
    ) = None
    continuations: (
        Annotated[
            int,
            msgspec.Meta(
                ge=0,
                le=20,
                description=(
                    f"Automatic continuations when the model stops for length; default {EngineLimits.continuations}"
                ),
            ),
        ]
        | None
    ) = None
    calls: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1, le=200, description=(f"Function/ability calls in one completion; default {EngineLimits.calls}")
            ),
        ]
        | None
    ) = None

    def engine(self) -> EngineLimits:
        out = EngineLimits()
        for name in ("iterations", "continuations", "calls"):
            if (value := getattr(self, name)) is not None:
                setattr(out, name, value)
        return out


Functions = Annotated[list[FunctionDefinition], msgspec.Meta(max_length=128)]


class InputMessage(Body):
    type: MessageType
    text: LongText
    meta: MetaDict | None = None


class Attachment(Body):
    url: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


class CompleteBody(BotConfig, kw_only=True):
    messages: Annotated[list[InputMessage], msgspec.Meta(max_length=1000)]
    bot_id: Ref | None = None
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


# --- JSONL events (actions/stream.py writes them) ---------------------------------

CompleteEvents = (
    TokenEvent | ReasoningTokenEvent | MessageEvent | UsageEvent | ErrorEvent | result_event(CompleteResult)
)
ConversationCompleteEvents = (
    TokenEvent | ReasoningTokenEvent | MessageEvent | UsageEvent | ErrorEvent | result_event(ConversationCompleteResult)
)
ReceiveEvents = TokenEvent | ReasoningTokenEvent | MessageEvent | UsageEvent | ErrorEvent | result_event(ReceiveResult)
SendEvents = result_event(SendResult)


# --- what a completion runs with, and where it is stored ------------------------------


@dataclass
class Run:
    config: BotConfig
    kind: Literal["stateless", "conversation", "receive"]
    bot_id: str | None = None
    conversation_id: str | None = None  # None: nothing is stored but usage
    contact_id: str | None = None
    task_id: str | None = None


async def _conversation(conn, ctx: Context, conversation_id: str, kind: Literal["conversation", "receive"]) -> Run:
    row = await conversation.run_config(conn, ctx.account_id, conversation_id)
    if row is None:
        raise NotFound("conversation not found")
    own = BotConfig(**{f: row[f] for f in BOT_CONFIG})
    under = await bot.config(conn, ctx.account_id, row["bot_id"]) if row["bot_id"] else None
    return Run(
        overlay(own, under),
        kind,
        bot_id=row["bot_id"],
        conversation_id=row["id"],
        contact_id=row["contact_id"],
        task_id=row["task_id"],
    )


async def _history(conn, ctx: Context, run: Run) -> list[tuple[str, str]]:
    limit = HISTORY_DEFAULT
    if run.config.model:
        _, params = parse_model(run.config.model)
        if params.interaction_max_messages is not None:
            limit = params.interaction_max_messages
    assert run.conversation_id is not None
    return await conversation.history(conn, ctx.account_id, run.conversation_id, limit)


async def _check_limits(conn, ctx: Context, messages: int) -> None:
    """A partner's limits on its child account: messages a month, model tokens a month."""
    limits = ctx.principal.limits if ctx.principal is not None else None
    if not limits:
        return
    if messages:
        await enforce_limit(conn, ctx.principal, "message", "messages", adding=messages)
    cap = limits.get("tokens") if isinstance(limits, dict) else None
    if cap is not None and await usage.tokens_used(conn, ctx.account_id, month_start_ms()) >= cap:
        raise LimitsReached(f"the account's tokens limit ({cap:g}) is reached")


async def _passages(
    conn, ctx: Context, run: Run, query: str, extensions: Extensions | None, extras: engine_job.Extras
) -> None:
    """The records that join the context: the dataset's best matches (with its
    instructions), the contact's memories, the request's inline records."""
    models = ctx.services.models
    if run.config.dataset_id and query:
        settings = await dataset.search_settings(conn, ctx.account_id, run.config.dataset_id)
        if settings is not None:
            found = await retrieval.search_records(
                conn,
                ctx.account_id,
                run.config.dataset_id,
                query,
                dataset.bounds(settings),
                embeddings=models.embeddings,
                timeouts=models.timeouts,
            )
            extras.passages += retrieval.passages(found)
            extras.match_instruction = settings["match_instruction"]
            extras.mismatch_instruction = settings["mismatch_instruction"]
    if run.contact_id:
        extras.passages += [
            Passage(text=f"(remembered about this contact) {r['text']}", score=MEMORY_SCORE, meta={"memoryId": r["id"]})
            for r in await memory.recent(conn, ctx.account_id, run.contact_id)
        ]
    if extensions and extensions.datasets and query:
        extras.passages += retrieval.rank_inline(
            query, [(r.text, r.meta) for d in extensions.datasets for r in d.records]
        )


async def _build(
    ctx: Context,
    conn,
    run: Run,
    messages: list[tuple[str, str]],
    *,
    functions: list[FunctionDefinition] | None,
    extensions: Extensions | None,
    limits: Limits | None,
) -> Job:
    draft = engine_job.draft(ctx.services.models, run.config.model, messages)
    extras = engine_job.Extras(
        backstory=extensions.backstory if extensions else None,
        functions=[f.engine() for f in functions or ()],
        limits=limits.engine() if limits is not None else EngineLimits(),
    )
    if run.config.skillset_id:
        extras.abilities += await skillset.abilities_of(conn, ctx.account_id, run.config.skillset_id)
    for inline in extensions.skillsets if extensions and extensions.skillsets else ():
        extras.abilities += [engine_job.Ability(a.name, a.description, a.instruction) for a in inline.abilities]
    await _passages(conn, ctx, run, draft.query, extensions, extras)
    return engine_job.build(draft, run.config.backstory, extras)


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


async def _store(ctx: Context, run: Run, outcome: Outcome) -> str | None:
    """The finished completion: activity messages, the bot message, the usage row."""
    async with ctx.pool.connection() as conn, conn.transaction():
        message_id = None
        if run.conversation_id is not None:
            rows = [NewMessage("activity", m.text, _storable(m.meta or {})) for m in outcome.messages]
            if outcome.text or not rows:
                rows.append(
                    NewMessage("bot", outcome.text, {"model": outcome.model, "end": {"reason": outcome.reason}})
                )
            message_id = (await conversation.insert_messages(conn, ctx.account_id, run.conversation_id, rows))[-1]
        c = run.config
        await usage.record_usage(
            conn,
            ctx.account_id,
            model=outcome.model,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
            conversation_id=run.conversation_id,
            message_id=message_id,
            bot_id=run.bot_id,
            contact_id=run.contact_id,
            task_id=run.task_id,
            dataset_id=c.dataset_id,
            skillset_id=c.skillset_id,
        )
        return message_id


def _result(run: Run, message_id: str | None, outcome: Outcome) -> Any:
    used = TokenUsage(token=outcome.input_tokens + outcome.output_tokens)
    end = End(reason=outcome.reason)  # type: ignore[arg-type]
    if run.kind == "receive":
        return ReceiveResult(id=message_id or "", text=outcome.text, usage=used)
    if run.kind == "conversation":
        return ConversationCompleteResult(id=message_id or "", text=outcome.text, usage=used, end=end)
    return CompleteResult(text=outcome.text, usage=used, end=end)


async def _collect(ctx: Context, run: Run, job: Job) -> Any:
    outcome = None
    async for event in complete(job):
        if isinstance(event, Outcome):
            outcome = event
    assert outcome is not None
    return _result(run, await _store(ctx, run, outcome), outcome)


async def _lines(ctx: Context, run: Run, job: Job) -> AsyncIterator[bytes]:
    async for event in complete(job):
        if type(event) is str:
            yield token_line(event)
        elif type(event) is Reasoning:
            yield reasoning_line(event.text)
        elif isinstance(event, EngineMessage):
            yield message_line(event.type, event.text, event.meta)
        elif isinstance(event, Outcome):
            message_id = await _store(ctx, run, event)
            yield (
                usage_line(event.model, event.input_tokens, event.output_tokens)
                + result_line(_result(run, message_id, event))
            )


async def _answer(ctx: Context, call: Call, run: Run, job: Job) -> Any:
    if call.jsonl:
        return await primed(_lines(ctx, run, job))
    return await _collect(ctx, run, job)


async def _user_message(conn, ctx: Context, run: Run, text: str, entities: list[Entity] | None) -> str:
    assert run.conversation_id is not None
    ids = await conversation.insert_messages(
        conn, ctx.account_id, run.conversation_id, [NewMessage("user", text, entities=entities)]
    )
    return ids[0]


# --- the actions --------------------------------------------------------------------


class CompleteConversation(Action):
    tag = "Conversation"
    summary = (
        "Complete the next message of the given messages, without storing them "
        "(JSON, or `Accept: application/jsonl` for token, message, usage and result events)"
    )
    body = CompleteBody
    response = CompleteResult
    events = CompleteEvents
    budget = "messages"

    async def run(self, ctx: Context, call: Call) -> Any:
        body: CompleteBody = call.body
        async with ctx.pool.connection() as conn:
            config = BotConfig(**{f: getattr(body, f) for f in BOT_CONFIG})
            if body.bot_id is not None:
                under = await bot.config(conn, ctx.account_id, body.bot_id)
                if under is None:
                    raise NotFound("botId: bot not found")
                config = overlay(config, under)
            await check_refs(
                conn, conversation.TABLE, ctx, {"dataset_id": body.dataset_id, "skillset_id": body.skillset_id}
            )
            await _check_limits(conn, ctx, 0)
            run = Run(config, "stateless", bot_id=body.bot_id)
            job = await _build(
                ctx,
                conn,
                run,
                [(m.type, m.text) for m in body.messages],
                functions=body.functions,
                extensions=body.extensions,
                limits=body.limits,
            )
        return await _answer(ctx, call, run, job)


class CompleteInConversation(Action):
    tag = "Conversation"
    summary = (
        "Add the user's `text` to the conversation and complete the bot's answer, stored when "
        "finished (JSON, or `Accept: application/jsonl` for events)"
    )
    body = ConversationCompleteBody
    response = ConversationCompleteResult
    events = ConversationCompleteEvents
    session = True
    budget = "messages"

    async def run(self, ctx: Context, call: Call) -> Any:
        body: ConversationCompleteBody = call.body
        async with ctx.pool.connection() as conn:
            run = await _conversation(conn, ctx, call.params["conversationId"], "conversation")
            # One transaction: a request refused while building (bad model, functions, a message
            # too long for the model) leaves no user message behind.
            await _check_limits(conn, ctx, 2 if body.text is not None else 1)
            async with conn.transaction():
                if body.text is not None:
                    await _user_message(conn, ctx, run, body.text, body.entities)
                job = await _build(
                    ctx,
                    conn,
                    run,
                    await _history(conn, ctx, run),
                    functions=body.functions,
                    extensions=body.extensions,
                    limits=body.limits,
                )
        return await _answer(ctx, call, run, job)


class SendMessage(Action):
    tag = "Conversation"
    summary = "Add the user's message to the conversation (conversation/{id}/receive answers it)"
    body = SendBody
    response = SendResult
    events = SendEvents
    session = True
    budget = "messages"

    async def run(self, ctx: Context, call: Call) -> Any:
        body: SendBody = call.body
        async with ctx.pool.connection() as conn:
            run = await _conversation(conn, ctx, call.params["conversationId"], "conversation")
            await _check_limits(conn, ctx, 1)
            message_id = await _user_message(conn, ctx, run, body.text, body.entities)
        result = SendResult(id=message_id, entities=body.entities or [])
        return Stream(one(result_line(result))) if call.jsonl else result


class ReceiveMessage(Action):
    tag = "Conversation"
    summary = (
        "Complete and store the bot's answer to the conversation so far "
        "(JSON, or `Accept: application/jsonl` for events)"
    )
    body = ReceiveBody
    response = ReceiveResult
    events = ReceiveEvents
    session = True
    budget = "messages"

    async def run(self, ctx: Context, call: Call) -> Any:
        body: ReceiveBody = call.body
        async with ctx.pool.connection() as conn:
            run = await _conversation(conn, ctx, call.params["conversationId"], "receive")
            await _check_limits(conn, ctx, 1)
            job = await _build(
                ctx,
                conn,
                run,
                await _history(conn, ctx, run),
                functions=body.functions,
                extensions=body.extensions,
                limits=body.limits,
            )
        return await _answer(ctx, call, run, job)


ACTIONS: list[Action] = [
    CompleteConversation("/conversation/complete"),
    CompleteInConversation("/conversation/{conversationId}/complete"),
    SendMessage("/conversation/{conversationId}/send"),
    ReceiveMessage("/conversation/{conversationId}/receive"),
]
