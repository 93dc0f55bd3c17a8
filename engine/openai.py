"""Any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, llama.cpp
server, LM Studio, ...), streamed over aiohttp (engine/http.py).

Every call has a connect and a read timeout (the read timeout bounds the wait for
each chunk, not the whole answer). Connect errors, 5xx answers and a stream that
breaks before its first chunk are retried (BOTKIT_MODEL_RETRIES times, with a short
backoff); after the first token nothing is retried. 429 → MODEL_TOO_MANY_REQUESTS,
other failures → MODEL_* errors (errors.py). The response is closed in a
`finally`, so cancelling the iterator (a client that went away) closes the upstream
connection at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec

from ..errors import ModelBadRequest, ModelError, ModelTimeout, ModelTooManyRequests, ModelUnavailable
from . import http
from .provider import Finish, ModelRequest, Reasoning, Timeouts, ToolCall

log = logging.getLogger("botkit.engine")
DRAIN_SECONDS = 0.5  # reading the rest of a response after [DONE], at most
DRAIN_CHARS = 65536


class _Fn(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolDelta(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: _Fn | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None  # DeepSeek, vLLM reasoning parsers, ...
    tool_calls: list[_ToolDelta] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


def request_body(req: ModelRequest) -> dict[str, Any]:
    p = req.params
    body: dict[str, Any] = {
        "model": req.model.upstream,
        "messages": req.messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": req.max_tokens,
    }
    if p.temperature is not None:
        body["temperature"] = p.temperature
    if p.frequency_penalty is not None:
        body["frequency_penalty"] = p.frequency_penalty
    if p.presence_penalty is not None:
        body["presence_penalty"] = p.presence_penalty
    if p.seed is not None:
        body["seed"] = p.seed
    if req.tools:
        body["tools"] = req.tools
    return body


def _upstream_message(raw: bytes) -> str:
    try:
        data = msgspec.json.decode(raw)
        err = data.get("error") if isinstance(data, dict) else None
        msg = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else None
        if isinstance(msg, str) and msg:
            return msg[:300]
    except Exception:
        pass
    return raw[:200].decode("utf-8", "replace") or "no detail"


async def stream(req: ModelRequest, bounds: Timeouts) -> AsyncIterator[str | Reasoning | Finish]:
    info = req.model
    url = f"{info.base_url}/chat/completions"
    headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
    if info.api_key:
        headers["Authorization"] = f"Bearer {info.api_key}"
    content = msgspec.json.encode(request_body(req))
    timeout = http.timeout(bounds)
    session = http.session()
    attempt = 0
    while True:
        attempt += 1
        last = attempt > bounds.retries
        started = False
        response: aiohttp.ClientResponse | None = None
        try:
            try:
                response = await session.post(url, data=content, headers=headers, timeout=timeout)
            except http.CONNECT_ERRORS as exc:
                if last:
                    raise ModelUnavailable(f"the model provider cannot be reached ({type(exc).__name__})") from None
                log.warning("model %s: %s, retrying", info.name, type(exc).__name__)
                await asyncio.sleep(0.1 * 2 ** (attempt - 1))
                continue
            status = response.status
            if status >= 500:
                if last:
                    detail = _upstream_message(await _read_some(response))
                    raise ModelUnavailable(f"the model provider failed ({status}): {detail}")
                log.warning("model %s: upstream %s, retrying", info.name, status)
                response.close()
                await asyncio.sleep(0.1 * 2 ** (attempt - 1))
                continue
            if status >= 400:
                raise _refused(status, _upstream_message(await _read_some(response)))
            async for item in _events(response, info.name):
                started = True
                yield item
            return
        except aiohttp.SocketTimeoutError:
            raise ModelTimeout(f"the model did not answer within {bounds.read:g} s") from None
        except http.BROKEN_ERRORS as exc:
            if started or last:
                raise ModelError(f"the model stream broke off ({type(exc).__name__})") from None
            log.warning("model %s: %s before the first chunk, retrying", info.name, type(exc).__name__)
            await asyncio.sleep(0.1 * 2 ** (attempt - 1))
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a line past READ_BUFFER
            raise ModelError(f"the model request failed ({type(exc).__name__})") from None
        finally:
            if response is not None:
                # At once, even under cancellation (the client went away): a response read to
                # its end has given its connection back already; any other takes it along.
                response.close()


def _refused(status: int, detail: str) -> Exception:
    """A 4xx answer as the MODEL_* error it is (nothing is retried)."""
    if status == 429:
        return ModelTooManyRequests(f"the model provider is rate limiting: {detail}")
    if status in (400, 404, 413, 422):
        return ModelBadRequest(f"the model provider refused the request ({status}): {detail}")
    return ModelError(f"the model provider answered {status}: {detail}")


async def _read_some(response: aiohttp.ClientResponse, limit: int = 4096) -> bytes:
    return await response.content.read(limit)


def _chunk(data: bytes) -> _Chunk:
    try:
        chunk = _decode_chunk(data)
    except msgspec.DecodeError:
        raise ModelError(f"the model sent a chunk that is not a completion chunk: {data[:120]!r}") from None
    if chunk.error is not None:
        raise ModelError(f"the model failed mid-stream: {_upstream_message(data)}")
    return chunk


def _add_tool_deltas(calls: dict[int, list[str]], deltas: list[_ToolDelta]) -> None:
    """Tool calls stream in pieces: index → [id, name, arguments] so far."""
    for tc in deltas:
        slot = calls.setdefault(tc.index, ["", "", ""])
        if tc.id:
            slot[0] = tc.id
        if tc.function is not None:
            slot[1] += tc.function.name or ""
            slot[2] += tc.function.arguments or ""


async def _events(response: aiohttp.ClientResponse, name: str) -> AsyncIterator[str | Reasoning | Finish]:
    calls: dict[int, list[str]] = {}
    finish: str | None = None
    usage: _Usage | None = None
    lines = response.content
    async for line in lines:
        if not line.startswith(b"data:"):
            continue  # blank separators, comments, event: lines
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        chunk = _chunk(data)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices or ():
            delta = choice.delta
            if delta is not None:
                if delta.reasoning_content:
                    yield Reasoning(delta.reasoning_content)
                if delta.content:
                    yield delta.content
                _add_tool_deltas(calls, delta.tool_calls or [])
            if choice.finish_reason:
                finish = choice.finish_reason
    if finish is None:
        raise ModelError("the model stream ended before the model finished")
    tool_calls = [
        ToolCall(id=c[0] or f"call_{i}", name=c[1], arguments=c[2] or "{}") for i, c in sorted(calls.items()) if c[1]
    ]
    reason = "tool_calls" if tool_calls else ("length" if finish == "length" else "stop")
    yield Finish(
        reason=reason,
        tool_calls=tool_calls,
        input_tokens=usage.prompt_tokens if usage else None,
        output_tokens=usage.completion_tokens if usage else None,
    )
    # What follows [DONE] (the end of the chunked body) is read too: a response closed
    # before its end takes its connection with it, and the next completion would pay a
    # new connection (and TLS handshake) before its first token. Bounded: a server that
    # keeps the body open after [DONE] costs DRAIN_SECONDS, then the connection is dropped.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(DRAIN_SECONDS):
            drained = 0
            async for line in lines:
                drained += len(line)
                if drained > DRAIN_CHARS:
                    break
