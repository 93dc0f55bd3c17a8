"""engine/fetch.py against real HTTP servers on 127.0.0.1 (raw asyncio servers started
here, so a test can misbehave on purpose): what is refused before and after DNS
resolution and on every redirect, the pinning of the checked address, the bounds
(size, time, redirects) and the response's fields. Nothing needs the internet: names
resolve through /etc/hosts (localhost) or a resolver the test gives."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from botkit.engine.fetch import (
    ALLOW_SETTING,
    FetchBadUrl,
    FetchError,
    FetchFailed,
    FetchPolicy,
    FetchRefused,
    FetchResponse,
    FetchStatus,
    FetchTimeout,
    FetchTooLarge,
    FetchTooManyRedirects,
    fetch,
    parse_allow,
)
from botkit.errors import BadRequest, ContentTooLarge

LOOPBACK = FetchPolicy.parse("127.0.0.1/32", total_timeout=5)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


Handler = Callable[[Seen, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    port: int
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0


async def respond(
    writer: asyncio.StreamWriter,
    status: int = 200,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    length: bool = True,
) -> None:
    head = {"Connection": "close", **({"Content-Length": str(len(body))} if length else {}), **(headers or {})}
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in head.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


@asynccontextmanager
async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """An HTTP/1.1 server on 127.0.0.1 that reads one request a connection, records it
    and lets `handler` answer (or not), then closes."""
    tasks: set[asyncio.Task] = set()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        server.connections += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
            seen = Seen(head[0].split(" ")[1], {k.lower(): v for k, v in headers.items()})
            server.seen.append(seen)
            await handler(seen, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()

    srv = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=ssl_context)
    server = Server(port=srv.sockets[0].getsockname()[1])
    try:
        yield server
    finally:
        srv.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await srv.wait_closed()


async def ok(seen: Seen, writer: asyncio.StreamWriter) -> None:
    await respond(writer, body=b"hello", headers={"Content-Type": "text/plain"})


def resolver(table: dict[str, list[str]], calls: list[str] | None = None):
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return resolve


async def get(
    url: str, policy: FetchPolicy | None = None, max_bytes: int = 1 << 20, **kw
) -> tuple[FetchResponse, bytes]:
    async with fetch(url, policy, max_bytes=max_bytes, **kw) as r:
        return r, await r.read()


def run(coro):
    return asyncio.run(coro)


# --- what is refused ---------------------------------------------------------------


def test_loopback_refused_by_default_and_fetched_when_allowed():
    async def main():
        async with serve(ok) as s:
            with pytest.raises(FetchRefused) as refused:
                await get(f"http://127.0.0.1:{s.port}/x")
            assert s.connections == 0
            assert "127.0.0.1 is a loopback address" in refused.value.message and ALLOW_SETTING in refused.value.message
            assert isinstance(refused.value, BadRequest) and refused.value.status == 400
            r, body = await get(f"http://127.0.0.1:{s.port}/x", LOOPBACK)
            assert body == b"hello" and r.status == 200 and s.connections == 1

    run(main())


def test_a_name_resolving_to_loopback():
    """localhost (resolved by the loop's getaddrinfo, /etc/hosts): refused unless allowed,
    by its address or by its name; the Host header is the URL's."""

    async def main():
        async with serve(ok) as s:
            with pytest.raises(FetchRefused) as refused:
                await get(f"http://localhost:{s.port}/")
            assert refused.value.message.startswith("localhost resolves to a loopback address")
            assert "127.0.0.1" not in refused.value.message  # the resolved address is not told
            r, body = await get(f"http://localhost:{s.port}/", LOOPBACK)
            assert body == b"hello" and s.seen[-1].headers["host"] == f"localhost:{s.port}"
            by_name = FetchPolicy(allow_hosts=("localhost",), total_timeout=5)
            assert (await get(f"http://LOCALHOST:{s.port}/", by_name))[1] == b"hello"
            assert s.connections == 2

    run(main())


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # 127.0.0.1 as one decimal number
        "0x7f.1",
        "0x7f000001",
        "017700000001",
        "127.1",
        "127.0.1",
        "0x7f.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:7f00:0001]",
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "0.0.0.0",
        "0",
        "[::]",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.1.1",
        "[fd12:3456::1]",
        "[fe80::1]",
        "224.0.0.1",
        "[ff02::1]",
        "240.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "[::127.0.0.1]",  # IPv4-compatible (deprecated)
    ],
)
def test_non_public_literals_in_any_form_are_refused(host):
    async def main():
        async with serve(ok) as s:
            with pytest.raises(FetchRefused):
                await get(f"http://{host}:{s.port}/")
            assert s.connections == 0

    run(main())


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "017700000001", "127.1", "[::ffff:127.0.0.1]"])
def test_loopback_forms_are_fetched_when_127_0_0_1_is_allowed(host):
    async def main():
        async with serve(ok) as s:
            assert (await get(f"http://{host}:{s.port}/", LOOPBACK))[1] == b"hello"

    run(main())


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://2852039166/",  # 169.254.169.254
        "http://100.100.100.200/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.GOOGLE.INTERNAL./",
        "http://metadata/computeMetadata/v1/",
        "http://metadata.goog/",
        "http://evil.test/",  # a name that resolves to the metadata address
    ],
)
def test_metadata_is_refused_even_when_its_network_is_allowed(url):
    everything = FetchPolicy.parse(
        "0.0.0.0/0, ::/0, metadata.google.internal, evil.test",
        resolver=resolver({"evil.test": ["169.254.169.254"]}),
        total_timeout=3,
    )
    with pytest.raises(FetchRefused) as refused:
        run(get(url, everything))
    assert "metadata" in refused.value.message and ALLOW_SETTING not in refused.value.message


