"""The one pooled HTTP client per event loop that upstream calls share (model
providers, embeddings, speech): keep-alive connections to each provider, reused.

aiohttp rather than httpx: on the same keep-alive stream it reaches the first chunk
0.8 ms sooner, and httpcore's pool scans every connection on each request and each
release, so with thousands of streams open at once most of a process's CPU went to
that scan (bench/engine_stream.py, README "Speed"). aiohttp comes with aiobotocore
(store/files.py) already, so it is no new dependency."""

from __future__ import annotations

import asyncio
import weakref

import aiohttp

from .provider import Timeouts

MAX_CONNECTIONS = 16_384  # upstream connections of a process at once (each a file descriptor)
KEEPALIVE_SECONDS = 30  # an idle upstream connection is kept this long
# A line of a streamed answer (an SSE `data:` line) may be this long; the reader buffers
# up to twice that, so a provider cannot grow memory without bound.
READ_BUFFER = 1 << 19
_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()

# What a failed call raises: the connection could not be made (retried) ...
CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# ... or broke off once made (retried only before the first chunk).
BROKEN_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError)


def session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    found = _sessions.get(loop)
    if found is None or found.closed:
        found = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=MAX_CONNECTIONS, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS, ttl_dns_cache=60
            ),
            read_bufsize=READ_BUFFER,
            auto_decompress=True,
            trust_env=False,
            skip_auto_headers=("User-Agent",),
        )
        _sessions[loop] = found
    return found


async def close() -> None:
    """This loop's client and its connections (at a process's shutdown)."""
    found = _sessions.pop(asyncio.get_running_loop(), None)
    if found is not None and not found.closed:
        await found.close()


def timeout(t: Timeouts) -> aiohttp.ClientTimeout:
    """aiohttp's timeout from an engine `Timeouts`: `sock_read` bounds the wait for each
    chunk, not the whole answer. Waiting for one of the MAX_CONNECTIONS counts against
    `connect`, bounded as long as a chunk: beyond that many streams at once, the others
    queue rather than fail; a new connection itself has `sock_connect`."""
    return aiohttp.ClientTimeout(total=None, connect=t.read + t.connect, sock_connect=t.connect, sock_read=t.read)
