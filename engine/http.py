"""The one pooled HTTP client per event loop that upstream calls share (model
providers, embeddings): keep-alive connections to each provider, reused."""

from __future__ import annotations

import asyncio
import weakref

import httpx

from .provider import Timeouts

MAX_CONNECTIONS = 1000  # upstream connections of a process at once (each a file descriptor)
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None or found.is_closed:
        found = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=100),
            follow_redirects=False,
        )
        _clients[loop] = found
    return found


def timeout(t: Timeouts) -> httpx.Timeout:
    """httpx's timeout from an engine `Timeouts` (the read bound is per chunk). A call
    waits for one of the MAX_CONNECTIONS as long as for a chunk: beyond that many
    streams at once, the others queue rather than fail."""
    return httpx.Timeout(connect=t.connect, read=t.read, write=t.connect, pool=t.read)
