"""`make soak` (issue 15): botkit under a noisy tenant, slow clients, concurrent
creates against limits and a PostgreSQL restart, on an embedded PostgreSQL of its own
(so that it may restart it) and one `botkit serve` process with the settings a user
gets by default. Each figure is printed against its target; the load generators run in
processes of their own, so that the client measuring tenant B shares no event loop
with the load.

- noisy tenant: account A keeps SEARCHERS dataset searches running at once on a dataset
  of real text (more than A's share of the pool); account B's fetches, alone and under A
  (p50, p99, failures), /healthz under A, and A's answers (200, or 503 with Retry-After;
  never a 500).
- slow clients: SLOW sockets sending a request head a line at a time, each reconnecting
  when the server closes it (the head timeout); the server's RSS over idle and B's p99.
- bursts: BURST concurrent creates of each limited kind in a partner's child account:
  what was created against the limit.
- a PostgreSQL restart, then an outage of OUTAGE_S, under READERS concurrent readers:
  answers by status, and the time from PostgreSQL accepting connections again until
  every reader is answered 200 again.

Every phase is bounded in count and time; the whole run takes about three minutes.

    .venv/bin/python bench/soak.py          # make soak; --json also prints the figures"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
os.environ.setdefault("BOTKIT_EMBEDDINGS_MODEL", "off")  # no background embedding takes the CPU

import retrieval  # noqa: E402
import seed as seeding  # noqa: E402
from procs import botkit_env, exit_on_signals, free_port, rss_kb, start_logged, stop_group, wait_healthy  # noqa: E402

from botkit.store.embedded import EmbeddedPostgres  # noqa: E402

WORK = ROOT / ".data" / "soak"
BOTKIT = ROOT / ".venv" / "bin" / "botkit"
DB_NAME = "botkit_soak"
PASSAGES = 50_000  # tenant A's dataset
SEARCHERS = 40  # A's searches at once (the pool is 10; A's share is 5)
NOISY_S = 20.0
ALONE_S = 8.0
B_GAP_S = 0.01  # B sends a fetch, waits this long, sends the next
SLOW = 2_000
SLOW_S = 30.0
BURST = 50
READERS = 20
OUTAGE_S = 3.0
LIMITS = {  # a child's limit per kind, the route that creates one, its body, the list that counts them
    "bots": (5, "bot/create", {}, "bot/list"),
    "datasets": (3, "dataset/create", {}, "dataset/list"),
    "conversations": (5, "conversation/create", {}, "conversation/list"),
    "records": (10, "dataset/{dataset}/record/create", {"text": "a record"}, "dataset/{dataset}/record/list"),
    "messages": (
        20,
        "conversation/{conversation}/message/create",
        {"type": "user", "text": "hi"},
        "conversation/{conversation}/message/list",
    ),
}
TARGETS = {
    "b_failures": 0,  # B's requests answered other than 200, in every phase
    "health_failures": 0,  # /healthz answers other than 200 while A saturates its share
    "a_500s": 0,  # A's answers of 500 (503 with Retry-After is the answer to a full share)
    "slow_rss_growth_mb": 100,  # the server's RSS over idle, holding SLOW slow clients (below)
    "restart_non_200": 0,  # after a quick restart, every request 200 (stale connections are replaced)
    "outage_500s": 0,  # during an outage: 503 with Retry-After, never 500
    "outage_answer_s": 1.0,  # ... at once (requests sent from 0.5 s into the outage)
    "recovery_s": 5.0,  # PostgreSQL back → every reader 200 again (at most)
}


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# --- the load generators (each in a process of its own) ----------------------------------


def _searches(base: str, token: str, dataset: str, queries: list[str], seconds: float, out) -> None:
    """Tenant A: SEARCHERS searches at once, each followed at once by the next."""

    async def main() -> Counter:
        seen: Counter = Counter()
        limits = httpx.Limits(max_connections=SEARCHERS)
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as c:

            async def one(k: int) -> None:
                rnd = random.Random(k)
                while time.monotonic() < deadline:
                    try:
                        r = await c.post(f"/v1/dataset/{dataset}/search", json={"search": rnd.choice(queries)})
                        seen[r.status_code] += 1
                        if r.status_code == 503 and not r.headers.get("retry-after"):
                            seen["503 without Retry-After"] += 1
                    except httpx.HTTPError as exc:
                        seen[type(exc).__name__] += 1

            await asyncio.gather(*(one(k) for k in range(SEARCHERS)))
        return seen

    out.put(dict(asyncio.run(main())))


def _slow_clients(port: int, seconds: float, out) -> None:
    """SLOW sockets sending a request head one header line a second; a socket the server
    closes is opened again. Reports how many were open when the window ended, and how
    many the server closed (its head timeout) in all."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (SLOW + 512, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    async def main() -> dict:
        deadline = time.monotonic() + seconds
        stats = Counter()
        open_now = [0]

        async def client(k: int) -> None:
            await asyncio.sleep(k * 0.002)  # 2,000 connects over 4 s, not in one instant
            while time.monotonic() < deadline:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    stats["connect failed"] += 1
                    await asyncio.sleep(0.5)
                    continue
                open_now[0] += 1
                try:
                    writer.write(b"GET /v1/bot/list HTTP/1.1\r\nHost: soak\r\n")
                    while time.monotonic() < deadline:
                        await writer.drain()
                        try:
                            if await asyncio.wait_for(reader.read(1024), 1.0) == b"" or reader.at_eof():
                                stats["closed by the server"] += 1
                                break
                            stats["answered"] += 1  # a 408 before the close
                        except TimeoutError:
                            writer.write(b"X-Slow: %d\r\n" % k)
                except OSError:
                    stats["reset"] += 1
                finally:
                    open_now[0] -= 1
                    writer.close()

        async def sample() -> None:
            while time.monotonic() < deadline - 1:
                await asyncio.sleep(1)
                stats["open, sampled"] = max(stats["open, sampled"], open_now[0])

        await asyncio.gather(sample(), *(client(k) for k in range(SLOW)))
        return dict(stats)

    out.put(asyncio.run(main()))


