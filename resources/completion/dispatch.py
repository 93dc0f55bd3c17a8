"""Background completions: `conversation/dispatch` and `conversation/{id}/dispatch`
take the body of complete, check it all (a 4xx now, never an error event later),
queue a job (store/queue.py) and answer `{channelId}` at once. The job runs the
completion wherever a runner takes it and publishes each event a streamed complete
would write to that channel (`channel/{channelId}/subscribe`, with historyLength to
catch up), in order: tokens in batches of up to 50 ms, everything else at once.

It survives the client (nobody needs to listen) and the process: a runner that dies
mid-completion stored nothing (the bot message, usage and the job's end are one
transaction), so the next runner runs it again from the start, and subscribers see
a second `completeBegin` of iteration 1. A given `channelId` deduplicates: the same
id again finds the first dispatch. A conversation session token dispatches on
channels named `<conversationId>:...` (the default name there), its own."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec

from ...actions.base import Action, Call, Context, Principal
from ...actions.ids import new_id
from ...actions.stream import error_line
from ...errors import ApiError, BadRequest, InternalError
from ...store import queue
from .. import channel as channels
from . import CompleteBody, CompleteConversation, CompleteInConversation, ConversationCompleteBody
from .run import build_on_history, check_limits, conversation_run, event_lines, user_message

KIND = "dispatch"
FLUSH_SECONDS = 0.05
BATCH_MAX = 100


class DispatchBody(CompleteBody, kw_only=True):
    channel_id: channels.ChannelId | None = None  # deduplicates: the same id finds the first dispatch


class ConversationDispatchBody(ConversationCompleteBody, kw_only=True):
    channel_id: channels.ChannelId | None = None


class DispatchResult(msgspec.Struct, rename="camel"):
    channel_id: str


def _payload(ctx: Context, conversation_id: str | None, body: Any) -> dict[str, Any]:
    assert ctx.principal is not None
    return {
        "conversationId": conversation_id,
        "body": msgspec.to_builtins(body),
        "tokenId": ctx.principal.token_id,
        "requestId": ctx.request_id,
    }


class DispatchConversation(Action):
    tag = "Conversation"
    summary = (
        "Complete the given messages in the background; the events go to the channel "
        "answered (`channel/{channelId}/subscribe`)"
    )
    body = DispatchBody
    response = DispatchResult
    budget = "messages"

    async def run(self, ctx: Context, call: Call) -> DispatchResult:
        body: DispatchBody = call.body
        channel = body.channel_id or f"dispatch-{new_id()}"
        async with ctx.pool.connection() as conn:
            await CompleteConversation.prepare(ctx, conn, body)
            await queue.enqueue(conn, new_id(), ctx.account_id, KIND, _payload(ctx, None, body), key=channel)
        ctx.services.jobs.kick()
        return DispatchResult(channel_id=channel)


class DispatchInConversation(Action):
    tag = "Conversation"
    summary = (
        "Add the user's `text` to the conversation and complete the answer in the background; "
        "the events go to the channel answered"
    )
    body = ConversationDispatchBody
    response = DispatchResult
    session = True
    budget = "messages"

    async def run(self, ctx: Context, call: Call) -> DispatchResult:
        body: ConversationDispatchBody = call.body
        conversation_id = call.params["conversationId"]
        channel = body.channel_id or f"{conversation_id}:{new_id()}"
        assert ctx.principal is not None
        if ctx.principal.session_routes is not None and not channel.startswith(conversation_id + ":"):
            raise BadRequest("channelId: a session token dispatches on channels named <conversationId>:...")
        async with ctx.pool.connection(share=ctx.account_id) as conn:  # building is heavy
            run = await conversation_run(conn, ctx, conversation_id, CompleteInConversation.answer)
            await check_limits(conn, ctx, 2 if body.text is not None else 1)
            # One transaction: a request refused while building leaves neither the user
            # message nor the job behind; a repeated channelId adds neither again.
            async with conn.transaction():
                payload = _payload(ctx, conversation_id, body)
                _, new = await queue.enqueue(conn, new_id(), ctx.account_id, KIND, payload, key=channel)
                if new:
                    if body.text is not None:
                        await user_message(conn, ctx, run, body.text, body.entities)
                    await build_on_history(ctx, conn, run, body)
        ctx.services.jobs.kick()
        return DispatchResult(channel_id=channel)


# --- running it ---------------------------------------------------------------------


class ChannelWriter:
    """A completion's lines as channel messages, in order: token lines wait up to
    FLUSH_SECONDS to go out together, any other line goes at once with them."""

    def __init__(self, ctx: Context, channel: str) -> None:
        self.ctx, self.channel = ctx, channel
        self.buffer: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task | None = None

    async def write(self, chunk: bytes) -> None:
        self.buffer.extend(msgspec.json.decode(line) for line in chunk.splitlines() if line)
        if len(self.buffer) >= BATCH_MAX or not chunk.startswith(b'{"type":"token"'):
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        self._timer = None
        await asyncio.shield(self.flush())  # a close() during the publish waits for it

    async def flush(self) -> None:
        async with self._lock:
            if self.buffer:
                batch, self.buffer = self.buffer, []
                await channels.publish(self.ctx, self.channel, batch)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush()


def handler(services: Any) -> queue.Handler:
    """The runner's handler of dispatch jobs, with the app's services."""

    async def run_dispatch(job: queue.Job) -> None:
        p = job.payload
        ctx = Context(Principal(job.account_id, p["tokenId"]), services.pool, p["requestId"], services)
        assert job.key is not None
        out = ChannelWriter(ctx, job.key)
        try:
            async with ctx.pool.connection() as conn:
                if p["conversationId"] is not None:
                    body = msgspec.convert(p["body"], ConversationDispatchBody)
                    run = await conversation_run(conn, ctx, p["conversationId"], CompleteInConversation.answer)
                    engine_job = await build_on_history(ctx, conn, run, body)
                else:
                    run, engine_job = await CompleteConversation.prepare(
                        ctx, conn, msgspec.convert(p["body"], DispatchBody)
                    )

            async def finishing(conn) -> None:
                if not await queue.finish(conn, job):
                    raise InternalError("the dispatch is no longer held here")  # rolls the storing back

            run.finishing = finishing
            async for chunk in event_lines(ctx, run, engine_job):
                await out.write(chunk)
        except ApiError as exc:
            await out.write(error_line(exc.message, exc.code))
            raise
        except Exception:
            await out.write(error_line("internal server error", "INTERNAL_SERVER_ERROR"))
            raise
        finally:
            with contextlib.suppress(Exception):
                await out.close()

    return run_dispatch


def give_up(services: Any) -> queue.GiveUp:
    """A dispatch whose runners kept dying: its subscribers are told, and it ends."""

    async def tell(job: queue.Job) -> None:
        ctx = Context(Principal(job.account_id, job.payload["tokenId"]), services.pool, job.id, services)
        message = f"the completion was given up after {queue.MAX_ATTEMPTS} attempts"
        assert job.key is not None
        await channels.publish(ctx, job.key, [msgspec.json.decode(error_line(message, "INTERNAL_SERVER_ERROR"))])

    return tell


ACTIONS: list[Action] = [
    DispatchConversation("/conversation/dispatch"),
    DispatchInConversation("/conversation/{conversationId}/dispatch"),
]
