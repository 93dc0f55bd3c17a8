"""The completion-stream benchmark (issue 5): what botkit adds on top of the model.

A bare fake upstream (bench/fake_upstream.py) streams N tokens at a fixed pace. The
same stream is read directly from it and through botkit's `conversation/complete`
(JSONL), one at a time, alternating, a bounded number of times: the added
time-to-first-token is the difference of the p50s. Each token carries the time the
upstream sent it, so the gaps are also counted net of the upstream's own pace (three
processes share two cores here, and the upstream's 2 ms timer fires later when botkit
is busy too: that is the machine, not a gap botkit puts between tokens), and each
token's transit (sent → read) is its latency through the path. Then many streams are
opened through botkit at once (against a slow upstream, so they really are open
together) while the server's RSS is sampled."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from itertools import pairwise
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
        ("completion stream: added time-to-first-token < {:g}× LiteLLM proxy's", "ttft_litellm_ratio"),
        (
            "completion stream: added gap between tokens p50 < {:g} µs (net of the upstream's pace)",
            "token_added_us_p50",
        ),
        ("completion streams: 10,000 at once on one process, all finish (unfinished < {:g})", "concurrent_unfinished"),
        ("completion streams: 10,000 at once, server RSS growth < {:g} MB", "concurrent_rss_growth_mb"),
    )
)

FAST_TOKENS, FAST_PACE_MS = 100, 2.0  # the sequential streams
# The concurrent streams: 30 s each, so that all 10,000 are open together once the ramp
# is done; a token a second each (10,000 tokens/s through the process at the peak).
SLOW_TOKENS, SLOW_PACE_MS = 30, 1000.0
SEQUENTIAL = 30  # streams each way
CONCURRENT = 10_000  # on one process (issue 14)
OPENING = 256  # streams being opened at once (connected, not yet answered), as a load generator ramps
TIME_LIMIT_S = 150  # the whole benchmark, at most


def _more_files() -> None:
    """10,000 streams hold 20,000 sockets in one process: more than the usual hard limit
    of open files (botkit raises its soft limit to the hard one itself). Root may raise
    the hard limit for the processes the bench starts; anyone else keeps theirs."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65_536, 65_536))
    except (ValueError, OSError):
        pass


