"""The completion-stream benchmark (issue 5): what botkit adds on top of the model.

A bare fake upstream (bench/fake_upstream.py) streams N tokens at a fixed pace. The
same stream is read directly from it and through botkit's `conversation/complete`
(JSONL), one at a time, alternating, a bounded number of times: the added
time-to-first-token and the added gap between tokens are the differences of the
p50s. Then many streams are opened through botkit at once (against a slow
upstream, so they really are open together) while the server's RSS is sampled."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from procs import free_port, rss_kb, stop_group
from targets import TARGETS as TARGETS_ALL

ROOT = Path(__file__).resolve().parent.parent
BOTKIT = ROOT / ".venv" / "bin" / "botkit"

# (text, key of measure()'s result, the bound it must stay below), from bench/targets.py
TARGETS = tuple(
    (text.format(TARGETS_ALL[key]["below"]), key, TARGETS_ALL[key]["below"])
    for text, key in (
        ("completion stream: added time-to-first-token p50 < {:g} ms", "ttft_added_ms_p50"),
        ("completion stream: added per-token latency p50 < {:g} µs", "token_added_us_p50"),
    )
)

FAST_TOKENS, FAST_PACE_MS = 100, 2.0  # the sequential streams
SLOW_TOKENS, SLOW_PACE_MS = 20, 200.0  # 4 s each: the concurrent streams overlap
SEQUENTIAL = 30  # streams each way
CONCURRENT = 1000
TIME_LIMIT_S = 90  # the whole benchmark, at most


class _Proc:
    def __init__(self, cmd: list[str], env: dict | None = None, log: Path | None = None) -> None:
        self.log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115  (the log lives as long as the process)
        self.proc = subprocess.Popen(
            cmd,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        stop_group(self.proc)
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def _wait_port(port: int, proc: _Proc, path: str | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.proc.args[0]} exited ({proc.proc.returncode})")
        try:
            if path is None:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} in {timeout:.0f} s")


def _direct(client: httpx.Client, url: str) -> tuple[float, list[float]]:
    """(time to the first token in ms, gaps between tokens in µs), read from the upstream."""
    body = {"model": "bench-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    t0 = time.perf_counter()
    first, last, gaps = None, None, []
    with client.stream("POST", url, json=body) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            if '"content"' not in line:
                continue
            now = time.perf_counter()
            if first is None:
                first = now
            else:
                gaps.append((now - last) * 1e6)
            last = now
    return (first - t0) * 1000, gaps


def _botkit(client: httpx.Client, url: str, token: str, model: str) -> tuple[float, list[float], int]:
    body = {"model": model, "messages": [{"type": "user", "text": "hi"}]}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/jsonl"}
    t0 = time.perf_counter()
    first, last, gaps, n = None, None, [], 0
    with client.stream("POST", url, json=body, headers=headers) as r:
        if r.status_code != 200:
            raise RuntimeError(f"conversation/complete answered {r.status_code}: {r.read()[:300]!r}")
        for line in r.iter_lines():
            if not line.startswith('{"type":"token"'):
                continue
            now = time.perf_counter()
            n += 1
            if first is None:
                first = now
            else:
                gaps.append((now - last) * 1e6)
            last = now
    return (first - t0) * 1000, gaps, n


async def _concurrent(url: str, token: str, streams: int, rss: callable, deadline: float) -> dict:
    body = {"model": "bench-slow", "messages": [{"type": "user", "text": "hi"}]}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/jsonl"}
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=0)
    opened = finished = 0
    peak_open = 0
    errors: list[str] = []
    base_rss = rss()
    peak_rss = base_rss

    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60, connect=30)) as client:

        async def one() -> None:
            nonlocal opened, finished, peak_open
            try:
                async with client.stream("POST", url, json=body, headers=headers) as r:
                    if r.status_code != 200:
                        errors.append(str(r.status_code))
                        return
                    opened += 1
                    peak_open = max(peak_open, opened - finished)
                    async for line in r.aiter_lines():
                        if line.startswith('{"type":"result"'):
                            finished += 1
            except Exception as exc:  # counted, reported
                errors.append(type(exc).__name__)

        async def sample() -> None:
            nonlocal peak_rss
            while True:
                peak_rss = max(peak_rss, rss())
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        tasks = [asyncio.create_task(one()) for _ in range(streams)]
        await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic()))
        for t in tasks:
            t.cancel()
        sampler.cancel()
    return {
        "streams": streams,
        "opened": opened,
        "finished": finished,
        "peak_open": peak_open,
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "rss_base_mb": base_rss / 1024,
        "rss_peak_mb": peak_rss / 1024,
        "rss_growth_mb": (peak_rss - base_rss) / 1024,
    }


def measure(
    servers: dict | None = None, token: str | None = None, dsn: str | None = None, work: Path | None = None, **_: object
) -> dict | None:
    """Start the upstreams and a botkit configured to use them, measure, stop them all."""
    if not dsn or not token:
        return None
    work = work or ROOT / ".data" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    fast_port, slow_port, api_port = free_port(), free_port(), free_port()
    procs: list[_Proc] = []
    try:
        fast = _Proc(
            [
                sys.executable,
                str(ROOT / "bench" / "fake_upstream.py"),
                "--port",
                str(fast_port),
                "--tokens",
                str(FAST_TOKENS),
                "--pace-ms",
                str(FAST_PACE_MS),
            ]
        )
        procs.append(fast)
        slow = _Proc(
            [
                sys.executable,
                str(ROOT / "bench" / "fake_upstream.py"),
                "--port",
                str(slow_port),
                "--tokens",
                str(SLOW_TOKENS),
                "--pace-ms",
                str(SLOW_PACE_MS),
            ]
        )
        procs.append(slow)
        _wait_port(fast_port, fast)
        _wait_port(slow_port, slow)
        models = [
            {"name": "bench-model", "baseUrl": f"http://127.0.0.1:{fast_port}", "maxTokens": 8192},
            {"name": "bench-slow", "baseUrl": f"http://127.0.0.1:{slow_port}", "maxTokens": 8192},
        ]
        api = _Proc(
            [str(BOTKIT), "serve"],
            env={
                "DATABASE_URL": dsn,
                "PORT": str(api_port),
                "HOST": "127.0.0.1",
                "WORKERS": "1",
                "BOTKIT_DATA_DIR": str(work / "engine-data"),
                "BOTKIT_MODELS": json.dumps(models),
                "BOTKIT_POOL_SIZE": "20",
                "BOTKIT_RATE_LIMIT": "0",
                "BOTKIT_RATE_LIMIT_ACCOUNT": "0",
                "BOTKIT_RATE_LIMIT_MESSAGES": "0",
                "BOTKIT_RATE_LIMIT_HISTORY": "0",
                "BOTKIT_LOG_LEVEL": "warning",
            },
            log=work / "engine-botkit.log",
        )
        procs.append(api)
        _wait_port(api_port, api, "/healthz")
        complete = f"http://127.0.0.1:{api_port}/v1/conversation/complete"
        upstream = f"http://127.0.0.1:{fast_port}/chat/completions"

        direct_ttft, direct_gaps, botkit_ttft, botkit_gaps = [], [], [], []
        tokens_seen = []
        with httpx.Client(timeout=30) as client:
            _botkit(client, complete, token, "bench-model")  # warm-up
            _direct(client, upstream)
            for _ in range(SEQUENTIAL):
                if time.monotonic() - started > TIME_LIMIT_S / 2:
                    break
                t, g = _direct(client, upstream)
                direct_ttft.append(t)
                direct_gaps.extend(g)
                t, g, n = _botkit(client, complete, token, "bench-model")
                botkit_ttft.append(t)
                botkit_gaps.extend(g)
                tokens_seen.append(n)
        pid = api.proc.pid
        concurrent = asyncio.run(_concurrent(complete, token, CONCURRENT, lambda: rss_kb(pid), started + TIME_LIMIT_S))
        p50 = statistics.median
        return {
            "upstream": f"{FAST_TOKENS} tokens, {FAST_PACE_MS:g} ms apart (bare asyncio SSE server, keep-alive)",
            "streams_each_way": len(direct_ttft),
            "tokens_per_stream": min(tokens_seen) if tokens_seen else 0,
            "direct_ttft_ms_p50": p50(direct_ttft),
            "botkit_ttft_ms_p50": p50(botkit_ttft),
            "direct_gap_us_p50": p50(direct_gaps),
            "botkit_gap_us_p50": p50(botkit_gaps),
            "ttft_added_ms_p50": p50(botkit_ttft) - p50(direct_ttft),
            "token_added_us_p50": p50(botkit_gaps) - p50(direct_gaps),
            "concurrent": concurrent,
            "concurrent_streams": concurrent["peak_open"],
            "concurrent_rss_mb": concurrent["rss_peak_mb"],
            "seconds": time.monotonic() - started,
        }
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":  # standalone: python bench/engine_stream.py DSN TOKEN
    print(json.dumps(measure(token=sys.argv[2], dsn=sys.argv[1]), indent=1))
