"""`make bench`: botkit against the limit of its stack and a conventional peer, in one
run, against one PostgreSQL on this machine. See bench/README.md.

Everything runs on 127.0.0.1; every load is bounded in time (and in count: the wrk
script stops a thread after BENCH_MAX requests); everything started here is
stopped in `finally`, also on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
# The botkit processes of the benchmarks embed no records in the background (it would
# take the CPU the figures measure), except the retrieval benchmark's, which says so.
os.environ.setdefault("BOTKIT_EMBEDDINGS_MODEL", "off")

import channels  # noqa: E402
import engine_stream  # noqa: E402
import files  # noqa: E402
import retrieval  # noqa: E402
import seed as seeding  # noqa: E402
import tasks  # noqa: E402
from procs import (  # noqa: E402
    CpuWatch,
    exit_on_signals,
    free_port,
    process_tree,
    quiet_waited,
    rss_kb,
    stop_group,
    wait_quiet,
)
from targets import TARGETS  # noqa: E402

from botkit.store.embedded import EmbeddedPostgres  # noqa: E402

DATA = ROOT / ".data"
PG_DIR = DATA / "bench-postgres"  # the bench's own embedded PostgreSQL (kept; the database is made anew)
WORK = DATA / "bench"  # ids file, server logs, botkit's data dir (admin token)
RESULTS = BENCH / "results"
LUA = BENCH / "wrk" / "bench.lua"
PYTHON = ROOT / ".venv" / "bin" / "python"
BOTKIT = ROOT / ".venv" / "bin" / "botkit"
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"

THREADS, CONNECTIONS = 2, 64
WRK_MAX_PER_THREAD = 2_000_000  # the count bound of one wrk run (the time bound is -d)
BUDGET_S = 9 * 60  # the whole run, this script included, stays under 10 minutes
JSONL_RESERVE_S = 45  # kept for the JSONL export, the profile and shutting down

CREATE_BODY = '{"name":"bench bot","description":"created by make bench","model":"gpt-4o","meta":{"source":"bench"}}'
UPDATE_BODY = '{"meta":{"$update":{"k":"v"}}}'
ROUTE_ORDER = ("fetch", "create", "list", "deep", "update")
ROUTE_TITLES = {
    "fetch": "GET /v1/bot/{id}/fetch (random id)",
    "create": "POST /v1/bot/create",
    "list": "GET /v1/bot/list?take=20 (page 1)",
    "deep": "GET /v1/bot/list?take=20 (90,000 deep)",
    "update": "POST /v1/bot/{id}/update ($update meta)",
    "noop": "constant JSON, no DB (HTTP stack + wrk)",
}
STARTED = time.monotonic()


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:6.1f}s] {msg}", file=sys.stderr, flush=True)


class Server:
    def __init__(self, name: str, label: str, cmd: list[str], env: dict[str, str], routes: tuple[str, ...]):
        self.name, self.label, self.cmd, self.routes = name, label, cmd, routes
        self.port = free_port()
        self.env = {**os.environ, **env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = WORK / "logs" / f"{name}.log"

    def start(self, timeout: float = 60) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "wb")  # noqa: SIM115  (the log lives as long as the server)
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become healthy in {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) if self.proc else []

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)


# --- load -----------------------------------------------------------------------


def wrk(server: Server, route: dict, seconds: int, token: str, ids_file: Path) -> dict:
    env = {
        **os.environ,
        "BENCH_METHOD": route["method"],
        "BENCH_PATH": route["path"],
        "BENCH_BODY": route.get("body", ""),
        "BENCH_TOKEN": token,
        "BENCH_IDS": str(route.get("ids", ids_file)),
        "BENCH_MAX": str(WRK_MAX_PER_THREAD),
    }
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s", "-s", str(LUA), server.base]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 30)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    r = json.loads(line[len("BENCH_JSON ") :])
    secs = r["duration_us"] / 1e6
    errors = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    # A figure counts only when (nearly) every response was a 2xx: a server that answers
    # 429 or 500 fast is not fast. (A few socket errors as wrk stops are tolerated.)
    valid = r["err_status"] == 0 and errors <= max(1, r["requests"] // 1000)
    return {
        "valid": valid,
        "rps": r["requests"] / secs,
        "p50_ms": r["p50_us"] / 1000,
        "p90_ms": r["p90_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "requests": r["requests"],
        "seconds": secs,
        "errors": errors,
        "non_2xx": r["err_status"],
        "timeouts": r["err_timeout"],
    }


def ensure_running(server: Server, notes: list[str]) -> None:
    """Something else on the machine may end a server (e.g. a `pkill -f "botkit serve"`
    by another session); start it again and say so."""
    if server.proc is not None and server.proc.poll() is not None:
        notes.append(
            f"{server.name} had exited ({server.proc.returncode}) and was started again; "
            f"the figure it was serving then may carry errors"
        )
        log("WARNING: " + notes[-1])
        server.start()


def median_of(samples: list[dict]) -> dict:
    """Medians over the rounds whose responses were all 2xx; the figure counts when at least
    half of its rounds did (a round can fail when something else on the machine interferes)."""
    good = [s for s in samples if s["valid"]] or samples
    return {
        "rps": statistics.median(s["rps"] for s in good),
        "p50_ms": statistics.median(s["p50_ms"] for s in good),
        "p99_ms": statistics.median(s["p99_ms"] for s in good),
        "cpu_us_per_req": statistics.median(s.get("server_cpu_us_per_req", 0.0) for s in good),
        "errors": sum(s["errors"] for s in samples),
        "rounds": len(samples),
        "rounds_invalid": sum(not s["valid"] for s in samples),
        "valid": 2 * sum(s["valid"] for s in samples) >= len(samples) and any(s["valid"] for s in samples),
        "foreign_cpu_pct_max": max(s.get("foreign_cpu_pct", 0.0) for s in samples),
    }


# --- checks ---------------------------------------------------------------------


def check_sql_drift() -> list[str]:
    """The limit copies botkit's SQL; say so when the copies no longer match."""
    import limit_app
    import peer_app

    try:
        import importlib

        from botkit.actions.standard import UpdateAction
        from botkit.resources.bot import TABLE
        from botkit.resources.event import with_event

        token_sql = next(
            m._TOKEN_SQL
            for m in (importlib.import_module(f"botkit.actions.{n}") for n in ("auth", "base"))
            if hasattr(m, "_TOKEN_SQL")
        )
        pairs = {
            "token": (limit_app.TOKEN_SQL, token_sql),
            "token (peer)": (peer_app.TOKEN_SQL, token_sql),
            "fetch (peer)": (peer_app.FETCH_SQL, TABLE.fetch_sql),
            "create (peer)": (
                peer_app.INSERT_SQL,
                with_event(TABLE.insert_sql + " RETURNING id", len(TABLE.insert_columns) + 1, False),
            ),
            "fetch": (limit_app.FETCH_SQL, TABLE.fetch_sql),
            "list": (limit_app.LIST_SQL, TABLE.list_sql("account_id", True, False, False, ())),
            "deep": (limit_app.LIST_CURSOR_SQL, TABLE.list_sql("account_id", True, True, False, ())),
            "create": (
                limit_app.INSERT_SQL,
                with_event(TABLE.insert_sql + " RETURNING id", len(TABLE.insert_columns) + 1, False),
            ),
            "update": (
                limit_app.UPDATE_MERGE_SQL,
                with_event(UpdateAction(TABLE, "/bot/{botId}/update").sql((), True), 5, False),
            ),
        }
    except Exception as exc:  # the framework moved: report, don't fail the run
        return [f"could not compare the limit's SQL with botkit's: {type(exc).__name__}: {exc}"]
    return [
        f"{name}: the limit runs {ours!r} but botkit runs {theirs!r}"
        for name, (ours, theirs) in pairs.items()
        if ours != theirs
    ]