def in_process(target, *args) -> tuple[multiprocessing.Process, multiprocessing.Queue]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, out), daemon=True)
    proc.start()
    return proc, out


# --- tenant B, measured in this process ----------------------------------------------------


def b_fetches(base: str, token: str, bot: str, seconds: float, health: bool = False) -> dict:
    """B's fetches one after another for `seconds` (and /healthz between them)."""
    times: list[float] = []
    failures: Counter = Counter()
    health_failures = 0
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                r = c.get(f"/v1/bot/{bot}/fetch")
                if r.status_code != 200:
                    failures[r.status_code] += 1
            except httpx.HTTPError as exc:
                failures[type(exc).__name__] += 1
            times.append(time.perf_counter() - t0)
            if health:
                try:
                    health_failures += c.get("/healthz", timeout=5).status_code != 200
                except httpx.HTTPError:
                    health_failures += 1
            time.sleep(B_GAP_S)
    return {
        "requests": len(times),
        "p50_ms": 1000 * pct(times, 0.5),
        "p99_ms": 1000 * pct(times, 0.99),
        "failures": dict(failures),
        "health_failures": health_failures,
    }


# --- the phases -------------------------------------------------------------------------


async def load_dataset(dsn: str, account_id: str, passages: list[str]) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        dataset_id, _ = await seeding.insert_dataset(conn, account_id, "noisy", passages)
        await conn.execute("VACUUM ANALYZE records")
        return dataset_id
    finally:
        await conn.close()


def noisy_tenant(base: str, dsn: str) -> dict:
    passages = retrieval.corpus(PASSAGES)
    a_account, a_token = asyncio.run(seeding.fresh_account(dsn, "tenant A"))
    _, b_token = asyncio.run(seeding.fresh_account(dsn, "tenant B"))
    dataset = asyncio.run(load_dataset(dsn, a_account, passages))
    bot = httpx.post(base + "/v1/bot/create", json={"name": "B"}, headers={"Authorization": f"Bearer {b_token}"})
    bot_id = bot.json()["id"]
    rnd = random.Random(15)
    queries = [" ".join(rnd.sample(p.split(), min(4, len(p.split())))) for p in rnd.sample(passages, 500)]
    log(f"noisy tenant: B alone for {ALONE_S:g} s")
    alone = b_fetches(base, b_token, bot_id, ALONE_S)
    log(f"noisy tenant: A runs {SEARCHERS} searches at once on {len(passages):,} passages for {NOISY_S:g} s")
    proc, out = in_process(_searches, base, a_token, dataset, queries, NOISY_S + 2)
    time.sleep(2)  # A's searches are running
    under = b_fetches(base, b_token, bot_id, NOISY_S - 2, health=True)
    a = out.get(timeout=NOISY_S + 120)
    proc.join(10)
    return {"alone": alone, "under_a": under, "a_answers": a, "passages": len(passages)}