def test_a_name_is_refused_when_it_resolves_only_to_refused_addresses_and_pinned_to_the_permitted_ones():
    async def main():
        async with serve(ok) as s:
            mixed = FetchPolicy.parse(
                "127.0.0.1", resolver=resolver({"mixed.test": ["10.0.0.1", "127.0.0.1", "::1"]}), total_timeout=5
            )
            assert (await get(f"http://mixed.test:{s.port}/", mixed))[1] == b"hello"  # only 127.0.0.1 was tried
            private = FetchPolicy(resolver=resolver({"intranet.test": ["10.1.2.3", "fd00::1"]}))
            with pytest.raises(FetchRefused, match=r"^intranet.test resolves to a private address"):
                await get(f"http://intranet.test:{s.port}/", private)
            with pytest.raises(FetchFailed, match="nowhere.test could not be resolved"):
                await get("http://nowhere.test/", private)

    run(main())


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/file",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "http://user:secret@127.0.0.1/",
        "http://user@127.0.0.1/",
        "http:///path-only",
        "//127.0.0.1/",
        "not a url",
        "http://ex%61mple.test/",
        "http://127.0.0.01/",
        "http://a b/",
    ],
)
def test_bad_urls(url):
    calls: list[str] = []
    with pytest.raises(FetchBadUrl):
        run(get(url, FetchPolicy.parse("0.0.0.0/0", resolver=resolver({}, calls))))
    assert calls == []


# --- redirects --------------------------------------------------------------------


def redirector(targets: dict[str, str]) -> Handler:
    async def handle(seen: Seen, writer: asyncio.StreamWriter) -> None:
        if seen.path in targets:
            await respond(writer, 302, headers={"Location": targets[seen.path]})
        else:
            await respond(writer, body=seen.path.encode())

    return handle


def test_a_redirect_from_an_allowed_host_to_a_refused_one_is_refused():
    async def main():
        port_box: list[int] = []
        names = {"files.test": ["127.0.0.1"], "localhost": ["127.0.0.1"]}
        policy = FetchPolicy(allow_hosts=("files.test",), resolver=resolver(names), total_timeout=5)

        async def handle(seen: Seen, writer: asyncio.StreamWriter) -> None:
            port = port_box[0]
            targets = {
                "/to-localhost": f"http://localhost:{port}/secret",
                "/to-ip": f"http://127.0.0.1:{port}/secret",
                "/to-metadata": "http://169.254.169.254/latest/meta-data/iam/",
                "/to-private": "http://10.0.0.1/",
                "/to-v6": f"http://[::1]:{port}/",
                "/to-decimal": f"http://2130706433:{port}/",
                "/to-ftp": "ftp://files.test/x",
                "/to-userinfo": f"http://u:p@files.test:{port}/",
                "/hop": "/hop2",
                "/hop2": f"http://files.test:{port}/final?q=1#frag",
            }
            await redirector(targets)(seen, writer)

        async with serve(handle) as s:
            port_box.append(s.port)
            for path, host in [
                ("/to-localhost", "localhost"),
                ("/to-ip", "127.0.0.1"),
                ("/to-metadata", "169.254.169.254"),
                ("/to-private", "10.0.0.1"),
                ("/to-v6", "::1"),
                ("/to-decimal", "2130706433"),
            ]:
                with pytest.raises(FetchRefused) as refused:
                    await get(f"http://files.test:{s.port}{path}", policy)
                assert refused.value.host == host and refused.value.message.startswith(host)
                assert not any(seen.path == "/secret" for seen in s.seen)
            for path in ("/to-ftp", "/to-userinfo"):
                with pytest.raises(FetchBadUrl):
                    await get(f"http://files.test:{s.port}{path}", policy)
            r, body = await get(f"http://files.test:{s.port}/hop", policy)
            assert body == b"/final?q=1" and r.final_url == f"http://files.test:{s.port}/final?q=1"
            assert r.url == f"http://files.test:{s.port}/hop" and len(r.redirects) == 2

    run(main())