def check_responses(servers: list[Server], routes: dict, token: str, bot_id: str) -> dict:
    """One request per server and route before any load: status 200, and the limit's and the
    peer's reads answer exactly what botkit answers (else a ratio would compare different work)."""
    headers = {"Authorization": f"Bearer {token}"}
    out: dict = {"status": {}, "same_as_botkit": {}}
    bodies: dict = {}
    order = [r for r in ("fetch", "list", "deep", "create", "update")]  # reads before writes
    with httpx.Client(headers=headers, timeout=10) as c:
        for route in order:
            spec = routes[route]
            path = spec["path"].replace("{id}", bot_id)
            for s in servers:
                if route not in s.routes:
                    continue
                if spec["method"] == "GET":
                    r = c.get(s.base + path)
                else:
                    r = c.post(s.base + path, content=spec["body"], headers={"Content-Type": "application/json"})
                out["status"][f"{s.name}:{route}"] = r.status_code
                if r.status_code == 200 and route in ("fetch", "list", "deep"):
                    bodies[(s.name, route)] = r.json()
    for (name, route), body in bodies.items():
        if name.startswith("botkit"):
            continue
        ref = bodies.get(("botkit-1w", route))
        out["same_as_botkit"][f"{name}:{route}"] = ref == body
    return out


# --- JSONL export -----------------------------------------------------------------


def jsonl_export(server: Server, token: str, dataset_id: str) -> dict:
    pids = server.pids()
    baseline = sum(rss_kb(p) for p in pids)
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], sum(rss_kb(p) for p in pids))
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines, size, head, tail = 0, 0, b"", b""
    cpu0, t0 = time.process_time(), time.perf_counter()
    ttfb = None
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(120, connect=10)) as c,
            c.stream(
                "GET",
                f"{server.base}/v1/dataset/{dataset_id}/record/list",
                headers={"Authorization": f"Bearer {token}", "Accept": "application/jsonl"},
            ) as r,
        ):
            status = r.status_code
            for chunk in r.iter_raw(1 << 16):
                if ttfb is None:
                    ttfb = time.perf_counter() - t0
                lines += chunk.count(b"\n")
                size += len(chunk)
                if len(head) < 200:
                    head += chunk[:200]
                tail = (tail + chunk)[-4096:]
                if time.perf_counter() - t0 > 100:  # bounded in time
                    break
    finally:
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        stop.set()
        sampler.join()
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {head[:200].decode(errors='replace')}")
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    ok = (
        status == 200
        and lines == seeding.RECORDS
        and head.startswith(b'{"type":"item"')
        and last.startswith(b'{"type":"item"')
        and not tail.endswith(b"\n\n")
    )
    return {
        "records": lines,
        "seconds": elapsed,
        "records_per_s": lines / elapsed,
        "bytes": size,
        "ttfb_ms": (ttfb or 0) * 1000,
        "rss_baseline_mb": baseline / 1024,
        "rss_growth_mb": (peak[0] - baseline) / 1024,
        "client_cpu_s": cpu,
        "status": status,
        "ok": ok,
        "processes": len(pids),
    }


# --- profile ----------------------------------------------------------------------


def profile(server: Server, route_name: str, route: dict, seconds: int, token: str, ids_file: Path) -> dict:
    """py-spy (sampling; it pauses the process for each sample, which costs a little speed but
    keeps the stacks whole) on the server's process(es) while wrk drives one route."""
    out = RESULTS / f"profile-{server.name}-{route_name}.txt"
    pid = server.proc.pid  # one worker: the server is this process
    spy = subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds + 1),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(0.5)
        load = wrk(server, route, seconds, token, ids_file)
        spy.wait(timeout=seconds + 30)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    return {"file": str(out.relative_to(ROOT)), "load": load, "summary": summarize_profile(out)}


def summarize_profile(path: Path, top: int = 25) -> dict:
    """Self and inclusive sample shares by function, from py-spy's collapsed stacks."""
    selfs: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    try:
        text = path.read_text()
    except OSError:
        return {"error": "no profile written (py-spy needs ptrace)"}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        selfs[frames[-1]] = selfs.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    pick = lambda d: [(f, round(100 * c / max(total, 1), 1)) for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:top]]  # noqa: E731
    return {"samples": total, "self_pct": pick(selfs), "inclusive_pct": pick(incl)}