def slow_clients(base: str, port: int, pid: int, dsn: str) -> dict:
    _, token = asyncio.run(seeding.fresh_account(dsn, "slow clients' neighbour"))
    bot_id = httpx.post(base + "/v1/bot/create", json={}, headers={"Authorization": f"Bearer {token}"}).json()["id"]
    before = b_fetches(base, token, bot_id, ALONE_S)
    idle_kb = rss_kb(pid)
    log(f"slow clients: {SLOW:,} sockets for {SLOW_S:g} s (server RSS idle {idle_kb / 1024:.0f} MB)")
    proc, out = in_process(_slow_clients, port, SLOW_S)
    peak = [idle_kb]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.25):
            peak[0] = max(peak[0], rss_kb(pid))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(6)  # every socket is open now
    during = b_fetches(base, token, bot_id, SLOW_S - 8)
    stats = out.get(timeout=SLOW_S + 60)
    stop.set()
    watcher.join()
    proc.join(10)
    return {
        "idle_rss_mb": idle_kb / 1024,
        "peak_rss_mb": peak[0] / 1024,
        "rss_growth_mb": (peak[0] - idle_kb) / 1024,
        "others_before": before,
        "others_during": during,
        "clients": stats,
    }


async def _burst(base: str, headers: dict, path: str, body: dict) -> Counter:
    limits = httpx.Limits(max_connections=BURST)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as c:
        answers = await asyncio.gather(*(c.post(path, json=body) for _ in range(BURST)), return_exceptions=True)
    return Counter(r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in answers)


