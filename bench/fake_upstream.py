"""A fake OpenAI-compatible upstream for the completion-stream benchmark: a bare
asyncio HTTP server on 127.0.0.1 that answers every POST .../chat/completions with
`--tokens` SSE chunks, `--pace-ms` apart, then [DONE]. Bare (no framework) so that
reading it directly measures the network and the pace, not a web stack. Each token says
when it was sent ("t7@<CLOCK_MONOTONIC ns> ": the clock is the machine's, so a reader
on the same machine can tell its pace from the upstream's own)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import uvloop


def chunk(content: str | None, finish: str | None = None, usage: dict | None = None) -> bytes:
    body = {
        "id": "bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "bench-model",
        "choices": [
            {"index": 0, "delta": {"content": content} if content is not None else {}, "finish_reason": finish}
        ],
    }
    if usage:
        body["usage"] = usage
    data = b"data: " + json.dumps(body).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tokens: int, pace: float) -> None:
    """Keep-alive, as real providers are: one request after another on a connection."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(tokens):
                writer.write(chunk(f"t{i}@{time.perf_counter_ns()} "))
                await writer.drain()
                await asyncio.sleep(pace)
            writer.write(chunk(None, "stop", {"prompt_tokens": 10, "completion_tokens": tokens}))
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(b"data: [DONE]\n\n"), b"data: [DONE]\n\n"))
            await writer.drain()
    except (ConnectionError, RuntimeError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--pace-ms", type=float, default=2.0)
    args = parser.parse_args()
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args.tokens, args.pace_ms / 1000), "127.0.0.1", args.port, backlog=2048
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())
