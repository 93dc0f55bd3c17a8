"""Fetching a URL a user gave (file uploads `{"file": "https://..."}`, dataset syncs,
abilities) without letting it reach what it must not: loopback, private, link-local,
multicast, reserved and cloud-metadata addresses are refused unless the policy's
allow-list (`BOTKIT_FETCH_ALLOW`) permits them, on every hop of a redirect chain.

    async with fetch(url, policy, max_bytes=limit) as response:
        response.content_type, response.size, response.filename, response.final_url
        async for chunk in response.chunks():
            ...

How the address is pinned: every fetch has its own httpcore connection pool whose
network backend is `_PinnedBackend`. When httpcore opens a connection to the URL's
host it asks that backend; the backend resolves the name once (the event loop's
getaddrinfo, or the policy's resolver), checks every answer, and opens the TCP
connection to a permitted answer by its IP. The address checked is the address
connected to, for every connection (each redirect hop opens its own), and nothing
resolves the name a second time, so DNS rebinding has no window. httpcore then starts
TLS on that stream with `server_hostname` = the URL's host, so SNI and certificate
verification are on the host name; the Host header is the URL's host.

Bounds: the whole fetch (resolution, connects, redirects, headers and every chunk the
caller reads) ends by one deadline (`total_timeout`); each resolution and connect also
has `connect_timeout`; the body is counted while it streams and the fetch raises once
it passes `max_bytes` (a Content-Length above it raises before any body is read), so
at most `max_bytes` plus one network read (64 KiB) is ever held. `Accept-Encoding:
identity` is sent: the bytes counted are the bytes stored (no decompression bombs).

Errors name the URL's host (or the redirect hop's), never a resolved address: the
category ("loopback", "private", ...) says why, without turning the fetcher into an
oracle for an internal network's addresses."""

from __future__ import annotations

import asyncio
import email.message
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, cast

import anyio
import httpcore
import httpx

from ..errors import ApiError, BadRequest, ContentTooLarge

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""`await resolver(host, port)`: the host's addresses, as text, in the order to try them."""

ALLOW_SETTING = "BOTKIT_FETCH_ALLOW"
"""Comma-separated CIDRs (or single addresses) and host names (`*.example.com` for any
subdomain) that may be fetched even though they are not public. Default: empty."""

REDIRECTS = (301, 302, 303, 307, 308)


# Errors: each is also the wire class that says its status and code.


class FetchError(ApiError):
    """Any failure of `fetch`; `host` is the host it concerns, as the URL spelled it."""

    def __init__(self, message: str, *, host: str = "") -> None:
        super().__init__(message)
        self.host = host


class FetchBadUrl(FetchError, BadRequest):
    """Not an http(s) URL with a host and without userinfo."""


class FetchRefused(FetchError, BadRequest):
    """The host is, or resolves only to, addresses the policy refuses."""


class FetchTooManyRedirects(FetchError, BadRequest):
    pass


class FetchTimeout(FetchError, BadRequest):
    pass


class FetchFailed(FetchError, BadRequest):
    """The host could not be resolved or reached, TLS failed, or the connection broke."""


class FetchStatus(FetchError, BadRequest):
    """The host answered with an error status (4xx, 5xx), or a redirect without a Location."""

    def __init__(self, message: str, *, host: str = "", upstream_status: int) -> None:
        super().__init__(message, host=host)
        self.upstream_status = upstream_status


class FetchTooLarge(FetchError, ContentTooLarge):
    pass


# What is refused.


def _networks(*entries: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), why) for net, why in entries)


