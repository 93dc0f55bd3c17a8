"""JSONL streams, written in one place: the `item` lines of lists and the events of
completions (`token`, `reasoningToken`, `message`, `usage`, `error`, `result`), and
the `end` line a list stream closes with when the client asks for it.

The structs document the lines in the spec (an action's `item` and `events`); the
hot lines (items, tokens) are written by hand and are byte for byte what the
structs encode to (a test holds them to it). `primed` makes an answer wait for
its first line, so a failure before it is an HTTP error, not an error line."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec

from .base import Stream

_ENCODE = msgspec.json.encode
log = logging.getLogger("botkit")


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


class WaitingFunction(msgspec.Struct):
    name: str
    args: Any


class WaitingData(msgspec.Struct):
    channel: str
    function: WaitingFunction


class WaitForChannelMessageBeginEvent(msgspec.Struct, tag_field="type", tag="waitForChannelMessageBegin"):
    """The model called a client function whose result is to be published to `channel`
    (`channel/{channelId}/publish` with `{"message": {"data": ...}}` or `{"error": ...}`)."""

    data: WaitingData


class WaitForChannelMessageEndEvent(msgspec.Struct, tag_field="type", tag="waitForChannelMessageEnd"):
    """The result arrived (or the wait timed out); the completion goes on."""

    data: WaitingData


def waiting_line(begin: bool, channel: str, name: str, args: Any) -> bytes:
    kind = WaitForChannelMessageBeginEvent if begin else WaitForChannelMessageEndEvent
    return _ENCODE(kind(WaitingData(channel, WaitingFunction(name, args)))) + b"\n"


class CompleteBeginEvent(msgspec.Struct, tag_field="type", tag="completeBegin"):
    """A model call of the completion begins (`iteration`: 1, 2, ... with tool calls
    and continuations); it is written with that call's first output."""

    data: dict[str, Any]


class CompleteEndEvent(msgspec.Struct, tag_field="type", tag="completeEnd"):
    """That model call ended (`reason`: stop, tool_calls or length)."""

    data: dict[str, Any]


class AbortData(msgspec.Struct, rename="camel", omit_defaults=True):
    reason: Any = None
    function_name: str | None = None


class AbortEvent(msgspec.Struct, tag_field="type", tag="abort"):
    """The completion stopped short: the model called `functionName` beyond `limits.calls`."""

    data: AbortData


def signal_line(type_: str, data: dict[str, Any]) -> bytes:
    return b'{"type":"' + type_.encode() + b'","data":' + _ENCODE(data) + b"}\n"


class PingEvent(msgspec.Struct, tag_field="type", tag="ping"):
    """A keep-alive line during a long silence (the transport sends it; ignore it)."""


PING_LINE = msgspec.json.encode(PingEvent()) + b"\n"


class EndData(msgspec.Struct):
    count: int


class EndEvent(msgspec.Struct, tag_field="type", tag="end"):
    """The list's last line, with `Accept: application/jsonl; end=true`: the stream is
    complete, `count` items long (a stream cut short has no such line)."""

    data: EndData


def end_line(count: int) -> bytes:
    return b'{"type":"end","data":{"count":%d}}\n' % count


def result_event(result: type) -> type:
    """The final `result` line of a stream whose answer is `result`."""
    return msgspec.defstruct(f"{result.__name__}Event", [("data", result)], tag_field="type", tag="result")


def item_lines(items: Iterable[Any]) -> bytes:
    return b"".join(b'{"type":"item","data":' + _ENCODE(i) + b"}\n" for i in items)


CSV = b"text/csv; charset=utf-8"


class CsvStream(Stream):
    """An export's answer as CSV (`Accept: text/csv`): chunks of whole rows. A CSV has
    no error line: a failure after the first byte cuts the answer short (an unfinished
    chunked body, which HTTP clients report)."""

    __slots__ = ()
    content_type = CSV


def asks_csv(accept: bytes) -> bool:
    """`Accept: text/csv` (among others: an export asked for CSV answers CSV)."""
    return any(media.split(b";")[0].strip() == b"text/csv" for media in accept.lower().split(b","))


def csv_columns(item: type) -> list[str]:
    """The CSV header of an item struct: its wire names, in its order."""
    return [f.encode_name for f in msgspec.structs.fields(item)]


def _cell(value: Any) -> str:
    """One CSV cell: text as it is, null or absent empty, the rest (numbers, booleans,
    meta, lists) as compact JSON."""
    if value is None or value is msgspec.UNSET:
        return ""
    if type(value) is str:
        return value
    return _ENCODE(value).decode()


def csv_rows(items: Iterable[Any], header: list[str] | None = None) -> bytes:
    """RFC 4180 rows (CRLF, quoted where needed) of structs, after `header` if given."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if header is not None:
        writer.writerow(header)
    writer.writerows([_cell(v) for v in msgspec.structs.astuple(i)] for i in items)
    return buffer.getvalue().encode()


def token_line(token: str) -> bytes:
    return b'{"type":"token","data":{"token":' + _ENCODE(token) + b"}}\n"


def reasoning_line(token: str) -> bytes:
    return b'{"type":"reasoningToken","data":{"token":' + _ENCODE(token) + b"}}\n"


def message_line(type_: str, text: str, meta: dict | None) -> bytes:
    return _ENCODE(MessageEvent(MessageData(type_, text, meta))) + b"\n"


def usage_line(model: str, input_tokens: int, output_tokens: int) -> bytes:
    return _ENCODE(UsageEvent(UsageData(model, input_tokens, output_tokens))) + b"\n"


def result_line(result: Any) -> bytes:
    return b'{"type":"result","data":' + _ENCODE(result) + b"}\n"


def error_line(message: str, code: str, request_id: str | None = None) -> bytes:
    data: dict[str, str] = {"message": message, "code": code}
    if request_id is not None:
        data["requestId"] = request_id
    return _ENCODE({"type": "error", "data": data}) + b"\n"


async def one(line: bytes) -> AsyncIterator[bytes]:
    yield line


async def primed(lines: AsyncIterator[bytes]) -> Stream:
    """Wait for the first line before answering 200, so that a failure before it
    (a model's 429, an unreachable provider) is an HTTP error, not an error line.
    Each later failure is an error line (transport writes it)."""
    try:
        first = await lines.__anext__()
    except StopAsyncIteration:
        first = b""
    except BaseException:
        await lines.aclose()  # type: ignore[attr-defined]
        raise

    async def chain() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for line in lines:
                yield line
        finally:
            await lines.aclose()  # type: ignore[attr-defined]

    return Stream(chain())


_DONE = object()


def finished_anyway(lines: AsyncIterator[bytes], running: set[asyncio.Task]) -> AsyncIterator[bytes]:
    """`lines`, made by a task of their own that goes on to the end when the reader
    leaves: a stored completion is finished and stored even when its client lost the
    stream, so that the client finds the answer afterwards. The task is in `running`
    until it ends (the app waits for those at shutdown)."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=16)
    reading = True

    async def make() -> None:
        end: Any = _DONE
        try:
            async for line in lines:
                if reading:
                    await queue.put(line)
        except Exception as exc:
            end = exc
            if not reading:  # nobody reads the error line: the log says it
                log.warning("a completion whose client left failed: %s", exc)
        if reading:
            await queue.put(end)

    task = asyncio.get_running_loop().create_task(make())
    running.add(task)
    task.add_done_callback(running.discard)

    async def read() -> AsyncIterator[bytes]:
        nonlocal reading
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reading = False
            while not queue.empty():  # a maker waiting to put goes on
                queue.get_nowait()

    return read()
