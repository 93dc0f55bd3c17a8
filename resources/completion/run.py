"""What a completion runs with and what it leaves behind: the bot configuration and
history of a conversation, the partner limits, the context's records (the dataset's
best matches, the contact's memories, inline records), the engine job built from
them (engine/job.py), and, when it finished, its messages and usage, stored in one
transaction. A completion that fails stores none of them; one whose client left goes
on and stores them (each message names its request: `meta.requestId`)."""

from __future__ import annotations

import base64
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from ...actions.auth import enforce_limit, month_start_ms
from ...actions.base import Call, Context
from ...actions.stream import (
    finished_anyway,
    message_line,
    primed,
    reasoning_line,
    result_line,
    signal_line,
    token_line,
    usage_line,
    waiting_line,
)
from ...engine import documents, fetch, retrieval, tokens
from ...engine import job as engine_job
from ...engine.models import parse as parse_model
from ...engine.provider import Passage, Reasoning
from ...engine.run import Job, Outcome, Signal, Waiting, complete
from ...engine.run import Limits as EngineLimits
from ...engine.run import Message as EngineMessage
from ...errors import ApiError, ContentTooLarge, LimitsReached, NotFound
from .. import bot, conversation, dataset, memory, usage
from ..common import BotConfig, config_of, overlay
from ..conversation import Entity, NewMessage
from ..file import data_url
from . import abilities

if TYPE_CHECKING:
    from . import Extensions, FunctionDefinition, Limits

log = logging.getLogger("botkit")
MEMORY_SCORE = 0.5  # a contact's memories join the context as records of this score
HISTORY_DEFAULT = 100  # messages of history loaded (interactionMaxMessages overrides)


@dataclass
class Run:
    """What a completion runs with, where it is stored, and how its answer reads."""

    config: BotConfig
    answer: Callable[[str | None, Outcome], Any]  # (the stored bot message's id, the outcome) → the answer
    bot_id: str | None = None
    conversation_id: str | None = None  # None: nothing is stored but usage
    contact_id: str | None = None
    task_id: str | None = None
    # first in the transaction that stores the finished completion (a background job
    # marks itself done there, so a completion is never stored twice)
    finishing: Callable[[Any], Awaitable[None]] | None = None
    depth: int = 0  # bots calling bots: 0 for the caller's own completion


async def conversation_run(
    conn, ctx: Context, conversation_id: str, answer: Callable[[str | None, Outcome], Any]
) -> Run:
    row = await conversation.run_config(conn, ctx.account_id, conversation_id)
    if row is None:
        raise NotFound("conversation not found")
    own = config_of(row)
    under = await bot.config(conn, ctx.account_id, row["bot_id"]) if row["bot_id"] else None
    return Run(
        overlay(own, under),
        answer,
        bot_id=row["bot_id"],
        conversation_id=row["id"],
        contact_id=row["contact_id"],
        task_id=row["task_id"],
    )


async def history(conn, ctx: Context, run: Run) -> list[engine_job.InputMessage]:
    limit = HISTORY_DEFAULT
    if run.config.model:
        _, params = parse_model(run.config.model)
        if params.interaction_max_messages is not None:
            limit = params.interaction_max_messages
    assert run.conversation_id is not None
    return await conversation.history(conn, ctx.account_id, run.conversation_id, limit)


async def check_limits(conn, ctx: Context, messages: int) -> None:
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
    if run.config.dataset_id and query:
        settings, found = await dataset.search(conn, ctx, run.config.dataset_id, query)
        if settings is not None:
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


# --- attachments ---------------------------------------------------------------------

ATTACHMENT_TOKENS = 2000  # an attached document's text in the context, at most
ATTACHMENT_BYTES = 4 * 1024 * 1024  # larger attachments are named, not read
ATTACHMENT_URLS = 10


async def _read_all(chunks, limit: int) -> bytes:
    out = bytearray()
    async for chunk in chunks:
        out += chunk
        if len(out) > limit:
            raise ContentTooLarge(f"more than {limit} bytes")
    return bytes(out)