# IANA's special-purpose registries; the first match names the reason.
_REFUSED = _networks(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "reserved"),  # documentation
    ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # with the broadcast address
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fc00::/7", "private"),  # unique local
    ("fe80::/10", "link-local"),
    ("fec0::/10", "link-local"),  # site-local (deprecated)
    ("ff00::/8", "multicast"),
    ("64:ff9b:1::/48", "private"),  # local-use NAT64
    ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo
    ("2001:db8::/32", "reserved"),
    ("3fff::/20", "reserved"),
    ("5f00::/16", "reserved"),  # SRv6 SIDs
)
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")  # any other IPv6 address is reserved
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# Refused even when an allowed network contains them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.170.23",  # AWS EKS pod identity
        "169.254.0.23",  # Tencent Cloud
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS (IPv6)
        "fd00:ec2::23",  # AWS EKS pod identity (IPv6)
    )
)
# Names of metadata services, refused before resolution (they resolve to the addresses
# above where they resolve at all; this is depth, the address check is the guard).
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)

_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


_ATON = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)


def _ip(text: str) -> IPAddress | None:
    """An address literal: IPv4 or IPv6 (getaddrinfo may add an IPv6 zone), or one of the
    inet_aton forms the C resolver takes for IPv4 (`2130706433`, `0x7f.1`, `0177.0.0.1`)."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if _ATON.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _destinations(ip: IPAddress) -> list[IPAddress]:
    """The addresses a packet to `ip` really goes to: an IPv4 address embedded in an
    IPv4-mapped or NAT64 IPv6 address is the destination; a 6to4 one is checked too."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return [ip.ipv4_mapped]
        if ip in _NAT64:
            return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
        if ip.sixtofour is not None:
            return [ip, ip.sixtofour]
    return [ip]


def _category(ip: IPAddress) -> str | None:
    for network, why in _REFUSED:
        if ip in network:
            return why
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST:
        return "reserved"
    return None


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".")


