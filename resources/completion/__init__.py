"""Completions: `conversation/complete` (stateless), `conversation/{id}/complete`,
`conversation/{id}/send` and `conversation/{id}/receive`: their bodies, answers and
events, and the actions, which load what a completion runs with and hand it to the
engine (engine/job.py builds the job, engine/run.py runs it). Compaction
(`conversation/compact`, `conversation/{id}/compact`) is a model call too: the
conversation's model summarises it into a checkpoint (engine/compaction.py).

These conversation routes live here rather than in conversation.py because a
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

from typing import Annotated, Any

import msgspec

from ...actions.base import Action, Call, Context, Stream
from ...actions.fields import Body, Description, LongText, MetaDict, Name, Ref, check_json_size
from ...actions.standard import check_refs
from ...actions.stream import (
    AbortEvent,
    CompleteBeginEvent,
    CompleteEndEvent,
    ErrorEvent,
    MessageEvent,
    PingEvent,
    ReasoningTokenEvent,
    TokenEvent,
    UsageEvent,
    WaitForChannelMessageBeginEvent,
    WaitForChannelMessageEndEvent,
    one,
    result_event,
    result_line,
)
from ...engine import abilities as engine_abilities
from ...engine import compaction
from ...engine import job as engine_job
from ...engine.run import EndReason, Job, Outcome
from ...engine.run import Limits as EngineLimits
from ...errors import NotFound
from .. import bot, contact, conversation, usage
from ..common import BotConfig, ConfigBody, overlay
from ..conversation import Entity, MessageType
from .run import Run, answer, build, build_on_history, check_limits, conversation_run, user_message

COMPACT_MESSAGES = 1000  # the newest messages since the last checkpoint a compaction reads

# --- request bodies -------------------------------------------------------------


# The whole JSON Schema goes to the model: `$defs`, `additionalProperties` and the like
# (the Python SDK's agent copies pydantic's schemas, nested models included).
FunctionParameters = Annotated[
    dict[str, Any],
    msgspec.Meta(
        max_length=64,
        description='A JSON Schema of type "object": the function\'s arguments',
        extra_json_schema={
            "required": ["type"],
            "properties": {"type": {"const": "object"}, "properties": {"type": "object"}},
        },
    ),
]


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
                '(the completion ends with reason "activity")',
                extra_json_schema={
                    "anyOf": [
                        {"maxProperties": 0},
                        {"required": ["data"]},
                        {"required": ["channel"], "properties": {"channel": {"type": "string"}}},
                    ]
                },
            ),
        ]
        | None
    ) = None
    call: FunctionCallConfig | None = None

    def __post_init__(self) -> None:
        result = self.result
        if result and "data" not in result and not isinstance(result.get("channel"), str):
            raise ValueError('result: give {"data": ...} or {"channel": "..."}')
        if self.parameters.get("type") != "object" or not isinstance(self.parameters.get("properties", {}), dict):
            raise ValueError('parameters: a JSON Schema of type "object" (with "properties")')
        check_json_size(self.parameters, "parameters")

    def engine(self) -> engine_job.Function:
        schema = {"properties": {}, **self.parameters}
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

    checks = {"instruction": engine_abilities.check}


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
    """A message a client sends: its meta may be what botkit itself streamed (a context
    message's records, an activity's arguments and result), so it is bounded as a
    whole, not by the meta limits of a stored resource."""

    type: MessageType
    text: LongText
    meta: Annotated[dict[str, Any], msgspec.Meta(max_length=50)] | None = None

    def __post_init__(self) -> None:
        if self.meta is not None:
            check_json_size(self.meta, "meta")


class Attachment(Body):
    url: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


class CompleteBody(ConfigBody, kw_only=True):
    messages: Annotated[
        list[InputMessage],
        msgspec.Meta(
            max_length=1000,
            description="The conversation so far: at least one user or bot message (the one to answer)",
            extra_json_schema={
                "contains": {"type": "object", "properties": {"type": {"enum": ["user", "bot"]}}, "required": ["type"]}
            },
        ),
    ]
    bot_id: Ref | None = None
    attachments: Annotated[list[Attachment], msgspec.Meta(max_length=100)] | None = None
    contact_id: Ref | contact.ContactEnsure | None = None  # a contact's id, or one found or made by fingerprint
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


class CompactBody(ConfigBody, kw_only=True):
    """A bot configuration (its model summarises) and the messages to compact; the
    extensions are taken as a completion takes them and do not change a summary."""

    messages: Annotated[
        list[InputMessage],
        msgspec.Meta(
            max_length=1000,
            description="The messages to compact, oldest first; a checkpoint among them stands for those before it",
        ),
    ]
    bot_id: Ref | None = None
    extensions: Extensions | None = None


# --- responses ----------------------------------------------------------------


class TokenUsage(msgspec.Struct):
    token: int


class End(msgspec.Struct):
    reason: EndReason


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


class CompactResult(msgspec.Struct):
    text: str  # "" when there was nothing to compact
    usage: TokenUsage


class ConversationCompactResult(msgspec.Struct):
    id: str  # the checkpoint message's, or the conversation's when there was nothing to compact
    text: str
    usage: TokenUsage


# --- JSONL events (actions/stream.py writes them) ---------------------------------

_Events = (
    CompleteBeginEvent
    | CompleteEndEvent
    | AbortEvent
    | TokenEvent
    | ReasoningTokenEvent
    | MessageEvent
    | WaitForChannelMessageBeginEvent
    | WaitForChannelMessageEndEvent
    | UsageEvent
    | ErrorEvent
    | PingEvent
)
CompleteEvents = _Events | result_event(CompleteResult)
ConversationCompleteEvents = _Events | result_event(ConversationCompleteResult)
ReceiveEvents = _Events | result_event(ReceiveResult)
SendEvents = PingEvent | result_event(SendResult)


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

    @staticmethod
    def answer(message_id: str | None, o: Outcome) -> CompleteResult:
        return CompleteResult(text=o.text, usage=TokenUsage(o.input_tokens + o.output_tokens), end=End(o.reason))

    async def run(self, ctx: Context, call: Call) -> Any:
        # building is heavy (a share of the pool per account), and may need no database at all
        async with ctx.pool.on_demand(share=ctx.account_id) as conn:
            run, job = await self.prepare(ctx, conn, call.body)
        return await answer(ctx, call, run, job)

    @classmethod
    async def prepare(cls, ctx: Context, conn, body: CompleteBody) -> tuple[Run, Job]:
        """What the completion runs with (every check of the request made)."""
        config: BotConfig = body  # the body is a bot configuration, plus what it completes
        if body.bot_id is not None:
            under = await bot.config(conn, ctx.account_id, body.bot_id)
            if under is None:
                raise NotFound("botId: bot not found")
            config = overlay(config, under)
        await check_refs(
            conn, conversation.TABLE, ctx, {"dataset_id": body.dataset_id, "skillset_id": body.skillset_id}
        )
        await check_limits(conn, ctx, 0)
        contact_id = await contact.resolve(conn, ctx, body.contact_id) if body.contact_id is not None else None
        run = Run(config, cls.answer, bot_id=body.bot_id, contact_id=contact_id)
        job = await build(
            ctx,
            conn,
            run,
            [(m.type, m.text, m.meta) for m in body.messages],
            functions=body.functions,
            extensions=body.extensions,
            limits=body.limits,
            attachments=[a.url for a in body.attachments or () if a.url],
        )
        return run, job


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

    @staticmethod
    def answer(message_id: str | None, o: Outcome) -> ConversationCompleteResult:
        return ConversationCompleteResult(
            id=message_id or "", text=o.text, usage=TokenUsage(o.input_tokens + o.output_tokens), end=End(o.reason)
        )

    async def run(self, ctx: Context, call: Call) -> Any:
        body: ConversationCompleteBody = call.body
        async with ctx.pool.connection(share=ctx.account_id) as conn:  # building is heavy
            run = await conversation_run(conn, ctx, call.params["conversationId"], self.answer)
            # One transaction: a request refused while building (bad model, functions, a message
            # too long for the model) leaves no user message behind.
            await check_limits(conn, ctx, 2 if body.text is not None else 1)
            async with conn.transaction():
                if body.text is not None:
                    await user_message(conn, ctx, run, body.text, body.entities)
                job = await build_on_history(ctx, conn, run, body)
        return await answer(ctx, call, run, job)


class SendMessage(Action):
    tag = "Conversation"
    summary = "Add the user's message to the conversation (conversation/{id}/receive answers it)"
    body = SendBody
    response = SendResult
    events = SendEvents
    session = True
    budget = "messages"

    @staticmethod
    def answer(message_id: str | None, o: Outcome) -> None:  # send completes nothing
        return None

    async def run(self, ctx: Context, call: Call) -> Any:
        body: SendBody = call.body
        async with ctx.pool.connection(share=ctx.account_id) as conn:  # building is heavy
            run = await conversation_run(conn, ctx, call.params["conversationId"], self.answer)
            await check_limits(conn, ctx, 1)
            message_id = await user_message(conn, ctx, run, body.text, body.entities)
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

    @staticmethod
    def answer(message_id: str | None, o: Outcome) -> ReceiveResult:
        return ReceiveResult(id=message_id or "", text=o.text, usage=TokenUsage(o.input_tokens + o.output_tokens))

    async def run(self, ctx: Context, call: Call) -> Any:
        body: ReceiveBody = call.body
        async with ctx.pool.connection(share=ctx.account_id) as conn:  # building is heavy
            run = await conversation_run(conn, ctx, call.params["conversationId"], self.answer)
            await check_limits(conn, ctx, 1)
            job = await build_on_history(ctx, conn, run, body)
        return await answer(ctx, call, run, job)


class CompactConversation(Action):
    tag = "Conversation"
    summary = (
        "Summarise the given messages (from their last checkpoint) with the configuration's model, "
        "without storing anything; the text is empty when there was nothing to compact"
    )
    body = CompactBody
    response = CompactResult
    budget = "messages"

    async def run(self, ctx: Context, call: Call) -> CompactResult:
        body: CompactBody = call.body
        config: BotConfig = body
        previous: str | None = None
        messages: list[tuple[str, str]] = []
        for m in body.messages:
            if m.type == "checkpoint":
                previous, messages = m.text, []
            elif compaction.summarisable(m.type):
                messages.append((m.type, m.text))
        async with ctx.pool.connection() as conn:
            if body.bot_id is not None:
                under = await bot.config(conn, ctx.account_id, body.bot_id)
                if under is None:
                    raise NotFound("botId: bot not found")
                config = overlay(config, under)
            if not messages:
                return CompactResult(text="", usage=TokenUsage(0))
            await check_limits(conn, ctx, 0)
        info, params, requested = ctx.services.models.resolve(config.model)
        done = await compaction.compact(info, params, requested, previous, messages, ctx.services.models.timeouts)
        async with ctx.pool.connection() as conn:
            await usage.record_usage(
                conn,
                ctx.account_id,
                model=info.name,
                input_tokens=done.input_tokens,
                output_tokens=done.output_tokens,
                bot_id=body.bot_id,
            )
        return CompactResult(text=done.text, usage=TokenUsage(done.input_tokens + done.output_tokens))


class CompactInConversation(Action):
    """The messages since the last checkpoint (the newest that fit the model's window)
    summarised by the conversation's model (its own configuration over its bot's) into
    a `checkpoint` message, stored with its usage row; every completion then starts
    from it. The checkpoint's `meta.compacted.through` names the newest message it
    covers: one stored while the summary was being written is not lost behind it."""

    tag = "Conversation"
    summary = (
        "Compact the conversation into a checkpoint message that later completions start from "
        "(the id is the checkpoint's, or the conversation's when there was nothing to compact)"
    )
    response = ConversationCompactResult
    budget = "messages"

    async def run(self, ctx: Context, call: Call) -> ConversationCompactResult:
        conversation_id = call.params["conversationId"]
        async with ctx.pool.connection() as conn:
            run = await conversation_run(conn, ctx, conversation_id, lambda *_: None)  # answered here
            info, params, requested = ctx.services.models.resolve(run.config.model)
            previous = await conversation.last_checkpoint(conn, ctx.account_id, conversation_id)
            rows = await conversation.to_compact(
                conn,
                ctx.account_id,
                conversation_id,
                previous["through"] if previous else "",
                COMPACT_MESSAGES + 1,  # one more: are there older ones?
                compaction.chars_that_may_fit(info),
            )
            messages = [(r["type"], r["text"]) for r in reversed(rows) if compaction.summarisable(r["type"])]
            if not messages:
                return ConversationCompactResult(id=conversation_id, text="", usage=TokenUsage(0))
            await check_limits(conn, ctx, 1)
        # the read stopped short of the checkpoint: there are older messages it did not load
        older = len(rows) > COMPACT_MESSAGES or sum(len(r["text"]) for r in rows) >= compaction.chars_that_may_fit(info)
        previous_text = previous["text"] if previous else None
        done = await compaction.compact(
            info, params, requested, previous_text, messages, ctx.services.models.timeouts, older=older
        )
        meta = {
            "model": info.name,
            "compacted": {"through": rows[0]["id"], "messages": done.messages, "omitted": done.omitted},
            "requestId": ctx.request_id,
        }
        async with ctx.pool.connection() as conn, conn.transaction():
            message_id = await conversation.store_checkpoint(conn, ctx, conversation_id, done.text, meta)
            c = run.config
            await usage.record_usage(
                conn,
                ctx.account_id,
                model=info.name,
                input_tokens=done.input_tokens,
                output_tokens=done.output_tokens,
                conversation_id=conversation_id,
                message_id=message_id,
                bot_id=run.bot_id,
                contact_id=run.contact_id,
                task_id=run.task_id,
                dataset_id=c.dataset_id,
                skillset_id=c.skillset_id,
            )
        return ConversationCompactResult(
            id=message_id, text=done.text, usage=TokenUsage(done.input_tokens + done.output_tokens)
        )


ACTIONS: list[Action] = [
    CompactConversation("/conversation/compact"),
    CompleteConversation("/conversation/complete"),
    CompactInConversation("/conversation/{conversationId}/compact"),
    CompleteInConversation("/conversation/{conversationId}/complete"),
    SendMessage("/conversation/{conversationId}/send"),
    ReceiveMessage("/conversation/{conversationId}/receive"),
]