def _open_files(pid: int) -> int:
    """The open-file limit the process runs with (botkit raises its soft limit to the hard one)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3]) if line.split()[3].isdigit() else 1 << 20
    return 1024


class _Proc:
    def __init__(self, cmd: list[str], env: dict[str, str | None] | None = None, log: Path | None = None) -> None:
        self.log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115  (the log lives as long as the process)
        self.proc = subprocess.Popen(
            cmd,
            env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None},
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_more_files,
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


SENT = re.compile(r"t\d+@(\d+)")  # fake_upstream's tokens: when each was sent, ns


def _read(client: httpx.Client, url: str, body: dict, headers: dict | None, token: str) -> tuple[float, list]:
    """(time to the first token in ms, (sent, read) in ns for each token line), for the
    lines of a stream that hold `token`."""
    t0 = time.perf_counter()
    first, tokens = None, []
    with client.stream("POST", url, json=body, headers=headers) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url} answered {r.status_code}: {r.read()[:300]!r}")
        for line in r.iter_lines():
            if token not in line:
                continue
            now = time.perf_counter_ns()
            if first is None:
                first = now / 1e9
            sent = SENT.search(line)
            tokens.append((int(sent.group(1)) if sent else now, now))
    return (first - t0) * 1000, tokens


def _direct(client: httpx.Client, url: str, headers: dict | None = None) -> tuple[float, list]:
    """An OpenAI-compatible stream: the upstream itself, or LiteLLM's proxy in front of it."""
    body = {"model": "bench-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    return _read(client, url, body, headers, '"content"')


class _Tokens:
    """What the readers saw of the tokens, one list per path: the gaps between them as
    read, the same net of the gaps the upstream sent them at, and their transit."""

    def __init__(self) -> None:
        self.ttft, self.gaps, self.net, self.transit = [], [], [], []

    def add(self, ttft: float, tokens: list) -> None:
        self.ttft.append(ttft)
        for (s0, r0), (s1, r1) in pairwise(tokens):
            self.gaps.append((r1 - r0) / 1e3)
            self.net.append((r1 - r0 - (s1 - s0)) / 1e3)
        self.transit += [(r - s) / 1e3 for s, r in tokens]


# The LiteLLM proxy, side by side with botkit on the same upstream: pinned, installed
# into an environment of its own (its dependencies are not botkit's) the first time.
LITELLM = "litellm[proxy]==1.108.7"
LITELLM_ENV = ROOT / ".data" / "bench" / "litellm"
LITELLM_KEY = "sk-bench"


def _litellm() -> Path | None:
    """The proxy's `litellm` command, installed when missing; None when it cannot be."""
    command = LITELLM_ENV / "bin" / "litellm"
    stamp = LITELLM_ENV / ".installed"
    if command.exists() and stamp.exists() and stamp.read_text() == LITELLM:
        return command
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_ENV)], check=True, timeout=120)
        subprocess.run(
            [str(LITELLM_ENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", LITELLM],
            check=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    stamp.write_text(LITELLM)
    return command


def _litellm_proxy(command: Path, upstream_port: int, port: int, work: Path) -> _Proc:
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench-model\n"
        "    litellm_params:\n"
        "      model: openai/bench-model\n"
        f"      api_base: http://127.0.0.1:{upstream_port}\n"
        "      api_key: none\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    # no database (None: left out of its environment), no download of the model cost map
    env = {"DATABASE_URL": None, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    cmd = [str(command), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    return _Proc(cmd, env=env, log=work / "litellm.log")


def _botkit(client: httpx.Client, url: str, token: str, model: str) -> tuple[float, list]:
    body = {"model": model, "messages": [{"type": "user", "text": "hi"}]}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/jsonl"}
    return _read(client, url, body, headers, '{"type":"token"')


async def _concurrent(port: int, token: str, streams: int, rss: callable, deadline: float) -> dict:
    """`streams` completion streams, each read to its end, all started together: at most
    OPENING of them between connecting and their answer's status line (a ramp at the
    rate the server answers, not a flood the listen backlog drops). A bare asyncio
    client: one socket and one small task a stream, so that 10,000 fit in the client's
    share of the CPU."""
    body = json.dumps({"model": "bench-slow", "messages": [{"type": "user", "text": "hi"}]}).encode()
    request = (
        b"POST /v1/conversation/complete HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Accept: application/jsonl\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    opened = finished = 0
    peak_open = 0
    errors: list[str] = []
    base_rss = rss()
    peak_rss = base_rss
    opening = asyncio.Semaphore(OPENING)
    started = time.monotonic()
    ramp_s = 0.0

    async def one() -> None:
        nonlocal opened, finished, peak_open, ramp_s
        writer = None
        try:
            async with opening:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                status = await reader.readline()
            if b" 200 " not in status:
                errors.append(status.decode(errors="replace").strip()[:40])
                return
            opened += 1
            peak_open = max(peak_open, opened - finished)
            if opened == streams:
                ramp_s = time.monotonic() - started
            tail = b""
            while chunk := await reader.read(65536):
                tail = (tail + chunk)[-4096:]
            if b'{"type":"result"' in tail:
                finished += 1
            else:
                errors.append("no result line")
        except Exception as exc:  # counted, reported
            errors.append(type(exc).__name__)
        finally:
            if writer is not None:
                writer.close()

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
        "tokens_each": SLOW_TOKENS,
        "pace_ms": SLOW_PACE_MS,
        "ramp_s": ramp_s,
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
        litellm_url = None
        command = _litellm()
        if command is not None:
            litellm_port = free_port()
            proxy = _litellm_proxy(command, fast_port, litellm_port, work)
            procs.append(proxy)
            _wait_port(litellm_port, proxy, "/health/liveliness", timeout=120)
            litellm_url = f"http://127.0.0.1:{litellm_port}/chat/completions"
        via_litellm = {"Authorization": f"Bearer {LITELLM_KEY}"}

        direct, botkit, litellm = _Tokens(), _Tokens(), _Tokens()
        tokens_seen = []
        with httpx.Client(timeout=30) as client:
            _botkit(client, complete, token, "bench-model")  # warm-up
            _direct(client, upstream)
            if litellm_url:
                _direct(client, litellm_url, via_litellm)
            measuring = time.monotonic()  # the bound is on the measurement (LiteLLM's first start is slow)
            for _ in range(SEQUENTIAL):
                if time.monotonic() - measuring > TIME_LIMIT_S / 2:
                    break
                direct.add(*_direct(client, upstream))
                t, tokens = _botkit(client, complete, token, "bench-model")
                botkit.add(t, tokens)
                tokens_seen.append(len(tokens))
                if litellm_url:
                    litellm.add(*_direct(client, litellm_url, via_litellm))
        pid = api.proc.pid
        # Each stream holds two of the server's sockets: past its open-file limit the
        # rest would be refused, so the bench opens what fits and counts the others unfinished.
        files = _open_files(pid)
        fits = min(CONCURRENT, (files - 300) // 2)
        concurrent = asyncio.run(_concurrent(api_port, token, fits, lambda: rss_kb(pid), measuring + TIME_LIMIT_S))
        concurrent["wanted"], concurrent["open_files"] = CONCURRENT, files
        p50 = statistics.median
        return {
            "upstream": f"{FAST_TOKENS} tokens, {FAST_PACE_MS:g} ms apart (bare asyncio SSE server, keep-alive)",
            "streams_each_way": len(direct.ttft),
            "tokens_per_stream": min(tokens_seen) if tokens_seen else 0,
            "direct_ttft_ms_p50": p50(direct.ttft),
            "botkit_ttft_ms_p50": p50(botkit.ttft),
            "direct_gap_us_p50": p50(direct.gaps),
            "botkit_gap_us_p50": p50(botkit.gaps),
            "direct_net_gap_us_p50": p50(direct.net),
            "botkit_net_gap_us_p50": p50(botkit.net),
            "direct_transit_us_p50": p50(direct.transit),
            "botkit_transit_us_p50": p50(botkit.transit),
            "ttft_added_ms_p50": p50(botkit.ttft) - p50(direct.ttft),
            "gap_added_us_p50": p50(botkit.gaps) - p50(direct.gaps),
            "token_added_us_p50": p50(botkit.net) - p50(direct.net),
            "transit_added_us_p50": p50(botkit.transit) - p50(direct.transit),
            **(
                {
                    "litellm": LITELLM,
                    "litellm_ttft_ms_p50": p50(litellm.ttft),
                    "litellm_gap_us_p50": p50(litellm.gaps),
                    "litellm_ttft_added_ms_p50": p50(litellm.ttft) - p50(direct.ttft),
                    "litellm_gap_added_us_p50": p50(litellm.gaps) - p50(direct.gaps),
                    "litellm_token_added_us_p50": p50(litellm.net) - p50(direct.net),
                    "litellm_transit_added_us_p50": p50(litellm.transit) - p50(direct.transit),
                    "ttft_litellm_ratio": (p50(botkit.ttft) - p50(direct.ttft))
                    / max(1e-9, p50(litellm.ttft) - p50(direct.ttft)),
                }
                if litellm.ttft
                else {}
            ),
            "concurrent": concurrent,
            "concurrent_streams": concurrent["peak_open"],
            "concurrent_rss_mb": concurrent["rss_peak_mb"],
            "concurrent_unfinished": CONCURRENT - concurrent["finished"],
            "concurrent_rss_growth_mb": concurrent["rss_growth_mb"],
            "seconds": time.monotonic() - started,
        }
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":  # standalone: python bench/engine_stream.py DSN TOKEN
    print(json.dumps(measure(token=sys.argv[2], dsn=sys.argv[1]), indent=1))
