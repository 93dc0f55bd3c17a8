"""A noisy tenant and a failing database (issue 15, findings 1 and 5): one account's
heavy work cannot take the whole pool, slow statements end in a clear 503 with
Retry-After rather than a 500 or a hang, /healthz answers while the pool is busy, and
a PostgreSQL restart costs no request a 500."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter

import asyncpg
import httpx
import pytest

from botkit.config import data_dir
from botkit.store.embedded import EmbeddedPostgres
from botkit.store.migrate import migrate
from botkit.testing import assert_error, new_account, start_app

QUIET = {"rate_limit": 0, "rate_limit_account": 0, "rate_limit_messages": 0, "rate_limit_history": 0}


def _client(srv, secret: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}, timeout=30)


async def _searches(srv, secret: str, dataset: str, n: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=srv.url + "/v1/", headers=headers, timeout=60, limits=limits) as c:
        return await asyncio.gather(
            *(c.post(f"dataset/{dataset}/search", json={"search": f"noisy tenant {k}"}) for k in range(n))
        )


def test_a_noisy_tenant_cannot_starve_the_others(database):
    """Tenant A's searches stuck behind a table lock hold at most A's share of the
    pool; B's plain requests and the health check go on, and A gets 503s that say
    when to retry — never a 500."""
    srv = start_app(database, pool_size=6, pool_timeout=1, statement_timeout=1.5, **QUIET)
    a_account, a_secret = asyncio.run(new_account(database, "tenant A", None))
    _, b_secret = asyncio.run(new_account(database, "tenant B", None))
    a, b = _client(srv, a_secret), _client(srv, b_secret)
    try:
        dataset = a.post("dataset/create", json={}).json()["id"]
        a.post(f"dataset/{dataset}/record/create", json={"text": "a noisy tenant's record"})
        bot = b.post("bot/create", json={"name": "B's bot"}).json()["id"]

        async def scenario():
            lock = await asyncpg.connect(database)
            await lock.execute("BEGIN; LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
            try:
                noisy = asyncio.ensure_future(_searches(srv, a_secret, dataset, 20))
                await asyncio.sleep(0.3)  # A's searches are waiting on the lock now
                other = []
                async with httpx.AsyncClient(base_url=srv.url, timeout=10) as c:
                    for _ in range(10):  # with a pool timeout of 1 s, waiting behind A would be a 503
                        fetched = await c.get(f"/v1/bot/{bot}/fetch", headers={"Authorization": f"Bearer {b_secret}"})
                        health = await c.get("/healthz")
                        ready = await c.get("/readyz")
                        other.append((fetched.status_code, health.status_code, ready.status_code))
                return await noisy, other
            finally:
                await lock.execute("ROLLBACK")
                await lock.close()

        answers, other = asyncio.run(scenario())
        assert other == [(200, 200, 200)] * 10
        for r in answers:
            body = assert_error(r, 503, "SERVICE_UNAVAILABLE")
            assert int(r.headers["retry-after"]) >= 1, body
        assert {r.json()["message"] for r in answers} <= {
            "the database took too long to answer (the statement timeout)",
            "the account has 3 heavy requests (searches, completions, exports) running on this server; retry when one ends",
        }
        # and once the lock is gone, A searches again
        assert a.post(f"dataset/{dataset}/search", json={"search": "noisy"}).status_code == 200
    finally:
        a.close()
        b.close()
        srv.stop()


@pytest.fixture
def own_postgres():
    """A PostgreSQL of this test's own, to restart and stop."""
    pg = EmbeddedPostgres(data_dir() / f"test-restart-{time.monotonic_ns()}", fast=True)
    dsn = pg.start()
    asyncio.run(migrate(dsn))
    yield pg, dsn
    pg.remove()


async def _burst(srv, secret: str, bot: str, n: int) -> list[int]:
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=srv.url + "/v1/", headers=headers, timeout=30) as c:
        answers = await asyncio.gather(*(c.get(f"bot/{bot}/fetch") for _ in range(n)), return_exceptions=True)
    return [r.status_code if isinstance(r, httpx.Response) else -1 for r in answers]


def _reading(srv, secret: str, bot: str, stop: threading.Event, seen: Counter) -> threading.Thread:
    """10 readers in a thread of their own until `stop`, their answers' statuses counted."""

    async def readers() -> None:
        headers = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(base_url=srv.url + "/v1/", headers=headers, timeout=20) as c:

            async def one() -> None:
                while not stop.is_set():
                    try:
                        seen[(await c.get(f"bot/{bot}/fetch")).status_code] += 1
                    except httpx.HTTPError as exc:
                        seen[type(exc).__name__] += 1
                    await asyncio.sleep(0.005)

            await asyncio.gather(*(one() for _ in range(10)))

    thread = threading.Thread(target=asyncio.run, args=(readers(),))
    thread.start()
    return thread


