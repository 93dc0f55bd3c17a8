"""Channels: an account's named mailboxes. An app publishes to one and whoever listens
gets the message: a subscriber's live stream, or a completion waiting for the result of
a client-side function (the Python SDK's agent runs its tools this way).

A channel belongs to the account that uses it: another account publishing to the same
id reaches nobody of this one. Messages are stored (store/channels.py tells every API
process), so a subscriber can replay the recent ones; a channel keeps its last
BOTKIT_CHANNEL_HISTORY_MAX messages for at most BOTKIT_CHANNEL_RETENTION_SECONDS,
and a message is at most 64 KiB as JSON.

Ids starting with "#" are botkit's own (the event log's; user ids cannot start so).
A conversation session token may use the channels named `<its conversation id>:...`,
which is how `conversation/{id}/dispatch` names the channels it answers on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import msgspec

from ..actions.base import Action, Call, Context, Stream, now_ms
from ..actions.fields import JSON_MAX_BYTES, SAFE_INTEGER, Body, IdResponse, check_json_size
from ..actions.ids import floor_id, new_id
from ..actions.stream import ErrorEvent, PingEvent, error_line
from ..errors import BadRequest
from ..store.channels import NOTICE_CHANNEL, Dropped

HISTORY_MAX = 1000
ChannelId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{16,128}(?![\s\S])")]


class PublishBody(Body):
    message: dict[str, Any]

    def __post_init__(self) -> None:
        check_json_size(self.message, "message", JSON_MAX_BYTES)


class SubscribeBody(Body):
    history_length: Annotated[
        int, msgspec.Meta(ge=0, le=SAFE_INTEGER, description=f"at most {HISTORY_MAX} are replayed")
    ] = 0


class ChannelMessageEvent(msgspec.Struct, tag_field="type", tag="message"):
    data: dict[str, Any]


SubscribeEvents = ChannelMessageEvent | PingEvent | ErrorEvent

# The messages, the prune (older than the retention, by the ids' time, so both bounds
# are ranges of the channel's index; or beyond the last $7 of the
# channel: one short walk of the channel's index) and a notice per message, at commit.
_PUBLISH = """
WITH stored AS (
    INSERT INTO channel_messages (id, account_id, channel_id, data, created_at)
    SELECT m.id, $2, $3, m.data, $4 FROM unnest($1::text[], $5::jsonb[]) AS m (id, data)
), pruned AS (
    DELETE FROM channel_messages WHERE account_id = $2 AND channel_id = $3 AND (id < $6 OR id <= (
        SELECT id FROM channel_messages WHERE account_id = $2 AND channel_id = $3 ORDER BY id DESC OFFSET $7 LIMIT 1
    ))
)
SELECT pg_notify($8, $2 || ' ' || $3 || ' ' || id) FROM unnest($1::text[]) AS id
"""

_HISTORY = """
SELECT id, data FROM (
    SELECT id, data FROM channel_messages WHERE account_id = $1 AND channel_id = $2 ORDER BY id DESC LIMIT $3
) recent ORDER BY id
"""


def _channel(call: Call) -> str:
    channel = call.params["channelId"]
    try:
        return msgspec.convert(channel, ChannelId)
    except msgspec.ValidationError:
        raise BadRequest("channelId: 16 to 128 letters, digits or _ . : -") from None


async def publish(ctx: Context, channel: str, messages: list[dict[str, Any]]) -> None:
    """Store messages on a channel of the caller's account, in order, and deliver them:
    here at once, to other processes through the notices."""
    settings = ctx.services.settings
    now = now_ms()
    ids = [new_id() for _ in messages]
    hub = ctx.services.channels
    for message_id in ids:
        hub.publishing(message_id)
    await ctx.pool.execute(
        _PUBLISH,
        ids,
        ctx.account_id,
        channel,
        now,
        messages,
        floor_id(now - int(settings.channel_retention_seconds * 1000)),
        max(settings.channel_history_max - len(messages), 0),
        NOTICE_CHANNEL,
    )
    for message_id, data in zip(ids, messages, strict=True):  # committed: here now, elsewhere by the notice
        hub.published(ctx.account_id, channel, data, message_id)


class PublishChannelMessage(Action):
    tag = "Channel"
    path_types = {"channelId": ChannelId}
    summary = "Publish a message to a channel (its subscribers and any completion waiting on it get it)"
    body = PublishBody
    response = IdResponse

    session = True  # a conversation's channels (`<conversationId>:...`)

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        channel = _channel(call)
        await publish(ctx, channel, [call.body.message])
        return IdResponse(id=channel)


class SubscribeChannelMessages(Action):
    """A long-lived JSONL stream: the last `historyLength` messages, then each new one
    as it is published; a ping line during silences; it ends when the client leaves."""

    tag = "Channel"
    path_types = {"channelId": ChannelId}
    summary = "Subscribe to a channel's messages (JSONL)"
    body = SubscribeBody
    events = SubscribeEvents
    response = ChannelMessageEvent
    session = True

    async def run(self, ctx: Context, call: Call) -> Stream:
        channel = _channel(call)
        history = min(call.body.history_length, HISTORY_MAX)
        return Stream(follow(ctx, channel, history, lambda data: msgspec.json.encode(ChannelMessageEvent(data))))


async def follow(
    ctx: Context, channel: str, history: int, encode: Callable[[Any], bytes] = msgspec.json.encode
) -> AsyncIterator[bytes]:
    """A channel of the caller's account as JSONL lines (`encode` makes each): its last
    `history` messages, then each new one; an error line when the reader fell behind."""
    async with ctx.services.channels.listen(ctx.account_id, channel) as listening:
        # listening starts before the history is read, so a message published between the
        # two comes both ways: the history's ids say which live ones were replayed already
        replayed: set[str] = set()
        if history:
            for row in await ctx.pool.fetch(_HISTORY, ctx.account_id, channel, history):
                replayed.add(row["id"])
                yield encode(row["data"]) + b"\n"
        while True:
            try:
                message_id, data = await listening.entry()
            except Dropped as exc:
                yield error_line(str(exc), "TOO_MANY_REQUESTS")
                return
            if replayed and message_id in replayed:
                replayed.discard(message_id)
                continue
            yield encode(data) + b"\n"


ACTIONS: list[Action] = [
    PublishChannelMessage("/channel/{channelId}/publish"),
    SubscribeChannelMessages("/channel/{channelId}/subscribe"),
]
