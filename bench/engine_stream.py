"""PLUG-IN POINT (issue 5): the completion-stream benchmark, for when the
conversation engine exists. Nothing here runs a load yet; bench/run.py calls
`measure()` and reports its targets as "pending" while it returns None.

What it is to measure, once `conversation/complete` streams:
  * a local fake OpenAI-compatible upstream on 127.0.0.1 (a tiny Starlette app in
    bench/, started and stopped by run.py like the other servers) that streams N
    tokens as SSE `chat.completion.chunk`s at a fixed pace (e.g. 200 tokens, 2 ms
    apart);
  * botkit configured to use it as its model provider (by environment);
  * one stream at a time, repeated (bounded: e.g. 50 streams, 60 s at most):
    time-to-first-token and the gaps between tokens through botkit's JSONL
    `token` events, versus the same read directly from the upstream; the added
    TTFT and added per-token latency are the differences of the p50s;
  * then many concurrent streams (e.g. 1,000 open at once, bounded in time) with
    the server's RSS sampled as for the JSONL export.

Targets: added time-to-first-token < 1 ms p50; added per-token latency < 50 µs p50.

Expected return shape (run.py prints and stores whatever dict comes back):
  {"ttft_added_ms_p50": float, "token_added_us_p50": float,
   "concurrent_streams": int, "concurrent_rss_mb": float}"""

from __future__ import annotations

from typing import Any

TARGETS = (
    ("completion stream: added time-to-first-token p50 < 1 ms", "ttft_added_ms_p50", 1.0),
    ("completion stream: added per-token latency p50 < 50 µs", "token_added_us_p50", 50.0),
)


def measure(**servers: Any) -> dict | None:
    """None until the conversation engine exists (its targets are reported as pending)."""
    return None
