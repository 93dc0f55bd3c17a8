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

from procs import rss_kb
from targets import TARGETS as TARGETS_ALL

SAMPLES = 600  # messages per latency figure (short windows are at the mercy of the machine)
IDLE = 10_000  # idle subscribers
IDLE_ROUNDS = 3  # rounds of opening them, each between two unloaded figures
TIME_LIMIT_S = 180

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


class _Publisher:
    """A raw keep-alive HTTP/1.1 connection that publishes, as the subscribers are raw:
    what is timed is botkit's delivery, not a Python HTTP client's own overhead."""

    def __init__(self, base: str, token: str, channel: str) -> None:
        self.host, port = base.split("//")[1].split(":")
        self.port, self.token, self.channel = int(port), token, channel

    async def open(self) -> _Publisher:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def publish(self, message: dict) -> None:
        body = json.dumps({"message": message}).encode()
        self.writer.write(
            f"POST /v1/channel/{self.channel}/publish HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status = await asyncio.wait_for(self.reader.readline(), 30)
        length = 0
        while (line := await asyncio.wait_for(self.reader.readline(), 30)) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        answer = await asyncio.wait_for(self.reader.readexactly(length), 30)
        if b" 200 " not in status:
            raise RuntimeError(f"publish answered {status!r}: {answer[:200]!r}")

    def close(self) -> None:
        self.writer.close()


async def _latencies(sub_base: str, pub_base: str, token: str, channel: str, n: int) -> list[float]:
    """publish → the subscriber's line, in ms. The publish answer is read after the line
    arrived (it is sent at the same moment), so the figure is the delivery alone."""
    host, port = sub_base.split("//")[1].split(":")
    reader, writer = await _subscribe(host, int(port), token, channel)
    out = []
    pub = await _Publisher(pub_base, token, channel).open()
    try:
        await pub.publish({"warmup": True})
        await _next_message(reader)
        for i in range(n):
            t0 = time.perf_counter()
            answered = asyncio.ensure_future(pub.publish({"i": i}))
            got = await _next_message(reader)
            out.append((time.perf_counter() - t0) * 1000)
            await answered
            if got.get("i") != i:
                raise RuntimeError(f"message {i} arrived as {got}")
    finally:
        pub.close()
        writer.close()
    return out


async def _open_idle(host: str, port: int, token: str, started: float) -> list:
    idle: list = []
    for i in range(0, IDLE, 500):  # in batches, so the accept queue keeps up
        if time.monotonic() - started > TIME_LIMIT_S:
            break
        idle += await asyncio.gather(
            *(_subscribe(host, port, token, f"bench-idle-{j:012d}") for j in range(i, min(i + 500, IDLE)))
        )
    return idle


async def _run(servers: dict, token: str, pids: Callable[[], list[int]], started: float) -> dict:
    one, two = servers["botkit-1w"], servers.get("botkit-2w") or servers["botkit-1w"]
    same = await _latencies(one, one, token, "bench-channel-same-0001", SAMPLES)
    other = await _latencies(one, two, token, "bench-channel-other-001", SAMPLES)
    host, port = one.split("//")[1].split(":")
    p50 = statistics.median
    # Rounds of: without, with the idle subscribers open, without again. A round's ratio
    # compares its loaded figure with the two beside it, so the machine's drift (other work
    # on it) does not count as the subscribers'; the figure is the median round's.
    ratios, loaded_all, grown, opened = [], [], 0.0, 0
    for n in range(IDLE_ROUNDS):
        if time.monotonic() - started > TIME_LIMIT_S:
            break
        before = same if n == 0 else await _latencies(one, one, token, f"bench-channel-before-{n:03d}", SAMPLES)
        baseline = sum(rss_kb(p) for p in pids())
        idle = []
        try:
            idle = await _open_idle(host, int(port), token, started)
            grown = max(grown, (sum(rss_kb(p) for p in pids()) - baseline) / 1024)
            opened = len(idle)
            loaded = await _latencies(one, one, token, f"bench-channel-load-{n:04d}", SAMPLES)
        finally:
            for _, w in idle:
                w.close()
        await asyncio.sleep(1)  # the idle ones are gone
        after = await _latencies(one, one, token, f"bench-channel-after-{n:03d}", SAMPLES)
        loaded_all += loaded
        ratios.append(p50(loaded) / p50(before + after))
    return {
        "same_ms_p50": round(p50(same), 3),
        "other_ms_p50": round(p50(other), 3),
        "loaded_ms_p50": round(p50(loaded_all), 3),
        "idle_open": opened,
        "idle_rss_mb": round(grown, 1),
        "idle_ratio": round(p50(ratios), 2),
        "idle_ratios": [round(r, 2) for r in ratios],
    }


def measure(servers: dict, token: str, pids: Callable[[], list[int]]) -> dict:
    """`servers`: name → base URL; `pids`: the subscriber server's processes."""
    return asyncio.run(_run(servers, token, pids, time.monotonic()))
