"""A message's speech (`conversation/{id}/message/{id}/synthesize`): its text spoken by
the speech model of an OpenAI-compatible `/audio/speech` endpoint (BOTKIT_SPEECH_MODEL;
the built-in responder has no voice, so without one this is a 400 that says so). The
audio becomes a file of the account (streamed into the file store, bounded by
BOTKIT_FILE_MAX_BYTES), and the message's `meta.audio` names it: `{"fileId", "type"}`;
the file's content is what `file/{fileId}/download` serves. Synthesizing again makes a
new file and names that one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from ...actions.base import Action, Call, Context, now_ms
from ...actions.fields import Body, IdResponse
from ...actions.ids import new_id
from ...engine import http
from ...engine.provider import Timeouts
from ...errors import BadRequest, ModelError, ModelUnavailable, NotFound
from .. import file

AUDIO_TYPE = "audio/mpeg"
TEXT_MAX = 4096  # characters the speech endpoints take (OpenAI's limit)


async def _spoken(settings, text: str) -> AsyncIterator[bytes]:
    base = (settings.speech_base_url or settings.model_base_url or "").rstrip("/")
    key = settings.speech_api_key or settings.model_api_key
    headers = {"authorization": f"Bearer {key}"} if key else {}
    body = {
        "model": settings.speech_model,
        "input": text[:TEXT_MAX],
        "voice": settings.speech_voice,
        "response_format": "mp3",
    }
    t = Timeouts(connect=settings.model_connect_timeout, read=settings.model_read_timeout)
    try:
        async with http.session().post(
            base + "/audio/speech", json=body, headers=headers, timeout=http.timeout(t)
        ) as answer:
            if answer.status >= 500:
                raise ModelUnavailable(f"the speech model answered {answer.status}")
            if answer.status != 200:
                raise ModelError(f"the speech model answered {answer.status}")
            async for chunk in answer.content.iter_chunked(65536):
                yield chunk
    except aiohttp.ClientError as exc:
        raise ModelUnavailable(f"the speech model is unreachable: {type(exc).__name__}") from None


class SynthesizeMessage(Action):
    tag = "Conversation"
    summary = (
        "Speak a message's text with the configured speech model (BOTKIT_SPEECH_MODEL); the audio is a file "
        "that the message's meta.audio.fileId names"
    )
    body = Body
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        settings = ctx.services.settings
        conversation_id, message_id = call.params["conversationId"], call.params["messageId"]
        text = await ctx.pool.fetchval(
            "SELECT text FROM messages WHERE id = $1 AND conversation_id = $2 AND account_id = $3",
            message_id,
            conversation_id,
            ctx.account_id,
        )
        if text is None:
            raise NotFound("message not found")
        if not settings.speech_model:
            raise BadRequest("no speech model is configured (BOTKIT_SPEECH_MODEL): the built-in responder has no voice")
        if not text.strip():
            raise BadRequest("the message has no text to speak")
        if not (settings.speech_base_url or settings.model_base_url):
            raise BadRequest("no speech endpoint is configured (BOTKIT_SPEECH_BASE_URL or BOTKIT_MODEL_BASE_URL)")
        file_id, now = new_id(), now_ms()
        meta = {"conversationId": conversation_id, "messageId": message_id}
        async with ctx.pool.connection() as conn, conn.transaction():
            await file.insert_row(conn, ctx, file_id, f"message-{message_id}.mp3", meta, now, AUDIO_TYPE)
        try:
            await file.store(ctx, file_id, _spoken(settings, text), AUDIO_TYPE, sync=False)
        except BaseException:
            await file.delete_file(ctx, file_id)
            raise
        named = await ctx.pool.fetchval(
            "UPDATE messages SET meta = jsonb_set(meta, '{audio}', $4::jsonb), updated_at = $5 "
            "WHERE id = $1 AND conversation_id = $2 AND account_id = $3 RETURNING id",
            message_id,
            conversation_id,
            ctx.account_id,
            {"fileId": file_id, "type": AUDIO_TYPE},
            now_ms(),
        )
        if named is None:  # the message went while it was spoken: so does its speech
            await file.delete_file(ctx, file_id)
            raise NotFound("message not found")
        return IdResponse(id=message_id)


ACTIONS: list[Action] = [SynthesizeMessage("/conversation/{conversationId}/message/{messageId}/synthesize")]