def bursts(base: str, dsn: str) -> dict:
    _, token = asyncio.run(seeding.fresh_account(dsn, "partner"))
    out = {}
    for kind, (limit, path, body, list_path) in LIMITS.items():
        limits = {"database": {kind: limit}} if kind in ("datasets", "records") else {kind: limit}
        with httpx.Client(base_url=base + "/v1/", headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            child = c.post("partner/user/create", json={"limits": limits}).json()["id"]
            as_child = {"Authorization": f"Bearer {token}", "X-RunAs-User-Id": child}
            c.headers.update(as_child)
            parents = {}
            if "{dataset}" in path:
                parents["dataset"] = c.post("dataset/create", json={}).json()["id"]
            if "{conversation}" in path:
                parents["conversation"] = c.post("conversation/create", json={}).json()["id"]
            answers = asyncio.run(_burst(base + "/v1/", as_child, path.format(**parents), body))
            listed = c.get(list_path.format(**parents), params={"take": 100}).json()["items"]
        out[kind] = {"limit": limit, "created": len(listed), "answers": dict(answers)}
    return out


def restart(base: str, dsn: str, pg: EmbeddedPostgres) -> dict:
    log("PostgreSQL: a quick restart, then an outage")
    _, token = asyncio.run(seeding.fresh_account(dsn, "restart"))
    headers = {"Authorization": f"Bearer {token}"}
    bot_id = httpx.post(base + "/v1/bot/create", json={}, headers=headers).json()["id"]
    marks: dict[str, float] = {}
    answers: list[tuple[float, float, int | str]] = []  # (sent, answered, status) of each request

    async def readers(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15) as c:

            async def one() -> None:
                while time.monotonic() < deadline:
                    sent = time.monotonic()
                    try:
                        answer = await c.get(f"/v1/bot/{bot_id}/fetch")
                        status: int | str = answer.status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    answers.append((sent, time.monotonic(), status))
                    await asyncio.sleep(0.02)

            await asyncio.gather(*(one() for _ in range(READERS)))

    def faults() -> None:
        time.sleep(3)
        marks["restart"] = time.monotonic()
        pg.stop()
        pg.start()
        marks["restarted"] = time.monotonic()
        time.sleep(4)
        marks["outage"] = time.monotonic()
        pg.stop()
        time.sleep(OUTAGE_S)
        pg.start()
        marks["back"] = time.monotonic()

    # The faults in this thread: the embedded PostgreSQL dies with the thread that started
    # it (PR_SET_PDEATHSIG), so the readers run in another.
    thread = threading.Thread(target=asyncio.run, args=(readers(3 + 4 + OUTAGE_S + 12),))
    thread.start()
    faults()
    thread.join()

    def count(t0: float, t1: float) -> dict:
        """The requests sent and answered between t0 and t1."""
        return dict(Counter(s for sent, got, s in answers if t0 <= sent and got < t1))

    failed_after_back = [sent for sent, _, s in answers if sent >= marks["back"] and s != 200]
    recovery = (max(failed_after_back) - marks["back"]) if failed_after_back else 0.0
    return {
        "restart_answers": dict(
            Counter(s for sent, got, s in answers if got >= marks["restart"] and sent < marks["restarted"])
        ),
        "restarted_answers": count(marks["restarted"], marks["outage"]),
        "outage_answers": count(marks["outage"], marks["back"]),
        "all_answers": dict(Counter(s for *_, s in answers)),
        "outage_slowest_s": max(
            (got - sent for sent, got, _ in answers if marks["outage"] + 0.5 <= sent < marks["back"]), default=0.0
        ),
        "after_answers": count(marks["back"], float("inf")),
        "restart_s": marks["restarted"] - marks["restart"],
        "recovery_s": recovery,
    }


# --- the report ------------------------------------------------------------------------


def _fails(d: dict) -> int:
    return sum(d["failures"].values())


def rows(res: dict) -> list[tuple[str, str, str, bool]]:
    out = []
    if "noisy" in res:
        out += _noisy_rows(res["noisy"])
    if "slow" in res:
        out += _slow_rows(res["slow"])
    for kind, v in res.get("bursts", {}).items():
        out.append(
            (
                f"{BURST}-way burst of {kind}: created / limit",
                f"{v['created']} / {v['limit']}",
                "= limit",
                v["created"] == v["limit"] and set(v["answers"]) <= {200, 429},
            )
        )
    if "restart" in res:
        out += _restart_rows(res["restart"])
    return out


def _noisy_rows(n: dict) -> list[tuple[str, str, str, bool]]:
    a = n["a_answers"]
    return [
        (
            "noisy tenant: B fails while A saturates its share",
            f"{_fails(n['under_a'])} of {n['under_a']['requests']}",
            "0",
            _fails(n["under_a"]) <= TARGETS["b_failures"],
        ),
        (
            "noisy tenant: /healthz fails while A saturates its share",
            str(n["under_a"]["health_failures"]),
            "0",
            n["under_a"]["health_failures"] <= TARGETS["health_failures"],
        ),
        (
            "noisy tenant: A's 500s (503 + Retry-After is its answer past the share)",
            f"{a.get(500, 0)} (200: {a.get(200, 0)}, 503: {a.get(503, 0)})",
            "0",
            a.get(500, 0) <= TARGETS["a_500s"] and not a.get("503 without Retry-After"),
        ),
        (
            "noisy tenant: B's p50 / p99 under A (alone)",
            f"{n['under_a']['p50_ms']:.1f} / {n['under_a']['p99_ms']:.1f} ms "
            f"({n['alone']['p50_ms']:.1f} / {n['alone']['p99_ms']:.1f}; p99 ×{n['under_a']['p99_ms'] / n['alone']['p99_ms']:.1f})",
            "reported",
            True,
        ),
    ]


def _slow_rows(s: dict) -> list[tuple[str, str, str, bool]]:
    return [
        (
            f"{SLOW:,} slow clients: server RSS growth",
            f"{s['rss_growth_mb']:.1f} MB (idle {s['idle_rss_mb']:.0f} MB, {s['clients'].get('open, sampled', 0):,} open)",
            f"< {TARGETS['slow_rss_growth_mb']} MB",
            s["rss_growth_mb"] < TARGETS["slow_rss_growth_mb"],
        ),
        (
            f"{SLOW:,} slow clients: others fail",
            f"{_fails(s['others_during'])} of {s['others_during']['requests']}",
            "0",
            _fails(s["others_during"]) <= TARGETS["b_failures"],
        ),
        (
            f"{SLOW:,} slow clients: others' p50 / p99 (before)",
            f"{s['others_during']['p50_ms']:.1f} / {s['others_during']['p99_ms']:.1f} ms "
            f"({s['others_before']['p50_ms']:.1f} / {s['others_before']['p99_ms']:.1f}; "
            f"p99 ×{s['others_during']['p99_ms'] / s['others_before']['p99_ms']:.1f})",
            "reported",
            True,
        ),
    ]


def _restart_rows(r: dict) -> list[tuple[str, str, str, bool]]:
    during, after = r["restart_answers"], r["restarted_answers"]
    after_bad = sum(c for k, c in after.items() if k != 200)
    return [
        (
            f"PostgreSQL quick restart ({r['restart_s']:.1f} s): answers during it",
            json.dumps(during),
            "200 or 503, no 500",
            set(during) <= {200, 503},
        ),
        (
            "PostgreSQL quick restart: answers after it other than 200 (stale connections)",
            f"{after_bad} of {sum(after.values())} ({json.dumps(after)})",
            "0",
            after_bad <= TARGETS["restart_non_200"],
        ),
        (
            f"PostgreSQL restart and outage of {OUTAGE_S:g} s: 500s (answers in the outage)",
            f"{r['all_answers'].get(500, 0)} ({json.dumps(r['outage_answers'])})",
            "0",
            r["all_answers"].get(500, 0) <= TARGETS["outage_500s"],
        ),
        (
            "PostgreSQL outage: the slowest answer (a 503 comes at once, not after a wait)",
            f"{r['outage_slowest_s']:.2f} s",
            f"≤ {TARGETS['outage_answer_s']:g} s",
            r["outage_slowest_s"] <= TARGETS["outage_answer_s"],
        ),
        (
            "PostgreSQL back: time until every reader is answered 200",
            f"{r['recovery_s']:.2f} s",
            f"≤ {TARGETS['recovery_s']:g} s",
            r["recovery_s"] <= TARGETS["recovery_s"],
        ),
    ]


def report(res: dict) -> str:
    lines = ["| figure | measured | target | met |", "|---|---|---|---|"]
    for name, measured, target, met in rows(res):
        lines.append(f"| {name} | {measured} | {target} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--phases", default="noisy,slow,bursts,restart", help="which phases (default: all)")
    args = parser.parse_args(argv)
    exit_on_signals(2, 15)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # the server inherits it
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(ROOT / ".data" / "soak-postgres", fast=True)
    server = None
    try:
        dsn = asyncio.run(seeding.fresh_database(pg.start(), DB_NAME))
        port = free_port()
        env = botkit_env(dsn, WORK / "botkit", PORT=str(port), HOST="127.0.0.1", WORKERS="1")
        env["BOTKIT_LOG_LEVEL"] = "warning"
        server = start_logged([str(BOTKIT), "serve"], env, WORK / "server.log")
        wait_healthy(port, server, WORK / "server.log")
        base = f"http://127.0.0.1:{port}"
        phases = {
            "noisy": lambda: noisy_tenant(base, dsn),
            "slow": lambda: slow_clients(base, port, server.pid, dsn),
            "bursts": lambda: bursts(base, dsn),
            "restart": lambda: restart(base, dsn, pg),
        }
        res: dict = {name: phases[name]() for name in args.phases.split(",")}
        res["seconds"] = time.monotonic() - started
        table = report(res)
        print()
        print(table)
        if set(phases) <= set(res):  # a whole run: bench/results/soak.md is the latest
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            (BENCH / "results").mkdir(exist_ok=True)
            (BENCH / "results" / "soak.md").write_text(f"make soak, {when}, {res['seconds']:.0f} s\n\n{table}\n")
        print(f"\nsoak: {res['seconds']:.0f} s; the server's log: {WORK / 'server.log'}")
        if args.json:
            print(json.dumps(res, indent=2, default=str))
        return 0 if all(met for *_, met in rows(res)) else 1
    finally:
        if server is not None:
            stop_group(server)
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