def _short(frame: str) -> str:
    # "func (/path/to/site-packages/pkg/mod.py:123)" -> "func (pkg/mod.py)"
    func, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{func} ({where})" if where else func


# --- report -----------------------------------------------------------------------


def fmt_rps(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def fmt_ratio(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def fmt_lat(m: dict | None) -> str:
    return "–" if m is None else f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f}"


def _figure_tables(fig: dict) -> list[str]:
    """The req/s and latency table, and the server CPU time per request, of every route."""
    get = lambda server, route: fig.get(f"{server}:{route}")  # noqa: E731

    def rps(server: str, route: str) -> float | None:
        m = get(server, route) or {}
        return m.get("rps") if m.get("valid") else None

    def shown(server: str, route: str) -> str:
        m = get(server, route)
        return (fmt_rps(m["rps"]) + ("" if m["valid"] else " ✗")) if m else "–"

    lines = [
        "| route | botkit 1w | botkit 2w | limit | peer | botkit/limit | botkit/peer "
        "| botkit 1w p50/p99 | botkit 2w p50/p99 | limit p50/p99 | peer p50/p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for route in (*ROUTE_ORDER, "noop"):
        b1, lim, peer = rps("botkit-1w", route), rps("limit", route), rps("peer", route)
        if not any(get(n, route) for n in ("botkit-1w", "botkit-2w", "limit", "peer")):
            continue
        lines.append(
            f"| {ROUTE_TITLES[route]} | {shown('botkit-1w', route)} | {shown('botkit-2w', route)} "
            f"| {shown('limit', route)} | {shown('peer', route)} "
            f"| {fmt_ratio(b1 / lim if b1 and lim else None)} | {fmt_ratio(b1 / peer if b1 and peer else None)} "
            f"| {fmt_lat(get('botkit-1w', route))} | {fmt_lat(get('botkit-2w', route))} "
            f"| {fmt_lat(get('limit', route))} | {fmt_lat(get('peer', route))} |"
        )
    lines += [
        "",
        "Server CPU time per request (µs; the server's processes only, median of the rounds; "
        "steadier than req/s when other work shares the machine):",
        "",
        "| route | botkit 1w | botkit 2w | limit | peer | botkit/limit | peer/botkit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    cpu = lambda server, route: (get(server, route) or {}).get("cpu_us_per_req")  # noqa: E731
    for route in ROUTE_ORDER:
        c = {n: cpu(n, route) for n in ("botkit-1w", "botkit-2w", "limit", "peer")}
        if not any(c.values()):
            continue
        b, lim, peer = c["botkit-1w"], c["limit"], c["peer"]
        cells = " | ".join("–" if v is None else f"{v:.0f}" for v in c.values())
        lines.append(
            f"| {ROUTE_TITLES[route]} | {cells} | {fmt_ratio(b / lim if b and lim else None)} "
            f"| {fmt_ratio(peer / b if b and peer else None)} |"
        )
    return lines


def _stream_tables(res: dict) -> list[str]:
    """The JSONL export table and the completion-stream figures."""
    lines = [
        "",
        "| JSONL export, 100,000 records | records/s | peak RSS growth | time | complete |",
        "|---|---:|---:|---:|---|",
    ]
    for name, j in res["jsonl"].items():
        if "error" in j:
            lines.append(f"| {name} | – | – | – | {j['error']} |")
            continue
        lines.append(
            f"| {name} (median of {j['runs']}) | {j['records_per_s']:,.0f} | {j['rss_growth_mb']:.1f} MB "
            f"| {j['seconds']:.2f} s | {'yes' if j['ok'] else 'NO'} |"
        )
    ch = res.get("channels")
    if ch:
        lines += [
            "",
            "Channels (publish → the subscriber's line; botkit 1 worker subscribes, the publisher is the same "
            "process or botkit 2 workers):",
            "",
            f"| same process p50 | another process p50 | p50 with {ch['idle_open']:,} idle subscribers open "
            "| their RSS growth |",
            "|---:|---:|---:|---:|",
            f"| {ch['same_ms_p50']:.2f} ms | {ch['other_ms_p50']:.2f} ms | {ch['loaded_ms_p50']:.2f} ms "
            f"| {ch['idle_rss_mb']:.1f} MB |",
        ]
    fl = res.get("files")
    if fl:
        lines += [
            "",
            f"Files (100 MB, botkit 1 worker on its local folder, medians of {fl['runs']} rounds; "
            "directly: the same bytes written (fsynced) and read in the same folder; the bare server: "
            "blocking sockets, no framework, the upload hashed as botkit does, a reference and not a target; "
            "reads from the disk, not the page cache; the client shares the two cores):",
            "",
            "| | through botkit | directly | botkit / directly | bare server | botkit / bare |",
            "|---|---:|---:|---:|---:|---:|",
            f"| upload | {fl['upload_mb_s']:,.0f} MB/s | {fl['direct_write_mb_s']:,.0f} MB/s | {fl['upload_ratio']:.2f} "
            f"| {fl['bare_upload_mb_s']:,.0f} MB/s | {fl['upload_bare_ratio']:.2f} |",
            f"| download | {fl['download_mb_s']:,.0f} MB/s | {fl['direct_read_mb_s']:,.0f} MB/s "
            f"| {fl['download_ratio']:.2f} | {fl['bare_download_mb_s']:,.0f} MB/s | {fl['download_bare_ratio']:.2f} |",
            "",
            f"Server RSS growth while streaming: {fl['rss_growth_mb']:.1f} MB. A {fl['pdf_pages']}-page PDF "
            f"uploaded to a dataset's file: {fl['pdf_status']} into {fl['pdf_records']} records in "
            f"{fl['pdf_sync_s']:.1f} s.",
        ]
    rt = res.get("retrieval")
    if rt:
        lines += [
            "",
            f"Retrieval ({rt['passages']:,} distinct passages of real text: the docstrings and comments of the "
            f"installed packages; {rt['queries']} labelled queries, each a passage's four rarest words, a quarter "
            "with a typo; botkit 1 worker):",
            "",
            "| search p50 | search p99 | recall@1 | recall@5 | complete (built-in model) p50 | load |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {rt['search_p50_ms']:.1f} ms | {rt['search_p99_ms']:.1f} ms | {rt['recall_at_1']:.2f} "
            f"| {rt['recall_at_5']:.2f} | {rt['complete_p50_ms']:.1f} ms | {rt['load_s']:.0f} s |",
        ]
        if "hybrid_search_p50_ms" in rt:
            lines += [
                "",
                "The same with the built-in embedding model (all-MiniLM-L6-v2, int8, ONNX): hybrid search, "
                "lexical beside it:",
                "",
                "| | search p50 | search p99 | recall@1 | recall@5 | complete p50 |",
                "|---|---:|---:|---:|---:|---:|",
                f"| lexical | {rt['search_p50_ms']:.1f} ms | {rt['search_p99_ms']:.1f} ms | {rt['recall_at_1']:.2f} "
                f"| {rt['recall_at_5']:.2f} | {rt['complete_p50_ms']:.1f} ms |",
                f"| hybrid | {rt['hybrid_search_p50_ms']:.1f} ms | {rt['hybrid_search_p99_ms']:.1f} ms "
                f"| {rt['hybrid_recall_at_1']:.2f} | {rt['hybrid_recall_at_5']:.2f} "
                f"| {rt['hybrid_complete_p50_ms']:.1f} ms |",
                "",
                f"HNSW index over {rt['passages']:,} vectors built in {rt['hybrid_hnsw_build_s']:.0f} s; "
                f"one `botkit worker` embeds {rt['embed_per_s']:.0f} records/s in the background.",
            ]
    tk = res.get("tasks")
    if tk:
        lines += [
            "",
            f"Task executions ({tk['executions']:,} queued executions of a one-iteration task on the built-in model, "
            "drained by `botkit worker` processes of 4 jobs each; CPU per execution, the model's answer included):",
            "",
            "| workers | executions/s | workers' CPU / execution | PostgreSQL CPU / execution | all succeeded |",
            "|---:|---:|---:|---:|---|",
        ] + [
            f"| {r['workers']} | {r['per_s']:,.0f} | {r['worker_cpu_ms']:.2f} ms | {r['pg_cpu_ms']:.2f} ms "
            f"| {'yes' if r['ok'] else 'NO'} |"
            for r in tk["rounds"]
        ]
    e = res.get("engine")
    if e:
        c = e["concurrent"]
        lines += [
            "",
            f"Completion streams ({e['upstream']}; {e['streams_each_way']} streams each way, alternating):",
            "",
            "| | direct from the upstream | through botkit | added by botkit |",
            "|---|---:|---:|---:|",
            f"| time to first token, p50 | {e['direct_ttft_ms_p50']:.2f} ms | {e['botkit_ttft_ms_p50']:.2f} ms "
            f"| {e['ttft_added_ms_p50']:.2f} ms |",
            f"| gap between tokens as read, p50 | {e['direct_gap_us_p50']:,.0f} µs | {e['botkit_gap_us_p50']:,.0f} µs "
            f"| {e['gap_added_us_p50']:,.1f} µs |",
            f"| the same net of the upstream's own gap, p50 | {e['direct_net_gap_us_p50']:,.1f} µs "
            f"| {e['botkit_net_gap_us_p50']:,.1f} µs | {e['token_added_us_p50']:,.1f} µs |",
            f"| a token's transit (sent → read), p50 | {e['direct_transit_us_p50']:,.0f} µs "
            f"| {e['botkit_transit_us_p50']:,.0f} µs | {e['transit_added_us_p50']:,.0f} µs |",
        ]
        if "litellm_ttft_ms_p50" in e:
            lines += [
                "",
                f"The LiteLLM proxy ({e['litellm']}, 1 worker) on the same upstream in the same run: time to first token "
                f"{e['litellm_ttft_ms_p50']:.2f} ms (+{e['litellm_ttft_added_ms_p50']:.2f} ms), gap between tokens "
                f"+{e['litellm_gap_added_us_p50']:,.1f} µs as read and +{e['litellm_token_added_us_p50']:,.1f} µs net, "
                f"transit +{e['litellm_transit_added_us_p50']:,.0f} µs; botkit adds "
                f"{e['ttft_litellm_ratio']:.2f}× what LiteLLM adds to the first token.",
            ]
        lines += [
            "",
            f"{c['streams']:,} streams at once through botkit ({c['tokens_each']} tokens "
            f"{c['pace_ms']:,.0f} ms apart each, at most {engine_stream.OPENING} being opened at once): "
            f"{c['peak_open']:,} open together, {c['finished']:,} finished, {c['errors']} errors; "
            f"server RSS {c['rss_base_mb']:.0f} MB → {c['rss_peak_mb']:.0f} MB "
            f"(+{c['rss_growth_mb']:.0f} MB)."
            + (
                f" Only {c['streams']:,} of {c['wanted']:,} fit: the server may open {c['open_files']:,} files "
                "(the machine's hard limit, which the bench cannot raise), and each stream holds two sockets."
                if c["streams"] < c["wanted"]
                else ""
            ),
        ]
    return lines


def report(res: dict) -> str:
    fig = res["figures"]
    s = res["settings"]
    lines = [
        f"# make bench: {res['finished_at']}",
        "",
        f"{s['cores']} cores, PostgreSQL {s['postgres']} on a Unix socket ({s['postgres_durability']}), "
        f"wrk -t{THREADS} -c{CONNECTIONS}, {s['duration_s']} s per figure after a {s['warmup_s']} s warm-up, "
        f"median of {s['rounds_done']} interleaved round(s); commit {s['commit']}. "
        f"req/s; latency p50 / p99 in ms. Compare ratios within one run, not figures across runs.",
        "",
    ]
    lines += _figure_tables(fig)
    bad = [k for k, v in fig.items() if v["errors"]]
    if bad:
        lines += [
            "",
            "**Errors during load** (non-2xx, timeouts, socket errors; ✗ marks a figure that does not "
            "count, and no ratio is computed from it) in: " + ", ".join(f"{k} ({fig[k]['errors']:,})" for k in bad),
        ]
    foreign = [smp.get("foreign_cpu_pct", 0.0) for v in fig.values() for smp in v["samples"]]
    if foreign:
        noisy = sorted({k for k, v in fig.items() if v["foreign_cpu_pct_max"] > 10})
        lines += [
            "",
            f"Other processes on this machine used {statistics.median(foreign):.1f}% of the CPUs "
            f"(median over the measured windows; max {max(foreign):.1f}%)."
            + (f" Figures disturbed by more than 10% in some round: {', '.join(noisy)}." if noisy else ""),
        ]
    lines += [
        "",
        "Deep page (cursor 90,000 items deep) / page 1, p50 latency: "
        + ", ".join(f"{name} {v:.2f}×" for name, v in res["deep_ratio"].items()),
    ]
    lines += _stream_tables(res)
    lines += ["", "| target (bench/targets.py) | measured | met |", "|---|---:|---|"]
    for t in res["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {t['met']} |")
    if res["checks"]["sql_drift"]:
        lines += ["", "**The limit's SQL differs from botkit's:**"] + [f"- {d}" for d in res["checks"]["sql_drift"]]
    mism = [k for k, v in res["checks"]["same_as_botkit"].items() if not v]
    not_ok = [f"{k}={v}" for k, v in res["checks"]["status"].items() if v != 200]
    if mism or not_ok:
        lines += [
            "",
            "**Check failures before load:** " + ", ".join(not_ok + [f"{m} answers differently" for m in mism]),
        ]
    for note in res.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def targets(res: dict) -> list[dict]:
    """The target table: every figure against its number in TARGETS (bench/targets.py)."""
    fig = res["figures"]
    rps = lambda server, route: (fig.get(f"{server}:{route}") or {}).get("rps")  # noqa: E731
    valid = lambda *keys: all((fig.get(k) or {}).get("valid", False) for k in keys)  # noqa: E731
    out = []

    def add(text: str, value: float | None, ok: bool | None, unit: str = "") -> None:
        out.append(
            {
                "target": text,
                "measured": "–" if value is None else f"{value:.2f}{unit}",
                "value": value,
                "met": "–" if ok is None else ("yes" if ok else "NO"),
            }
        )

    def invalid(text: str, keys: list[str]) -> None:
        out.append(
            {
                "target": text,
                "value": None,
                "met": "–",
                "measured": "not measured: errors in " + ", ".join(k for k in keys if not valid(k)),
            }
        )

    for other, name in (("limit", "botkit_vs_limit"), ("peer", "botkit_vs_peer")):
        bound = TARGETS[name]["at_least"]
        for route in TARGETS[name]["routes"]:
            text, keys = f"botkit/{other} ≥ {bound:g} on {route} (1 worker)", [f"botkit-1w:{route}", f"{other}:{route}"]
            if not valid(*keys):
                invalid(text, keys)
                continue
            v = rps("botkit-1w", route) / rps(other, route)
            add(text, v, v >= bound)
    # against the fair ceiling (issue 14): the tail and the CPU a request costs
    for key, field, unit in (("p99_vs_limit", "p99_ms", "×"), ("cpu_vs_limit", "cpu_us_per_req", "×")):
        bound = TARGETS[key]["at_most"]
        for route in TARGETS[key]["routes"]:
            what = "p99 latency" if field == "p99_ms" else "server CPU per request"
            text = f"botkit {what} ≤ {bound:g}× the limit's on {route} (1 worker)"
            keys = [f"botkit-1w:{route}", f"limit:{route}"]
            theirs = (fig.get(f"limit:{route}") or {}).get(field)
            if not valid(*keys) or not theirs:
                invalid(text, keys)
                continue
            v = fig[f"botkit-1w:{route}"][field] / theirs
            add(text, v, v <= bound, unit)
    bound = TARGETS["deep_vs_page1"]["at_most"]
    text = f"list 90,000 deep: p50 within {bound:g}× of page 1 (botkit 1 worker)"
    keys = ["botkit-1w:deep", "botkit-1w:list"]
    if not valid(*keys):
        invalid(text, keys)
    else:
        v = res["deep_ratio"].get("botkit-1w")
        add(text, v, None if v is None else v <= bound, "×")
    j = res["jsonl"].get("botkit-1w", {})
    v = j.get("rss_growth_mb")
    bound = TARGETS["jsonl_rss_growth_mb"]["below"]
    add(
        f"JSONL export: RSS growth < {bound:g} MB over 100,000 records (1 worker)",
        v,
        None if v is None else v < bound and j.get("ok", False),
        " MB",
    )

    def against(figures: dict | None, targets, holds: Callable[[str, float, float], bool]) -> None:
        """A benchmark module's (text, key, limit) targets, met as `holds(key, value, limit)` says."""
        for text, key, limit in targets:
            if figures is None:
                out.append({"target": text, "measured": "failed (see the notes)", "value": None, "met": "–"})
            else:
                v = figures.get(key)
                add(text, v, None if v is None else holds(key, v, limit))

    against(res.get("files"), files.TARGETS, lambda k, v, lim: v >= lim if k.endswith("ratio") else v < lim)
    against(res.get("tasks"), tasks.TARGETS, lambda k, v, lim: v < lim)
    against(res.get("retrieval"), retrieval.TARGETS, retrieval.holds)
    against(res.get("channels"), channels.TARGETS, lambda k, v, lim: v <= lim if k == "idle_ratio" else v < lim)
    against(res.get("engine"), engine_stream.TARGETS, lambda k, v, lim: v < lim)
    return out


# --- the phases of a run ------------------------------------------------------------


@dataclass
class Setup:
    """The seeded bench database and the request shapes the loads send to it."""

    seeded: seeding.Seeded
    ids_file: Path  # the bot ids fetch picks from at random
    routes: dict  # route name -> method, path, body (and ids file) for wrk

    @property
    def token(self) -> str:
        return self.seeded.token


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--rounds",
        type=int,
        default=int(os.environ.get("BENCH_ROUNDS", 5)),
        help="interleaved rounds; the figures are their medians (default 5)",
    )
    ap.add_argument(
        "--duration", type=int, default=int(os.environ.get("BENCH_DURATION", 3)), help="seconds per figure (default 3)"
    )
    ap.add_argument(
        "--warmup",
        type=int,
        default=int(os.environ.get("BENCH_WARMUP", 1)),
        help="warm-up seconds before each figure (default 1)",
    )
    ap.add_argument(
        "--profile",
        default=os.environ.get("BENCH_PROFILE", ""),
        help="comma-separated routes to profile with py-spy on botkit 1w and the limit (e.g. fetch)",
    )
    ap.add_argument("--no-peer", action="store_true", help="skip the FastAPI peer")
    ap.add_argument("--no-2w", action="store_true", help="skip botkit with two workers")
    return ap.parse_args(argv)


def start_postgres_and_seed(pg: EmbeddedPostgres) -> Setup:
    log(f"starting the bench PostgreSQL in {PG_DIR.relative_to(ROOT)} (fsync off)")
    admin_dsn = pg.start()
    log(f"seeding {seeding.BOTS:,} bots and a dataset of {seeding.RECORDS:,} records")
    seeded = asyncio.run(seeding.seed(admin_dsn))
    log(f"seeded in {seeded.seconds:.1f}s")
    ids_file = WORK / "bot-ids.txt"
    ids_file.write_text("\n".join(seeded.bot_ids) + "\n")
    # Updates leave dead row versions (meta has a GIN index, so a meta merge is never a HOT
    # update) that a keyset scan walks past until vacuum: updates go to the newer bots only,
    # so the rows the deep page reads stay as seeded and the deep/page-1 ratio measures depth.
    update_ids = WORK / "bot-ids-update.txt"
    update_ids.write_text("\n".join(seeded.bot_ids[seeding.BOTS - seeding.DEEP + 10_000 :]) + "\n")
    return Setup(seeded=seeded, ids_file=ids_file, routes=make_routes(seeded.deep_cursor, update_ids))


def make_routes(deep_cursor: str, update_ids: Path) -> dict:
    return {
        "fetch": {"method": "GET", "path": "/v1/bot/{id}/fetch"},
        "create": {"method": "POST", "path": "/v1/bot/create", "body": CREATE_BODY},
        "list": {"method": "GET", "path": "/v1/bot/list?take=20"},
        "deep": {"method": "GET", "path": f"/v1/bot/list?take=20&cursor={deep_cursor}"},
        "update": {"method": "POST", "path": "/v1/bot/{id}/update", "body": UPDATE_BODY, "ids": update_ids},
        "noop": {"method": "GET", "path": "/noop"},
    }


def make_servers(args: argparse.Namespace, dsn: str) -> list[Server]:
    db_env = {
        "DATABASE_URL": dsn,
        "BOTKIT_DATA_DIR": str(WORK / "botkit"),
        "BOTKIT_LOG_LEVEL": "warning",
        # The request rate limits stay on (their per-request count is part of what is
        # measured) but far above what a bench can send in a minute.
        "BOTKIT_RATE_LIMIT": str(10**9),
        "BOTKIT_RATE_LIMIT_ACCOUNT": str(10**9),
    }
    all_routes = ROUTE_ORDER
    servers = [Server("botkit-1w", "botkit, 1 worker", [str(BOTKIT), "serve"], {**db_env, "WORKERS": "1"}, all_routes)]
    if not args.no_2w:
        servers.append(
            Server("botkit-2w", "botkit, 2 workers", [str(BOTKIT), "serve"], {**db_env, "WORKERS": "2"}, all_routes)
        )
    servers.append(Server("limit", "the limit", [str(PYTHON), str(BENCH / "limit_app.py")], db_env, all_routes))
    if not args.no_peer:
        servers.append(
            Server(
                "peer",
                "FastAPI + pydantic peer",
                [str(PYTHON), str(BENCH / "peer_app.py")],
                db_env,
                ("fetch", "create"),
            )
        )
    return servers


def start_servers(servers: list[Server]) -> None:
    for s in servers:  # one after the other: botkit's start-up (migrate, admin token) is not raced
        log(f"starting {s.name} on port {s.port}")
        s.start()


def cpu_roots(pg: EmbeddedPostgres, servers: list[Server]) -> list[int]:
    """The bench's own processes (with their descendants): the PostgreSQL and the servers."""
    from botkit.store.embedded import running_pid

    return [p for p in [running_pid(pg.data), *(s.proc.pid for s in servers if s.proc)] if p]


def run_checks(servers: list[Server], setup: Setup) -> dict:
    checks = {"sql_drift": check_sql_drift()}
    checks.update(
        check_responses(servers, setup.routes, setup.token, setup.seeded.bot_ids[len(setup.seeded.bot_ids) // 2])
    )
    for d in checks["sql_drift"]:
        log(f"WARNING: {d}")
    for k, v in checks["status"].items():
        if v != 200:
            log(f"WARNING: {k} answered {v} before the load")
    for k, v in checks["same_as_botkit"].items():
        if not v:
            log(f"WARNING: {k} answers differently from botkit")
    return checks


def measure_rounds(
    args: argparse.Namespace, servers: list[Server], setup: Setup, roots: Callable[[], list[int]], notes: list[str]
) -> tuple[dict[str, list[dict]], int]:
    """Every route on every server, in interleaved rounds; whole rounds are dropped rather
    than overrun the time budget. Returns the samples by figure and the rounds done."""
    samples: dict[str, list[dict]] = {}
    rounds_done = 0
    round_seconds = None
    for rnd in range(args.rounds):
        left = BUDGET_S - (time.monotonic() - STARTED) - JSONL_RESERVE_S
        if round_seconds is not None and round_seconds > left:
            notes.append(f"stopped after {rounds_done} of {args.rounds} rounds to stay in the time budget")
            log(notes[-1])
            break
        t_round = time.monotonic()
        for route in ROUTE_ORDER:
            order = [s for s in servers if route in s.routes]
            k = rnd % len(order)
            for s in order[k:] + order[:k]:  # rotate, so no server always goes first
                r = measure_figure(args, s, route, rnd, setup, roots, notes)
                samples.setdefault(f"{s.name}:{route}", []).append(r)
        if rnd == 0:  # the HTTP stack's own ceiling, once: shows wrk is not the bottleneck
            samples["limit:noop"] = [measure_noop(args, servers, setup, roots)]
        rounds_done += 1
        round_seconds = time.monotonic() - t_round
    return samples, rounds_done


def measure_figure(
    args: argparse.Namespace,
    s: Server,
    route: str,
    rnd: int,
    setup: Setup,
    roots: Callable[[], list[int]],
    notes: list[str],
) -> dict:
    """One sample of one figure: a warm-up, then the measured wrk run and the CPU it took."""
    ensure_running(s, notes)
    if wait_quiet():
        log("waited for other processes on the machine to calm down")
    if args.warmup:
        wrk(s, setup.routes[route], args.warmup, setup.token, setup.ids_file)
    with CpuWatch(roots(), s) as cpu:
        r = wrk(s, setup.routes[route], args.duration, setup.token, setup.ids_file)
    r["foreign_cpu_pct"], r["machine_busy_pct"] = cpu.foreign_pct, cpu.busy_pct
    # CPU time of the server per request: steadier than req/s on a shared machine
    r["server_cpu_us_per_req"] = 1e6 * cpu.server_cpu_s / max(r["requests"], 1)
    log(
        f"round {rnd + 1} {s.name:9s} {route:6s} {r['rps']:8,.0f} req/s  "
        f"p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
        f"(others used {cpu.foreign_pct:4.1f}% of the CPUs)" + (f"  ERRORS {r['errors']}" if r["errors"] else "")
    )
    return r


def measure_noop(args: argparse.Namespace, servers: list[Server], setup: Setup, roots: Callable[[], list[int]]) -> dict:
    lim = next(s for s in servers if s.name == "limit")
    if args.warmup:
        wrk(lim, setup.routes["noop"], args.warmup, setup.token, setup.ids_file)
    with CpuWatch(roots()) as cpu:
        r = wrk(lim, setup.routes["noop"], args.duration, setup.token, setup.ids_file)
    r["foreign_cpu_pct"], r["machine_busy_pct"] = cpu.foreign_pct, cpu.busy_pct
    log(f"round 1 limit     noop   {r['rps']:8,.0f} req/s")
    return r


def summarize(samples: dict[str, list[dict]]) -> tuple[dict, dict]:
    """The figures (medians of their rounds) and the deep-page/page-1 p50 ratio per server."""
    figures = {k: {**median_of(v), "samples": v} for k, v in samples.items()}
    deep_ratio = {}
    for name in ("botkit-1w", "botkit-2w", "limit"):
        a, b = figures.get(f"{name}:deep"), figures.get(f"{name}:list")
        if a and b:
            deep_ratio[name] = a["p50_ms"] / b["p50_ms"]
    return figures, deep_ratio


def measure_jsonl(servers: list[Server], setup: Setup, notes: list[str]) -> dict:
    out = {}
    for s in servers:
        if not s.name.startswith("botkit"):
            continue
        ensure_running(s, notes)
        out[s.name] = jsonl_runs(s, setup)
    return out


def jsonl_runs(server: Server, setup: Setup) -> dict:
    """Three exports (fewer at the end of the time budget): their medians, or the first error."""
    runs = []
    for _ in range(3):
        try:
            runs.append(jsonl_export(server, setup.token, setup.seeded.dataset_id))
        except Exception as exc:  # report it in the table; the rest of the run stands
            j = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            log(f"jsonl {server.name}: {j['error']}")
            return j
        if time.monotonic() - STARTED > BUDGET_S - 20:
            break
    j = {
        "records_per_s": statistics.median(r["records_per_s"] for r in runs),
        "seconds": statistics.median(r["seconds"] for r in runs),
        "rss_growth_mb": max(r["rss_growth_mb"] for r in runs),
        "ok": all(r["ok"] for r in runs),
        "runs": len(runs),
        "samples": runs,
    }
    log(
        f"jsonl {server.name}: {j['records_per_s']:,.0f} records/s, RSS growth {j['rss_growth_mb']:.1f} MB, "
        f"complete={j['ok']}"
    )
    return j


def measure_engine(servers: list[Server], setup: Setup, notes: list[str]) -> dict | None:
    # PLUG-IN POINT: the completion-stream benchmark (bench/engine_stream.py), once the engine exists.
    log(f"completion streams: direct vs through botkit, then {engine_stream.CONCURRENT:,} at once")
    try:
        return engine_stream.measure(
            servers={s.name: s.base for s in servers}, token=setup.token, dsn=setup.seeded.dsn, work=WORK
        )
    except Exception as exc:  # report it; the rest of the run stands
        notes.append(f"completion-stream benchmark failed: {type(exc).__name__}: {exc}"[:300])
        return None


def measure_channels(servers: list[Server], setup: Setup, notes: list[str]) -> dict | None:
    log(f"channels: publish → subscriber on one process and across two, then {channels.IDLE:,} idle subscribers")
    one = next(s for s in servers if s.name == "botkit-1w")
    try:
        return channels.measure({s.name: s.base for s in servers}, setup.token, one.pids)
    except Exception as exc:  # report it; the rest of the run stands
        notes.append(f"channel benchmark failed: {type(exc).__name__}: {exc}"[:300])
        return None


def run_profiles(args: argparse.Namespace, servers: list[Server], setup: Setup, notes: list[str]) -> dict:
    profiles = {}
    for route in [r for r in args.profile.split(",") if r]:
        for s in servers:
            if s.name in ("botkit-1w", "limit") and route in s.routes:
                if time.monotonic() - STARTED > BUDGET_S - 15:
                    notes.append(f"skipped the profile of {s.name} {route} to stay in the time budget")
                    continue
                log(f"profiling {s.name} {route} with py-spy")
                profiles[f"{s.name}:{route}"] = profile(
                    s, route, setup.routes[route], max(args.duration, 5), setup.token, setup.ids_file
                )
    return profiles


def finish_results(res: dict, args: argparse.Namespace, setup: Setup, checks: dict, rounds_done: int) -> None:
    """The checks, the seed, the settings and the targets, after the measurements."""
    res["checks"] = checks
    res["seed"] = setup.seeded.summary()
    res["settings"] = {
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "postgres": pg_version(setup.seeded.dsn),
        "postgres_durability": "fsync, synchronous_commit and full_page_writes off",
        "wrk": wrk_version(),
        "threads": THREADS,
        "connections": CONNECTIONS,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "rounds_done": rounds_done,
        "commit": git_commit(),
        "pool_size": 10,
    }
    if quiet_waited():
        res["notes"].append(f"waited {quiet_waited():.0f} s in all for other processes to calm down")
    res["finished_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    res["targets"] = targets(res)
    res["elapsed_s"] = time.monotonic() - STARTED


def write_report(res: dict) -> None:
    """results/latest.{json,md} and the same under a UTC timestamp; the table and the profiles on stdout."""
    md = report(res)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    for name in ("latest", stamp):
        (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
        (RESULTS / f"{name}.md").write_text(md)
    print(md)
    print_profiles(res["profiles"])
    log(f"done in {res['elapsed_s']:.0f}s; wrote {RESULTS.relative_to(ROOT)}/latest.md and latest.json")


def print_profiles(profiles: dict) -> None:
    for key, p in profiles.items():
        summ = p["summary"]
        print(
            f"## profile {key}: {p['load']['rps']:,.0f} req/s under py-spy, {summ.get('samples')} samples "
            f"({p['file']})\n\nself %:"
        )
        for f, pct in summ.get("self_pct", [])[:15]:
            print(f"  {pct:5.1f}  {f}")
        print("inclusive %:")
        for f, pct in summ.get("inclusive_pct", [])[:25]:
            print(f"  {pct:5.1f}  {f}")
        print()


def stop_all(servers: list[Server], pg: EmbeddedPostgres) -> None:
    for s in reversed(servers):
        try:
            s.stop()
        except Exception as exc:  # keep stopping the others
            log(f"stopping {s.name} failed: {exc}")
    try:
        pg.stop()
    except Exception as exc:
        log(f"stopping PostgreSQL failed: {exc}")


# --- main -------------------------------------------------------------------------


def measure_retrieval(setup: Setup, notes: list[str]) -> dict | None:
    log(f"retrieval: dataset search on {retrieval.PASSAGES:,} passages of real text")
    try:
        return retrieval.measure(setup.seeded.dsn)
    except Exception as exc:  # report it; the rest of the run stands
        notes.append(f"retrieval benchmark failed: {type(exc).__name__}: {exc}"[:300])
        return None


def measure_tasks(pg: EmbeddedPostgres, setup: Setup, notes: list[str]) -> dict | None:
    from botkit.store.embedded import running_pid

    log(f"tasks: {tasks.EXECUTIONS:,} queued executions drained by {', '.join(map(str, tasks.WORKERS))} workers")
    try:
        return tasks.measure(setup.seeded.dsn, running_pid(pg.data))
    except Exception as exc:  # report it; the rest of the run stands
        notes.append(f"task benchmark failed: {type(exc).__name__}: {exc}"[:300])
        return None


def measure_files(servers: list[Server], setup: Setup, notes: list[str]) -> dict | None:
    log(
        f"files: {files.SIZE // 2**20} MB up and down through botkit, a bare server and directly, "
        f"then a {files.PDF_PAGES}-page PDF"
    )
    one = next(s for s in servers if s.name == "botkit-1w")
    try:
        return files.measure(one.base, setup.token, one.pids, WORK / "botkit" / "files")
    except Exception as exc:  # report it; the rest of the run stands
        notes.append(f"file benchmark failed: {type(exc).__name__}: {exc}"[:300])
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals(signal.SIGTERM, signal.SIGHUP)
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(PG_DIR, fast=True)
    servers: list[Server] = []
    res: dict = {"notes": []}
    try:
        setup = start_postgres_and_seed(pg)
        servers.extend(make_servers(args, setup.seeded.dsn))
        start_servers(servers)
        checks = run_checks(servers, setup)
        samples, rounds_done = measure_rounds(
            args, servers, setup, functools.partial(cpu_roots, pg, servers), res["notes"]
        )
        res["figures"], res["deep_ratio"] = summarize(samples)
        res["jsonl"] = measure_jsonl(servers, setup, res["notes"])
        res["engine"] = measure_engine(servers, setup, res["notes"])
        res["channels"] = measure_channels(servers, setup, res["notes"])
        res["files"] = measure_files(servers, setup, res["notes"])
        res["tasks"] = measure_tasks(pg, setup, res["notes"])
        res["retrieval"] = measure_retrieval(setup, res["notes"])
        res["profiles"] = run_profiles(args, servers, setup, res["notes"])
        finish_results(res, args, setup, checks, rounds_done)
        write_report(res)
        log("reliability (a noisy tenant, slow clients, bursts against limits, a PostgreSQL restart): make soak")
        return 0
    finally:
        stop_all(servers, pg)


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pg_version(dsn: str) -> str:
    async def get() -> str:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()

    try:
        return asyncio.run(get())
    except Exception:
        return "?"


def wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=5)
        return (out.stdout + out.stderr).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