def _document_text(data: bytes, content_type: str, name: str) -> str:
    with tempfile.TemporaryDirectory(prefix="botkit-attachment-") as folder:
        path = Path(folder) / "content"
        path.write_bytes(data)
        sections = documents.extract(path, content_type, name, documents.Limits())
    return "\n\n".join(s.text for s in sections)


async def _attachment(name: str, content_type: str, data: bytes | None, size: int, vision: bool, extras) -> None:
    """One attachment into the completion: an image as an image part (for a model that
    takes them), a document as its text (bounded), anything else by name."""
    label = f"{name} ({content_type}, {size} bytes)"
    if data is not None and content_type.startswith("image/") and vision:
        extras.images.append(f"data:{content_type};base64,{base64.b64encode(data).decode()}")
        return
    text = None
    if data is not None and not content_type.startswith(("image/", "audio/", "video/")):
        try:
            text = await anyio.to_thread.run_sync(_document_text, data, content_type, name)
        except ApiError as exc:  # a document that cannot be read is named, with why
            text = f"(it could not be read: {exc.message})"
    body = f"\n{tokens.truncate(text, ATTACHMENT_TOKENS)}" if text else ""
    extras.passages.append(Passage(text=f"(attached file {label}){body}", score=1.0, meta={"attachment": name}))


async def _attachments(ctx: Context, conn, run: Run, urls: list[str], vision: bool, extras) -> None:
    if run.conversation_id is not None:
        for row in await conversation.attachments_of(conn, ctx.account_id, run.conversation_id):
            data = None
            if row["size"] is not None and row["size"] <= ATTACHMENT_BYTES:
                data = await _read_all(ctx.services.storage.read(row["storage_key"]), ATTACHMENT_BYTES)
            name = row["name"] or row["id"]
            await _attachment(name, row["type"] or "application/octet-stream", data, row["size"] or 0, vision, extras)
    for url in urls[:ATTACHMENT_URLS]:  # fetched as file uploads are (private addresses refused)
        if url.startswith("data:"):
            content_type, data = data_url(url)
            if len(data) > ATTACHMENT_BYTES:
                raise ContentTooLarge(f"an attachment is larger than {ATTACHMENT_BYTES} bytes")
            await _attachment("attachment", content_type, data, len(data), vision, extras)
            continue
        async with fetch.fetch(url, ctx.services.fetch_policy, max_bytes=ATTACHMENT_BYTES) as response:
            data = await _read_all(response.chunks(), ATTACHMENT_BYTES)
            name = response.filename or url.rsplit("/", 1)[-1][:100] or "attachment"
            await _attachment(
                name, response.content_type or "application/octet-stream", data, len(data), vision, extras
            )


async def build(
    ctx: Context,
    conn,
    run: Run,
    messages: list[engine_job.InputMessage],
    *,
    functions: list[FunctionDefinition] | None,
    extensions: Extensions | None,
    limits: Limits | None,
    attachments: list[str] | None = None,
) -> Job:
    draft = engine_job.draft(ctx.services.models, run.config.model, messages)
    extras = engine_job.Extras(
        backstory=extensions.backstory if extensions else None,
        functions=[f.engine() for f in functions or ()],
        limits=limits.engine() if limits is not None else EngineLimits(),
    )
    if run.config.skillset_id:
        extras.abilities += await abilities.of_skillset(ctx, conn, run, run.config.skillset_id)
    for inline in extensions.skillsets if extensions and extensions.skillsets else ():
        extras.abilities += [
            abilities.engine_ability(
                ctx,
                a.name,
                a.description,
                a.instruction,
                secret_id=a.secret_id,
                bot_id=None,
                contact_id=run.contact_id,
                depth=run.depth,
            )
            for a in inline.abilities
        ]
    await _passages(conn, ctx, run, draft.query, extensions, extras)
    await _attachments(ctx, conn, run, attachments or [], draft.model.vision, extras)
    job = engine_job.build(draft, run.config.backstory, extras)
    job.channels = AccountChannels(ctx.services.channels, ctx.account_id)
    job.channel_wait = ctx.services.settings.channel_wait_seconds
    return job


async def build_on_history(ctx: Context, conn, run: Run, body: Any) -> Job:
    """The job answering the conversation so far, with the request's functions,
    extensions and limits (complete, receive and both sides of dispatch)."""
    return await build(
        ctx,
        conn,
        run,
        await history(conn, ctx, run),
        functions=body.functions,
        extensions=body.extensions,
        limits=body.limits,
    )


