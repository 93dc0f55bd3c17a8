"""The channel benchmark (issue 11): how long a published message takes to reach a
subscriber on the same API process and on another one (botkit 1 worker subscribes,
botkit 2 workers publish: other processes, one database), then the same while many idle
subscribers are open on the subscriber's process, and that process's RSS growth for
them. Bounded in count and time; the subscribers are raw asyncio connections, so the
client costs little."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable

import httpx
from procs import rss_kb
from targets import TARGETS as TARGETS_ALL

SAMPLES = 200  # messages per latency figure
IDLE = 10_000  # idle subscribers
TIME_LIMIT_S = 120

_T = {
    k: TARGETS_ALL[k]
    for k in ("channel_same_ms_p50", "channel_other_ms_p50", "channel_idle_rss_mb", "channel_idle_ratio")
}
TARGETS = (
    (
        f"channel: publish → subscriber, same process, p50 < {_T['channel_same_ms_p50']['below']:g} ms",
        "same_ms_p50",
        _T["channel_same_ms_p50"]["below"],
    ),
    (
        f"channel: publish → subscriber, another process, p50 < {_T['channel_other_ms_p50']['below']:g} ms",
        "other_ms_p50",
        _T["channel_other_ms_p50"]["below"],
    ),
    (
        f"channel: {IDLE:,} idle subscribers, RSS growth < {_T['channel_idle_rss_mb']['below']:g} MB",
        "idle_rss_mb",
        _T["channel_idle_rss_mb"]["below"],
    ),
    (
        f"channel: p50 with {IDLE:,} idle subscribers within {_T['channel_idle_ratio']['below']:g}× of without",
        "idle_ratio",
        _T["channel_idle_ratio"]["below"],
    ),
)


async def _subscribe(
    host: str, port: int, token: str, channel: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    body = b"{}"
    writer.write(
        f"POST /v1/channel/{channel}/subscribe HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Accept: application/jsonl\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 30)
    if b" 200 " not in status:
        raise RuntimeError(f"subscribe answered {status!r}")
    while (await asyncio.wait_for(reader.readline(), 30)) not in (b"\r\n", b""):
        pass  # the headers
    return reader, writer


async def _next_message(reader: asyncio.StreamReader) -> dict:
    """The next `message` line of a chunked JSONL body (chunk sizes and pings skipped)."""
    while True:
        line = await asyncio.wait_for(reader.readline(), 30)
        if line.startswith(b'{"type":"message"'):
            return json.loads(line)["data"]


async def _latencies(sub_base: str, pub_base: str, token: str, channel: str, n: int) -> list[float]:
    host, port = sub_base.split("//")[1].split(":")
    reader, writer = await _subscribe(host, int(port), token, channel)
    out = []
    async with httpx.AsyncClient(base_url=pub_base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as pub:
        await pub.post(f"/v1/channel/{channel}/publish", json={"message": {"warmup": True}})
        await _next_message(reader)
        for i in range(n):
            t0 = time.perf_counter()
            r = await pub.post(f"/v1/channel/{channel}/publish", json={"message": {"i": i}})
            if r.status_code != 200:
                raise RuntimeError(f"publish answered {r.status_code}: {r.text[:200]}")
            got = await _next_message(reader)
            out.append((time.perf_counter() - t0) * 1000)
            if got.get("i") != i:
                raise RuntimeError(f"message {i} arrived as {got}")
    writer.close()
    return out


async def _run(servers: dict, token: str, pids: Callable[[], list[int]], started: float) -> dict:
    one, two = servers["botkit-1w"], servers.get("botkit-2w") or servers["botkit-1w"]
    same = await _latencies(one, one, token, "bench-channel-same-0001", SAMPLES)
    other = await _latencies(one, two, token, "bench-channel-other-001", SAMPLES)
    host, port = one.split("//")[1].split(":")
    baseline = sum(rss_kb(p) for p in pids())
    idle = []
    try:
        for i in range(0, IDLE, 500):  # in batches, so the accept queue keeps up
            if time.monotonic() - started > TIME_LIMIT_S:
                break
            idle += await asyncio.gather(
                *(_subscribe(host, int(port), token, f"bench-idle-{j:012d}") for j in range(i, min(i + 500, IDLE)))
            )
        grown = (sum(rss_kb(p) for p in pids()) - baseline) / 1024
        loaded = await _latencies(one, one, token, "bench-channel-load-0001", SAMPLES)
    finally:
        for _, w in idle:
            w.close()
    p50 = statistics.median
    return {
        "same_ms_p50": round(p50(same), 3),
        "other_ms_p50": round(p50(other), 3),
        "loaded_ms_p50": round(p50(loaded), 3),
        "idle_open": len(idle),
        "idle_rss_mb": round(grown, 1),
        "idle_ratio": round(p50(loaded) / p50(same), 2),
    }


def measure(servers: dict, token: str, pids: Callable[[], list[int]]) -> dict:
    """`servers`: name → base URL; `pids`: the subscriber server's processes."""
    return asyncio.run(_run(servers, token, pids, time.monotonic()))