def test_too_many_redirects():
    async def main():
        async def handle(seen: Seen, writer: asyncio.StreamWriter) -> None:
            n = int(seen.path.strip("/"))
            await respond(writer, 301, headers={"Location": f"/{n + 1}"})

        async with serve(handle) as s:
            with pytest.raises(FetchTooManyRedirects, match="127.0.0.1 redirected more than 5 times"):
                await get(f"http://127.0.0.1:{s.port}/0", LOOPBACK)
            assert len(s.seen) == 6  # the first request and 5 redirects
            with pytest.raises(FetchTooManyRedirects, match="more than 0 times"):
                await get(f"http://127.0.0.1:{s.port}/0", FetchPolicy.parse("127.0.0.1", max_redirects=0))

        async with serve(redirector({f"/{i}": f"/{i + 1}" for i in range(5)})) as s:
            r, body = await get(f"http://127.0.0.1:{s.port}/0", LOOPBACK)  # exactly 5 redirects: fine
            assert body == b"/5" and len(r.redirects) == 5

    run(main())


def test_credentials_go_to_the_first_origin_only():
    async def main():
        names = {"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]}
        policy = FetchPolicy.parse("127.0.0.1", resolver=resolver(names))
        port_box: list[int] = []

        async def handle(seen: Seen, writer: asyncio.StreamWriter) -> None:
            targets = {"/same": "/other", "/other": f"http://b.test:{port_box[0]}/end"}
            await redirector(targets)(seen, writer)

        async with serve(handle) as s:
            port_box.append(s.port)
            await get(f"http://a.test:{s.port}/same", policy, headers={"Authorization": "Bearer t", "X-Other": "1"})
            auth = [(seen.path, seen.headers.get("authorization"), seen.headers.get("x-other")) for seen in s.seen]
            assert auth == [("/same", "Bearer t", "1"), ("/other", "Bearer t", "1"), ("/end", None, "1")]
            assert s.seen[-1].headers["host"] == f"b.test:{s.port}"

    run(main())


# --- pinning ------------------------------------------------------------------------


def test_each_connection_resolves_once_and_connects_to_the_checked_answer():
    """A rebinding name: 127.0.0.1 (allowed) on the first lookup, the metadata address
    after. The first connection goes to the first answer (the resolver is asked once,
    never again for the same connection); the redirect opens a new connection (the
    server closes each), which resolves again and is refused."""

    async def main():
        calls: list[str] = []
        answers = iter([["127.0.0.1"], ["169.254.169.254"]])

        async def rebinding(host: str, port: int) -> list[str]:
            calls.append(host)
            return next(answers)

        policy = FetchPolicy.parse("127.0.0.1", resolver=rebinding)
        async with serve(redirector({"/first": "/second"})) as s:
            with pytest.raises(FetchRefused, match="rebind.test resolves to a cloud metadata address"):
                await get(f"http://rebind.test:{s.port}/first", policy)
            assert calls == ["rebind.test", "rebind.test"] and [seen.path for seen in s.seen] == ["/first"]
            assert s.seen[0].headers["host"] == f"rebind.test:{s.port}"

    run(main())


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A CA and a certificate for files.test it signed (openssl, no network)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is missing: the TLS test needs it to make a certificate")
    d = tmp_path_factory.mktemp("tls")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
    )  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=files.test", "-keyout", str(d / "leaf.key"),
             "-out", str(d / "leaf.csr"))  # fmt: skip
    (d / "ext").write_text("subjectAltName=DNS:files.test\n")
    _openssl("x509", "-req", "-in", str(d / "leaf.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
             "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext"), "-out", str(d / "leaf.pem"))  # fmt: skip
    return d