class AccountChannels:
    """The engine's view of the channels: this account's only."""

    def __init__(self, hub, account_id: str) -> None:
        self.hub, self.account_id = hub, account_id

    def listen(self, channel: str):
        return self.hub.listen(self.account_id, channel)


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
        if run.finishing is not None:  # first: what it writes comes before the answer
            await run.finishing(conn)
        message_id = None
        if run.conversation_id is not None:
            # each message says which request made it: a client that lost the stream
            # finds them by its X-Request-Id (message/list?meta[requestId]=...)
            request = {"requestId": ctx.request_id}
            rows = [NewMessage("activity", m.text, _storable(m.meta or {}) | request) for m in outcome.messages]
            if outcome.text or not rows:
                ended = {"model": outcome.model, "end": {"reason": outcome.reason}}
                rows.append(NewMessage("bot", outcome.text, ended | request))
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
        meta = {
            "model": outcome.model,
            "inputTokens": outcome.input_tokens,
            "outputTokens": outcome.output_tokens,
            "reason": outcome.reason,
        }
        if message_id is not None:
            meta["messageId"] = message_id
        await ctx.services.events.record(conn, ctx.account_id, "completion.finish", meta=meta, refs=_refs(run))
        return message_id


def _refs(run: Run) -> dict[str, str | None]:
    c = run.config
    return {
        "conversation_id": run.conversation_id,
        "bot_id": run.bot_id,
        "contact_id": run.contact_id,
        "task_id": run.task_id,
        "dataset_id": c.dataset_id,
        "skillset_id": c.skillset_id,
    }


async def _events(ctx: Context, run: Run, job: Job) -> AsyncIterator[Any]:
    """The engine's events; a completion that fails is recorded (`completion.fail`)."""
    try:
        async for event in complete(job):
            yield event
    except Exception as exc:
        code = getattr(exc, "code", type(exc).__name__)
        try:
            async with ctx.pool.connection() as conn:
                meta = {"model": job.requested, "code": code, "error": str(exc)[:500]}
                await ctx.services.events.record(conn, ctx.account_id, "completion.fail", meta=meta, refs=_refs(run))
        except Exception as again:  # the failure itself stands; the audit line is lost, and said so
            log.warning("event log: recording a failed completion failed: %s", again)
        raise


async def collect(ctx: Context, run: Run, job: Job) -> Any:
    outcome = None
    async for event in _events(ctx, run, job):
        if isinstance(event, Outcome):
            outcome = event
    assert outcome is not None
    return run.answer(await _store(ctx, run, outcome), outcome)


async def event_lines(ctx: Context, run: Run, job: Job) -> AsyncIterator[bytes]:
    async for event in _events(ctx, run, job):
        if type(event) is str:
            yield token_line(event)
        elif type(event) is Reasoning:
            yield reasoning_line(event.text)
        elif isinstance(event, EngineMessage):
            yield message_line(event.type, event.text, event.meta)
        elif isinstance(event, Signal):
            yield signal_line(event.type, event.data)
        elif isinstance(event, Waiting):
            yield waiting_line(event.begin, event.channel, event.name, event.args)
        elif isinstance(event, Outcome):
            message_id = await _store(ctx, run, event)
            yield (
                usage_line(event.model, event.input_tokens, event.output_tokens)
                + result_line(run.answer(message_id, event))
            )


async def answer(ctx: Context, call: Call, run: Run, job: Job) -> Any:
    if call.jsonl:
        lines = event_lines(ctx, run, job)
        if run.conversation_id is not None:  # stored: finished even if the client leaves
            lines = finished_anyway(lines, ctx.services.finishing)
        return await primed(lines)
    return await collect(ctx, run, job)


async def user_message(conn, ctx: Context, run: Run, text: str, entities: list[Entity] | None) -> str:
    assert run.conversation_id is not None
    ids = await conversation.insert_messages(
        conn, ctx.account_id, run.conversation_id, [NewMessage("user", text, {"requestId": ctx.request_id}, entities)]
    )
    return ids[0]
