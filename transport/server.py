"""uvicorn's httptools protocol with the limits a server facing the internet needs
and uvicorn leaves out: it takes headers of any size and waits forever for them, and
for a body. Here, before any token is read:

- the request line and headers together are at most `max_head_bytes` (431), the
  target at most `max_url_bytes` (414), at most `max_headers` headers (431);
- the head must arrive within `head_timeout` s of the connection or of the request's
  first byte, and a body must not stall for `body_timeout` s (the connection closes);
- an idle keep-alive connection closes after uvicorn's `timeout_keep_alive`;
- at most `max_connections` connections at once per process: more are closed at once.

So a client with no token cannot grow memory beyond a head's worth per connection,
nor hold a socket longer than these timeouts (README.md, "Reliability")."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import Settings
from ..errors import ApiError, BadRequest, HeadersTooLarge, RequestTimeout, UriTooLong
from .app import error_body, request_id_of


class GuardedProtocol(HttpToolsProtocol):
    # Slots: uvicorn's protocol sets 28 attributes, and five more in its __dict__ would
    # pass the 30 a class's instances can share keys for (a 1.6 KB dict per connection).
    __slots__ = ("_in_head", "_head_seen", "_tail", "_header_count", "_timer")
    max_head_bytes = 65_536
    max_url_bytes = 8_192
    max_headers = 100
    head_timeout = 10.0
    body_timeout = 30.0
    max_connections = 16_384
    _configured = False

    @classmethod
    def configured(cls, settings: Settings) -> type[GuardedProtocol]:
        """A protocol class with these settings' limits (for servers in this process)."""
        return type("GuardedProtocol", (cls,), {**_limits(settings), "_configured": True})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        if not cls._configured:  # `botkit serve`'s workers: the limits from the environment
            for name, value in _limits(Settings()).items():
                setattr(cls, name, value)
            cls._configured = True
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_seen = 0
        self._tail = b""
        self._header_count = 0
        self._timer: asyncio.TimerHandle | None = None

    # --- timers -------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        if seconds > 0:
            self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if not self._in_head and self.flow.read_paused:  # the app is slow to read, not the client
            self._arm(self.body_timeout)
            return
        if self._in_head and (self.cycle is None or self.cycle.response_complete):
            self._refuse(RequestTimeout("the request's head did not arrive in time"))
        else:
            self.transport.close()  # mid-body or a pipelined head: just close

    # --- the connection -----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            transport.abort()  # over the cap: closed before anything is read
            return
        super().connection_made(transport)
        self._arm(self.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.flow is None:  # refused in connection_made
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            if self._in_head:
                self._count_head(data)
            self.parser.feed_data(data)
        except ApiError as refused:
            self._refuse(refused)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, ApiError):  # raised by a callback below
                self._refuse(exc.__context__)
            else:
                self._refuse(BadRequest("the request is not valid HTTP/1.1"))
        except httptools.HttpParserError:
            self._refuse(BadRequest("the request is not valid HTTP/1.1"))
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _count_head(self, data: bytes) -> None:
        """Bytes of the head so far (up to the blank line that ends it)."""
        window = self._tail + data
        end = window.find(b"\r\n\r\n")
        seen = self._head_seen + (len(data) if end < 0 else end + 4 - len(self._tail))
        if seen > self.max_head_bytes:
            raise HeadersTooLarge(f"the request line and headers are over {self.max_head_bytes} bytes")
        self._head_seen = seen
        self._tail = window[-3:]

    # --- parser callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.head_timeout)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.max_url_bytes:
            raise UriTooLong(f"the request target is over {self.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            raise HeadersTooLarge(f"more than {self.max_headers} headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
        if not self.transport.is_closing():
            self._arm(self.body_timeout)  # until the body's end (at once, without a body)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self._timer is not None:
            self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
        # what comes next on this connection is the next request's head
        self._in_head, self._head_seen, self._header_count, self._tail = True, 0, 0, b""

    def _refuse(self, error: ApiError) -> None:
        """The error, then close: a head that was not read leaves the connection unusable."""
        self._disarm()
        if self.transport.is_closing():
            return
        request_id = request_id_of(None)
        body = error_body(error, request_id)
        head = b"HTTP/1.1 %d %s\r\n" % (error.status, HTTPStatus(error.status).phrase.encode())
        fields = b"content-type: application/json\r\ncontent-length: %d\r\nx-request-id: %s\r\n" % (
            len(body),
            request_id.encode(),
        )
        self.transport.write(head + fields + b"connection: close\r\n\r\n" + body)
        self.transport.close()


def _limits(settings: Settings) -> dict[str, Any]:
    return {
        "max_head_bytes": settings.max_head_bytes,
        "max_url_bytes": settings.max_url_bytes,
        "max_headers": settings.max_headers,
        "head_timeout": settings.head_timeout,
        "body_timeout": settings.body_timeout,
        "max_connections": settings.max_connections,
    }