def test_tls_verifies_the_host_name_on_the_pinned_connection(certificates):
    """https to files.test pinned to 127.0.0.1: SNI is files.test and the certificate is
    verified for it; the same server under another name fails verification."""

    async def main():
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(certificates / "leaf.pem", certificates / "leaf.key")
        sni: list[str | None] = []
        server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)  # type: ignore[assignment]
        client_ctx = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
        names = {"files.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
        policy = FetchPolicy.parse("127.0.0.1", resolver=resolver(names), ssl_context=client_ctx, total_timeout=5)
        async with serve(ok, ssl_context=server_ctx) as s:
            r, body = await get(f"https://files.test:{s.port}/report.pdf", policy)
            assert body == b"hello" and sni == ["files.test"] and r.filename == "report.pdf"
            assert s.seen[0].headers["host"] == f"files.test:{s.port}"
            with pytest.raises(FetchFailed, match=r"could not connect to other.test: .*other\.test"):
                await get(f"https://other.test:{s.port}/", policy)
            with pytest.raises(FetchFailed, match="could not connect to files.test"):  # no CA: default trust
                await get(f"https://files.test:{s.port}/", FetchPolicy.parse("127.0.0.1", resolver=resolver(names)))

    run(main())


# --- bounds -------------------------------------------------------------------------


def test_a_content_length_above_the_limit_is_refused_before_the_body():
    async def main():
        async def big(seen: Seen, writer: asyncio.StreamWriter) -> None:
            await respond(writer, headers={"Content-Length": str(10**9)})
            await asyncio.sleep(10)

        async with serve(big) as s:
            started = time.monotonic()
            with pytest.raises(FetchTooLarge, match=r"127.0.0.1 is 1000000000 bytes, more than the 1000 allowed"):
                async with fetch(f"http://127.0.0.1:{s.port}/", LOOPBACK, max_bytes=1000):
                    raise AssertionError("not reached")
            assert time.monotonic() - started < 2
            assert issubclass(FetchTooLarge, ContentTooLarge) and FetchTooLarge("x").status == 413

    run(main())


@pytest.mark.parametrize("framing", ["close", "chunked", "lying-length"])
def test_the_limit_holds_while_streaming(framing):
    """10 MB without a Content-Length (read until close), chunked, or announced as 500
    bytes: the caller gets at most the limit and the fetch stops after one read beyond."""
    limit = 100_000

    async def main():
        async def flood(seen: Seen, writer: asyncio.StreamWriter) -> None:
            headers = {"Transfer-Encoding": "chunked"} if framing == "chunked" else {}
            if framing == "lying-length":
                headers["Content-Length"] = "500"
            await respond(writer, headers=headers, length=False)
            piece = b"x" * 16384
            for _ in range(640):
                writer.write(b"4000\r\n" + piece + b"\r\n" if framing == "chunked" else piece)
                await writer.drain()

        async with serve(flood) as s:
            got = 0
            async with fetch(f"http://127.0.0.1:{s.port}/", LOOPBACK, max_bytes=limit) as r:
                assert r.size == (500 if framing == "lying-length" else None)
                try:
                    async for chunk in r.chunks():
                        got += len(chunk)
                except FetchTooLarge as exc:
                    assert framing != "lying-length" and "larger than 100000 bytes" in exc.message
                else:
                    assert framing == "lying-length" and got == 500  # h11 stops at the announced length
                assert got <= limit and r.received <= limit + 65536

    run(main())


def test_a_body_of_exactly_the_limit_is_fine():
    async def main():
        async def exact(seen: Seen, writer: asyncio.StreamWriter) -> None:
            await respond(writer, body=b"y" * 1000, length=seen.path == "/length")

        async with serve(exact) as s:
            for path in ("/length", "/close"):
                assert (await get(f"http://127.0.0.1:{s.port}{path}", LOOPBACK, max_bytes=1000))[1] == b"y" * 1000
                with pytest.raises(FetchTooLarge):
                    await get(f"http://127.0.0.1:{s.port}{path}", LOOPBACK, max_bytes=999)

    run(main())


def test_a_stalling_server_times_out():
    async def main():
        async def silent(seen: Seen, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(30)

        async def trickle(seen: Seen, writer: asyncio.StreamWriter) -> None:
            await respond(writer, headers={"Content-Length": "100"}, length=False)
            for _ in range(100):
                writer.write(b"z")
                await writer.drain()
                await asyncio.sleep(0.1)

        quick = FetchPolicy.parse("127.0.0.1", total_timeout=0.5)
        async with serve(silent) as s:
            started = time.monotonic()
            with pytest.raises(FetchTimeout, match=r"fetching from 127.0.0.1 took longer than 0.5 s"):
                await get(f"http://127.0.0.1:{s.port}/", quick)
            assert time.monotonic() - started < 1.5
        async with serve(trickle) as s:  # each chunk comes in time; the whole does not
            started = time.monotonic()
            async with fetch(f"http://127.0.0.1:{s.port}/", quick, max_bytes=1000) as r:
                with pytest.raises(FetchTimeout):
                    async for _ in r.chunks():
                        pass
                assert 0 < r.received < 100
            assert time.monotonic() - started < 1.5

        async def hanging(host: str, port: int) -> list[str]:
            await asyncio.sleep(30)
            return []

        slow_dns = FetchPolicy(resolver=hanging, connect_timeout=0.2)
        with pytest.raises(FetchTimeout, match="slow.test could not be resolved within 0.2 s"):
            await get("http://slow.test/", slow_dns)

    run(main())


@pytest.mark.parametrize("status", [404, 403, 500, 503])
def test_an_error_status_is_an_error_naming_the_host(status):
    async def main():
        async def failing(seen: Seen, writer: asyncio.StreamWriter) -> None:
            await respond(writer, status, body=b"nope")

        async with serve(failing) as s:
            with pytest.raises(FetchStatus) as failed:
                await get(f"http://localhost:{s.port}/", FetchPolicy(allow_hosts=("localhost",)))
            assert failed.value.upstream_status == status and failed.value.status == 400
            assert failed.value.message == f"localhost answered {status} X"

    run(main())


def test_a_refused_connection_and_a_broken_body():
    async def main():
        async def short(seen: Seen, writer: asyncio.StreamWriter) -> None:
            await respond(writer, headers={"Content-Length": "100"}, length=False)
            writer.write(b"only this")

        async with serve(short) as s:
            port = s.port
            with pytest.raises(FetchFailed, match="the connection to 127.0.0.1 failed"):
                await get(f"http://127.0.0.1:{port}/", LOOPBACK)
        with pytest.raises(FetchFailed, match="could not connect to 127.0.0.1$"):  # the server is gone
            await get(f"http://127.0.0.1:{port}/", LOOPBACK)

    run(main())


# --- the response -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "content_type", "charset", "filename"),
    [
        ("/files/report%20v2.pdf", {"Content-Type": "application/pdf"}, "application/pdf", None, "report v2.pdf"),
        (
            "/download?id=1",
            {"Content-Type": 'Text/Plain; charset="UTF-8"', "Content-Disposition": 'attachment; filename="a b.txt"'},
            "text/plain",
            "utf-8",
            "a b.txt",
        ),
        (
            "/x",
            {"Content-Disposition": "attachment; filename*=UTF-8''na%C3%AFve%20file.txt"},
            None,
            None,
            "naïve file.txt",
        ),
        ("/x", {"Content-Disposition": 'attachment; filename="../../etc/passwd"'}, None, None, "passwd"),
        ("/", {"Content-Type": "garbage"}, None, None, None),
        ("/dir/", {}, None, None, None),
    ],
)
def test_response_fields(path, headers, content_type, charset, filename):
    async def main():
        async def answer(seen: Seen, writer: asyncio.StreamWriter) -> None:
            await respond(writer, body=b"12345", headers=headers)

        async with serve(answer) as s:
            async with fetch(f"http://127.0.0.1:{s.port}{path}", LOOPBACK, max_bytes=10) as r:
                assert (r.content_type, r.charset, r.filename, r.size) == (content_type, charset, filename, 5)
                assert r.final_url == f"http://127.0.0.1:{s.port}{path}" and r.redirects == ()
                assert await r.read() == b"12345"
                with pytest.raises(RuntimeError):
                    r.chunks()
            sent = s.seen[0].headers
            assert sent["accept-encoding"] == "identity" and sent["user-agent"] == "botkit"

    run(main())


# --- the setting --------------------------------------------------------------------


def test_parse_allow():
    networks, hosts = parse_allow(
        " 127.0.0.1/32, 10.0.0.0/8,192.168.1.7, [::1], fd00::/8 , Files.Internal., *.corp.example,,"
    )
    assert [str(n) for n in networks] == ["127.0.0.1/32", "10.0.0.0/8", "192.168.1.7/32", "::1/128", "fd00::/8"]
    assert hosts == ("files.internal", "*.corp.example")
    assert parse_allow("") == ((), ())
    for bad in ("10.0.0.0/33", "not a host", "http://files.internal", "files.internal/8", "*", "a..b"):
        with pytest.raises(ValueError, match=ALLOW_SETTING):
            parse_allow(bad)
    policy = FetchPolicy.parse("*.corp.example, wiki.test")
    assert policy.allows_host("a.corp.example") and policy.allows_host("A.B.Corp.Example.")
    assert not policy.allows_host("corp.example") and not policy.allows_host("evilcorp.example")
    assert policy.allows_host("wiki.test") and not policy.allows_host("sub.wiki.test")


def test_every_error_is_a_fetch_error_and_an_api_error():
    for cls in (FetchBadUrl, FetchRefused, FetchTooManyRedirects, FetchTimeout, FetchFailed, FetchTooLarge):
        assert issubclass(cls, FetchError)
    assert FetchStatus("m", host="h", upstream_status=502).code == "BAD_REQUEST"


# --- the property -------------------------------------------------------------------

_REFUSED_V4 = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
        "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
]  # fmt: skip
_REFUSED_V6 = [ipaddress.ip_network(n) for n in ("::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "100::/64", "::/8")]


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embeds_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """IPv4-mapped and NAT64 addresses are their IPv4 address (spelled below)."""
    return isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None or ip in _NAT64)


@st.composite
def _in_refused_network(draw) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    net = draw(st.sampled_from(_REFUSED_V4 + _REFUSED_V6))
    return net[draw(st.integers(0, net.num_addresses - 1))]


addresses_in_refused_networks = _in_refused_network().filter(lambda ip: not _embeds_ipv4(ip))


def _part(draw, value: int) -> str:
    style = draw(st.sampled_from(["dec", "oct", "hex", "HEX"]))
    if style == "oct":
        return "0" * draw(st.integers(1, 3)) + format(value, "o")
    if style == "dec":
        return str(value)
    return ("0x" if style == "hex" else "0X") + format(value, "x" if style == "hex" else "X")


@st.composite
def spellings(draw) -> str:
    """An address from a refused network, in one of the textual forms a URL may carry:
    IPv4 in 1 to 4 parts each decimal, octal or hex (inet_aton's forms); IPv6
    compressed, exploded, upper-case, IPv4-mapped, NAT64 or 6to4 of a refused IPv4."""
    ip = draw(addresses_in_refused_networks)
    if isinstance(ip, ipaddress.IPv4Address):
        n = int(ip)
        form = draw(st.sampled_from(["aton1", "aton2", "aton3", "aton4", "mapped", "mapped-hex", "nat64", "6to4"]))
        if form.startswith("aton"):
            k = int(form[-1])
            values = {1: [n], 2: [n >> 24, n & 0xFFFFFF], 3: [n >> 24, (n >> 16) & 0xFF, n & 0xFFFF]}.get(
                k, list(ip.packed)
            )
            return ".".join(_part(draw, v) for v in values)
        v6 = {
            "mapped": f"::ffff:{ip}",
            "mapped-hex": str(ipaddress.IPv6Address((0xFFFF << 32) | n)),
            "nat64": str(ipaddress.IPv6Address((0x64FF9B << 96) | n)),
            "6to4": str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | draw(st.integers(0, 2**64 - 1)))),
        }[form]
        return f"[{v6}]"
    text = draw(st.sampled_from([ip.compressed, ip.exploded, ip.compressed.upper()]))
    return f"[{text}]"


@given(spellings())
def test_property_any_spelling_of_a_refused_address_is_refused(host):
    """Whatever form the URL parser accepts, the address is refused (after the loop's
    getaddrinfo turned inet_aton forms into addresses); what it does not accept is a
    bad URL. Nothing connects: a permitted address would fail differently."""
    url = f"http://{host}:9/"
    try:
        httpx.URL(url)
    except httpx.InvalidURL:
        with pytest.raises(FetchBadUrl):
            run(get(url, FetchPolicy(total_timeout=3)))
        return
    with pytest.raises(FetchRefused):
        run(get(url, FetchPolicy(total_timeout=3)))


@given(addresses_in_refused_networks, st.sampled_from(["127.0.0.1/32", "10.0.0.0/8", "8.8.8.0/24", "2001:db8::/32"]))
def test_property_the_allow_list_permits_exactly_its_networks(ip, allowed):
    policy = FetchPolicy.parse(allowed)
    permitted = policy.refusal(ip) is None
    assert permitted == (ip in ipaddress.ip_network(allowed)) and FetchPolicy().refusal(ip) is not None