def test_a_restart_under_load_answers_200_or_503_and_an_outage_503_at_once(own_postgres):
    """Readers all through a restart and an outage (make soak found these): a connection
    the shutdown broke mid-operation is a retried read or a 503, never a 500 nor reused;
    in an outage a request is answered 503 at once, not after the pool's wait (60 s here:
    the readers' 20 s timeout would show it); once the database is back, all 200."""
    pg, dsn = own_postgres
    srv = start_app(dsn, pool_size=10, pool_timeout=60, auth_cache_seconds=0, **QUIET)
    try:
        _, secret = asyncio.run(new_account(dsn, "restart under load", None))
        with _client(srv, secret) as c:
            bot = c.post("bot/create", json={}).json()["id"]
            stop, seen = threading.Event(), Counter()
            thread = _reading(srv, secret, bot, stop, seen)
            try:
                time.sleep(0.5)
                for _ in range(3):  # the embedded PostgreSQL dies with the thread that started it: this one
                    pg.stop()
                    time.sleep(0.3)
                    pg.start()
                    time.sleep(0.5)
                pg.stop()
                time.sleep(2)  # an outage: every reader is answered in it (503s), none waits
                outage = Counter(seen)
                time.sleep(0.5)
                assert sum(seen.values()) > sum(outage.values()) + 10, "the readers waited in the outage"
                pg.start()
            finally:
                stop.set()
                thread.join()
        assert set(seen) <= {200, 503}, seen
        assert seen[200] and seen[503]
        assert asyncio.run(_burst(srv, secret, bot, 20)) == [200] * 20
    finally:
        srv.stop()


def test_a_database_restart_costs_no_500(own_postgres):
    pg, dsn = own_postgres
    srv = start_app(dsn, pool_size=10, pool_timeout=1, auth_cache_seconds=0, **QUIET)
    try:
        _, secret = asyncio.run(new_account(dsn, "restart", None))
        with _client(srv, secret) as c:
            bot = c.post("bot/create", json={}).json()["id"]
            assert asyncio.run(_burst(srv, secret, bot, 20)) == [200] * 20  # every pooled connection used
            # a quick restart: the pool's connections are all stale now
            pg.stop()
            assert pg.start() == dsn
            assert asyncio.run(_burst(srv, secret, bot, 20)) == [200] * 20
            # an outage: clear 503s with Retry-After, quickly, and /readyz says so; /healthz is alive
            pg.stop()
            down = c.get(f"bot/{bot}/fetch")
            assert_error(down, 503, "SERVICE_UNAVAILABLE")
            assert int(down.headers["retry-after"]) >= 1
            assert_error(c.post("bot/create", json={}), 503, "SERVICE_UNAVAILABLE")
            assert httpx.get(srv.url + "/healthz").status_code == 200
            ready = httpx.get(srv.url + "/readyz")
            assert_error(ready, 503, "SERVICE_UNAVAILABLE")
            assert ready.headers["retry-after"]
            # back: the pool reconnects by itself
            pg.start()
            deadline = time.monotonic() + 20
            while c.get(f"bot/{bot}/fetch").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert asyncio.run(_burst(srv, secret, bot, 20)) == [200] * 20
    finally:
        srv.stop()


# --- slow and huge clients (finding 4): no token needed to be refused ----------------------


@pytest.fixture(scope="module")
def strict(database):
    srv = start_app(
        database,
        head_timeout=0.5,
        body_timeout=0.5,
        keepalive_timeout=0.5,
        max_connections=50,
        max_head_bytes=8192,
        max_headers=20,
        max_url_bytes=1024,
        **QUIET,
    )
    yield srv
    srv.stop()


def _raw(srv, first: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    if first:
        try:
            s.sendall(first)
        except OSError:  # the server closed while the client was still sending
            pass
    return s


def _answer(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    finally:
        s.close()
    return got


def _refused(answer: bytes, status: int, code: str) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert json.loads(body)["code"] == code
    assert b"connection: close" in head.lower()


@pytest.mark.parametrize("garbage", [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"\x00\xff\r\n\r\n"])
def test_what_is_not_http_is_a_json_400(strict, garbage):
    """Was uvicorn's plain-text "Invalid HTTP request received.": every error is {message, code}."""
    _refused(_answer(_raw(strict, garbage)), 400, "BAD_REQUEST")


def test_huge_heads_are_refused_before_they_are_read(strict):
    _refused(
        _answer(_raw(strict, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20_000_000)),
        431,
        "REQUEST_HEADER_FIELDS_TOO_LARGE",
    )
    many = b"".join(b"X-%d: 1\r\n" % n for n in range(30))
    _refused(
        _answer(_raw(strict, b"GET /healthz HTTP/1.1\r\n" + many + b"\r\n")), 431, "REQUEST_HEADER_FIELDS_TOO_LARGE"
    )
    _refused(_answer(_raw(strict, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n")), 414, "URI_TOO_LONG")
    # within the limits, on the same server: answered
    fine = _answer(
        _raw(strict, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"X-1: 1\r\n" * 15 + b"\r\n")
    )
    assert fine.startswith(b"HTTP/1.1 200"), fine[:200]


def test_slow_heads_bodies_and_idle_sockets_are_closed(strict, make_api):
    # no byte at all, or a head that never ends: 408, closed
    _refused(_answer(_raw(strict)), 408, "REQUEST_TIMEOUT")
    _refused(_answer(_raw(strict, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")), 408, "REQUEST_TIMEOUT")
    # a body that stalls: closed (an authenticated request, so that the body is read)
    token = make_api().token.encode()
    stalled = _raw(
        strict,
        b"POST /v1/bot/create HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + b"\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"name": ',
    )
    assert _answer(stalled) == b""  # closed under the waiting request, which answers nobody
    # a keep-alive connection left idle after its answer: closed
    idle = _raw(strict, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = _answer(idle)
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1") == 1


def test_connections_past_the_cap_are_closed_at_once(strict):
    sockets = [_raw(strict) for _ in range(60)]
    answers = [_answer(s) for s in sockets]
    timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408")]
    assert len(timed_out) == 50 and answers.count(b"") == 10, [a[:20] for a in answers]