def parse_allow(text: str) -> tuple[tuple[IPNetwork, ...], tuple[str, ...]]:
    """`BOTKIT_FETCH_ALLOW`'s value: comma-separated entries, each a network
    (`10.0.0.0/8`, `fd00::/8`), an address (`127.0.0.1`, `[::1]`), a host name
    (`files.internal`) or a wildcard (`*.corp.example`: its subdomains). Returns the
    networks and the (lower-case, IDNA) host names; a bad entry is a ValueError naming it."""
    networks: list[IPNetwork] = []
    hosts: list[str] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        bare = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
        try:
            networks.append(ipaddress.ip_network(bare, strict=False))
            continue
        except ValueError:
            pass
        wildcard = entry.startswith("*.")
        name = entry[2:] if wildcard else entry
        try:
            name = _normal_host(name.encode("idna").decode("ascii"))
        except UnicodeError:
            name = ""
        if not _HOST_NAME.fullmatch(name) or "/" in entry:
            raise ValueError(f"{ALLOW_SETTING}: {entry!r} is neither a network (CIDR), an address nor a host name")
        hosts.append("*." + name if wildcard else name)
    return tuple(networks), tuple(hosts)


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class FetchPolicy:
    """What `fetch` may reach and how long it may take. The default refuses every
    non-public address; `FetchPolicy.parse(settings_value)` adds an allow-list."""

    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: tuple[str, ...] = ()  # lower-case names; "*.example.com" for subdomains
    max_redirects: int = 5
    total_timeout: float = 30.0
    connect_timeout: float = 10.0
    user_agent: str = "botkit"
    resolver: Resolver | None = None  # None: the event loop's getaddrinfo
    ssl_context: ssl.SSLContext | None = None  # None: httpx's default (certifi, or SSL_CERT_FILE)

    @classmethod
    def parse(cls, allow: str, **options: Any) -> FetchPolicy:
        """A policy from `BOTKIT_FETCH_ALLOW`'s value (see `parse_allow`) and options."""
        networks, hosts = parse_allow(allow)
        return cls(allow_networks=networks, allow_hosts=hosts, **options)

    def allows_host(self, host: str) -> bool:
        name = _normal_host(host)
        return any(name == h or (h.startswith("*.") and name.endswith(h[1:])) for h in self.allow_hosts)

    def refusal(self, ip: IPAddress, *, host_allowed: bool = False) -> str | None:
        """Why `ip` may not be connected to ("loopback", "private", "cloud metadata", ...),
        or None when it may. `host_allowed`: the host name is on the allow-list."""
        destinations = _destinations(ip)
        if any(d in METADATA_ADDRESSES for d in destinations):
            return "cloud metadata"
        if host_allowed or all(any(d in n for n in self.allow_networks) for d in destinations):
            return None
        for d in destinations:
            why = _category(d)
            if why is not None:
                return why
        return None

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host` (resolved once), permitted ones only;
        FetchRefused when there are none, FetchFailed/FetchTimeout when it does not resolve."""
        literal = _ip(host)
        if literal is not None:
            why = self.refusal(literal)
            if why is not None:
                raise FetchRefused(f"{host} is a {why} address: refused{_hint(why)}", host=host)
            return [str(_destinations(literal)[0])]  # a mapped address: its IPv4 address
        try:
            async with asyncio.timeout(self.connect_timeout):
                answers = await (self.resolver or _getaddrinfo)(host, port)
        except TimeoutError:
            raise FetchTimeout(f"{host} could not be resolved within {self.connect_timeout:g} s", host=host) from None
        except OSError:  # socket.gaierror
            raise FetchFailed(f"{host} could not be resolved", host=host) from None
        allowed_name = self.allows_host(host)
        permitted: list[str] = []
        reasons: list[str] = []
        for answer in answers:
            ip = _ip(answer)
            why = "unparseable" if ip is None else self.refusal(ip, host_allowed=allowed_name)
            if ip is None or why is not None:
                reasons.append(why or "")
            elif (target := str(_destinations(ip)[0])) not in permitted:
                permitted.append(target)
        if not permitted:
            if not reasons:
                raise FetchFailed(f"{host} could not be resolved", host=host)
            why = reasons[0]
            raise FetchRefused(f"{host} resolves to a {why} address: refused{_hint(why)}", host=host)
        return permitted


def _hint(why: str) -> str:
    return "" if why == "cloud metadata" else f" (an administrator can allow it in {ALLOW_SETTING})"


DEFAULT_POLICY = FetchPolicy()


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects in one step: the connection goes to the address
    that was checked (see the module's docstring)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await self._policy.addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # addresses() returns at least one
        raise failure

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_ssl_default: ssl.SSLContext | None = None


async def _ssl_context(policy: FetchPolicy) -> ssl.SSLContext:
    global _ssl_default
    if policy.ssl_context is not None:
        return policy.ssl_context
    if _ssl_default is None:  # loading the CA bundle takes a while: not on the event loop
        _ssl_default = await asyncio.to_thread(httpx.create_ssl_context)
    return _ssl_default


def _parse_url(text: str) -> httpx.URL:
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchBadUrl(f"not a valid URL: {exc}") from None
    host = url.host
    if url.scheme not in ("http", "https"):
        raise FetchBadUrl(
            f"only http and https URLs can be fetched, not {url.scheme or 'this'}: {text[:100]}", host=host
        )
    if not url.raw_host:
        raise FetchBadUrl(f"the URL has no host: {text[:100]}")
    if url.userinfo:
        raise FetchBadUrl(f"a URL with a user name or password is refused ({host})", host=host)
    raw = url.raw_host.decode("ascii")
    if ":" not in raw and not _HOST_NAME.fullmatch(_normal_host(raw)):
        raise FetchBadUrl(f"not a valid host name: {host}", host=host)
    if _normal_host(raw) in METADATA_HOSTS:
        raise FetchRefused(f"{host} is a cloud metadata service: refused", host=host)
    return url


@contextmanager
def _mapped(host: str, policy: FetchPolicy) -> Iterator[None]:
    """httpcore's and asyncio's exceptions as FetchErrors naming the host."""
    try:
        yield
    except TimeoutError:  # the deadline (asyncio.timeout_at)
        raise FetchTimeout(f"fetching from {host} took longer than {policy.total_timeout:g} s", host=host) from None
    except httpcore.ConnectTimeout:
        raise FetchTimeout(f"could not connect to {host} within {policy.connect_timeout:g} s", host=host) from None
    except httpcore.TimeoutException:
        raise FetchTimeout(f"{host} stopped answering", host=host) from None
    except httpcore.ConnectError as exc:
        cause = exc.__cause__ or exc.__context__
        tls = f": {cause.reason or cause}" if isinstance(cause, ssl.SSLError) else ""
        if isinstance(cause, ssl.SSLCertVerificationError):
            tls = f": {cause.verify_message}"
        raise FetchFailed(f"could not connect to {host}{tls}", host=host) from None
    except (httpcore.ProtocolError, httpcore.NetworkError) as exc:
        raise FetchFailed(f"the connection to {host} failed: {exc}", host=host) from None


_SENSITIVE = ("authorization", "cookie", "proxy-authorization")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


class _Body:
    """The response body as an async iterator of chunks, counted against the limit."""

    def __init__(self, response: FetchResponse) -> None:
        self._r = response
        self._iter = cast(AsyncIterable[bytes], response._raw.stream).__aiter__()

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        r = self._r
        while True:
            with _mapped(r.host, r.policy):
                async with asyncio.timeout_at(r._deadline):
                    chunk = await anext(self._iter)  # StopAsyncIteration ends the body
            r.received += len(chunk)
            if r.received > r.max_bytes:
                raise FetchTooLarge(f"the body from {r.host} is larger than {r.max_bytes} bytes", host=r.host)
            if chunk:
                return chunk

    async def aclose(self) -> None:
        close = getattr(self._iter, "aclose", None)
        if close is not None:
            await close()


class FetchResponse:
    """A fetched response whose body has not been read yet (read it with `chunks()`)."""

    def __init__(
        self,
        raw: httpcore.Response,
        *,
        url: httpx.URL,
        chain: list[str],
        policy: FetchPolicy,
        max_bytes: int,
        deadline: float,
    ) -> None:
        self._raw = raw
        self._deadline = deadline
        self._body: _Body | None = None
        self.policy = policy
        self.max_bytes = max_bytes
        self.status: int = raw.status
        self.headers = httpx.Headers(raw.headers)
        self.url: str = chain[0]  # as requested (normalised)
        self.final_url: str = str(url)  # after the redirects
        self.redirects: tuple[str, ...] = tuple(chain[1:])  # each hop's URL, in order
        self.host: str = url.host  # the final host
        self.received = 0  # body bytes read from the network so far
        message = email.message.Message()
        for name in ("content-type", "content-disposition"):
            if name in self.headers:
                message[name] = self.headers[name]
        media = self.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        self.content_type: str | None = media if re.fullmatch(r"[\w.+-]+/[\w.+-]+", media) else None
        self.charset: str | None = message.get_content_charset() if self.content_type else None
        length = self.headers.get("content-length", "")
        self.size: int | None = int(length) if length.isdigit() else None  # h11 has checked it
        self.filename: str | None = _safe_filename(message.get_filename()) or _safe_filename(url.path)

    def chunks(self) -> AsyncIterator[bytes]:
        """The body, as it arrives (once); raises FetchTooLarge past `max_bytes` (having
        read at most one network read beyond it) and FetchTimeout past the deadline."""
        if self._body is not None:
            raise RuntimeError("the body of a fetch can be read once")
        self._body = _Body(self)
        return self._body

    async def read(self) -> bytes:
        """The whole body (at most `max_bytes`, which bounds the memory this takes)."""
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        if self._body is not None:
            await self._body.aclose()
        await self._raw.aclose()


def _safe_filename(name: str | None) -> str | None:
    """The last path segment, without control characters; None when nothing is left."""
    if not name:
        return None
    name = re.sub(r"[\x00-\x1f\x7f]", "", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:255] if name not in ("", ".", "..") else None


async def _request(
    pool: httpcore.AsyncConnectionPool,
    url: httpx.URL,
    headers: dict[str, str],
    policy: FetchPolicy,
    deadline: float,
    method: str = "GET",
    content: bytes | None = None,
) -> httpcore.Response:
    sent = [(b"Host", url.netloc), *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())]
    if content is not None:
        sent.append((b"Content-Length", str(len(content)).encode()))
    request = httpcore.Request(
        method,
        httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
        headers=sent,
        content=content,
        extensions={"timeout": {"connect": policy.connect_timeout}},
    )
    with _mapped(url.host, policy):
        async with asyncio.timeout_at(deadline):
            return await pool.handle_async_request(request)


async def _open(
    pool: httpcore.AsyncConnectionPool,
    text: str,
    policy: FetchPolicy,
    deadline: float,
    max_bytes: int,
    extra: Mapping[str, str] | None,
    method: str = "GET",
    content: bytes | None = None,
    any_status: bool = False,
) -> FetchResponse:
    """GET `text` (or `method` with `content`), following redirects (each hop's URL
    checked, each connection pinned). A request with a body is not redirected: a 3xx
    is its answer. `any_status`: an answer of 300 and above is returned, not raised."""
    url = _parse_url(text)
    dropped = ("host", "accept-encoding", "content-length", "transfer-encoding")
    given = {k: v for k, v in (extra or {}).items() if k.lower() not in dropped}
    headers = {"User-Agent": policy.user_agent, "Accept": "*/*", "Accept-Encoding": "identity", **given}
    chain = [str(url)]
    while True:
        raw = await _request(pool, url, headers, policy, deadline, method, content)
        location = dict((k.lower(), v) for k, v in raw.headers).get(b"location")
        if raw.status not in REDIRECTS or location is None or method not in ("GET", "HEAD"):
            break
        await raw.aclose()
        if len(chain) > policy.max_redirects:
            raise FetchTooManyRedirects(f"{url.host} redirected more than {policy.max_redirects} times", host=url.host)
        try:
            target = url.join(location.decode("latin-1"))
        except httpx.InvalidURL as exc:
            raise FetchBadUrl(f"{url.host} redirected to an invalid URL: {exc}", host=url.host) from None
        target = _parse_url(str(target.copy_with(fragment=None)))
        if _origin(target) != _origin(url):
            headers = {k: v for k, v in headers.items() if k.lower() not in _SENSITIVE}
        url = target
        chain.append(str(url))
    response = FetchResponse(raw, url=url, chain=chain, policy=policy, max_bytes=max_bytes, deadline=deadline)
    if raw.status >= 300 and not any_status:
        await raw.aclose()
        reason = raw.extensions.get("reason_phrase", b"").decode("latin-1", "replace")
        what = "a redirect without a Location" if raw.status < 400 else reason
        raise FetchStatus(
            f"{url.host} answered {raw.status} {what}".rstrip(), host=url.host, upstream_status=raw.status
        )
    if response.size is not None and response.size > max_bytes:
        await raw.aclose()
        raise FetchTooLarge(
            f"the body from {url.host} is {response.size} bytes, more than the {max_bytes} allowed", host=url.host
        )
    return response


@asynccontextmanager
async def fetch(
    url: str,
    policy: FetchPolicy | None = None,
    *,
    max_bytes: int,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    content: bytes | None = None,
    any_status: bool = False,
) -> AsyncIterator[FetchResponse]:
    """GET a user's URL safely (see the module's docstring). `headers` are sent as
    well (Authorization and Cookie only to the first origin; Host and Accept-Encoding
    are the fetch's own). An ability's request may have another `method` and a body
    (`content`), and takes any answer (`any_status`). Raises a FetchError."""
    policy = policy or DEFAULT_POLICY
    deadline = asyncio.get_running_loop().time() + policy.total_timeout
    pool = httpcore.AsyncConnectionPool(
        ssl_context=await _ssl_context(policy),
        max_connections=2,
        max_keepalive_connections=1,
        http1=True,
        http2=False,
        retries=0,
        network_backend=_PinnedBackend(policy),
    )
    try:
        response = await _open(pool, url, policy, deadline, max_bytes, headers, method, content, any_status)
        try:
            yield response
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await response.aclose()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            await pool.aclose()
