"""The bench's targets (issue 5): the number each figure is compared against, in one
place. run.py's target table and engine_stream.py's targets read them from here;
bench/README.md's "Targets" table states the same numbers in prose."""

from __future__ import annotations

TARGETS: dict[str, dict] = {
    # req/s of botkit (1 worker) / req/s of the limit, on these routes (issue 14: the limit
    # does botkit's per-request work too, token cache and rate-limit counts)
    "botkit_vs_limit": {"at_least": 0.9, "routes": ("fetch", "create", "list", "update")},
    "p99_vs_limit": {"at_most": 1.5, "routes": ("fetch", "create", "list", "update")},
    "cpu_vs_limit": {"at_most": 1.1, "routes": ("fetch", "create", "list", "update")},
    # req/s of botkit (1 worker) / req/s of the FastAPI peer, on these routes
    "botkit_vs_peer": {"at_least": 3.5, "routes": ("fetch", "create")},
    # p50 of the list 90,000 deep / p50 of page 1 (botkit 1 worker)
    "deep_vs_page1": {"at_most": 1.1},
    # peak RSS growth of the server during the JSONL export of 100,000 records, MB (1 worker)
    "jsonl_rss_growth_mb": {"below": 50},
    # completion streams: what botkit adds to the upstream's p50s
    # completion streams (issues 5 and 14): what botkit adds over reading the upstream directly
    "ttft_added_ms_p50": {"below": 0.5},  # time to the first token, ms
    "ttft_litellm_ratio": {"below": 0.1},  # botkit's added time to first token / LiteLLM proxy's, same run
    "token_added_us_p50": {"below": 10.0},  # gap between tokens net of the upstream's own, µs
    "concurrent_unfinished": {"below": 1},  # of 10,000 streams at once on one process
    "concurrent_rss_growth_mb": {"below": 300},
    # channels (issue 11): publish → subscriber, ms; idle subscribers' RSS and their effect
    "channel_same_ms_p50": {"below": 2.0},
    "channel_other_ms_p50": {"below": 5.0},
    "channel_idle_rss_mb": {"below": 300.0},
    "channel_idle_ratio": {"below": 1.2},
    # files (issue 12): 100 MB through botkit / the same folder directly; the server's RSS growth
    "file_upload_ratio": {"at_least": 0.8},
    "file_download_ratio": {"at_least": 0.8},
    "file_rss_mb": {"below": 50.0},
    # tasks (issue 13): the workers' CPU time per execution step (one iteration), ms
    "task_step_cpu_ms": {"below": 5.0},
    # retrieval (issue 14): dataset search on 100,000 distinct passages of real text
    "search_p50_ms_100k": {"at_most": 15.0},
    "search_p99_ratio": {"at_most": 3.0},  # p99 / p50
    "recall5_lexical": {"at_least": 0.9},
    "complete_pre_ms": {"at_most": 20.0},  # a completion's time before its model, p50
    "hybrid_search_p50_ms_100k": {"at_most": 25.0},  # with the built-in embedding model
}
