"""Cross-origin access, so that a browser widget can call botkit with a session token.
Credentials are bearer headers, never cookies, so `*` (the default) is safe and
credentials are never allowed; BOTKIT_CORS_ORIGINS narrows it to a list of origins."""

from __future__ import annotations

METHODS = b"GET, POST, PUT, HEAD, OPTIONS"
# What the official SDKs and a browser widget send.
REQUEST_HEADERS = (
    b"authorization, content-type, accept, x-runas-user-id, x-runas-userid, x-runas-child-user-email, "
    b"x-timezone, idempotency-key, x-request-id"
)
EXPOSED = b"x-request-id, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, retry-after, server-timing"
MAX_AGE = b"86400"


class Cors:
    def __init__(self, origins: str) -> None:
        listed = {o.strip().rstrip("/") for o in origins.split(",") if o.strip()}
        self.any = "*" in listed
        self.origins = {o.encode() for o in listed if o != "*"}

    def headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """The headers of any answer to a request from `origin` (none for a stranger)."""
        if origin is None:
            return []
        if self.any:
            return [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", EXPOSED)]
        if origin in self.origins:
            return [
                (b"access-control-allow-origin", origin),
                (b"vary", b"origin"),
                (b"access-control-expose-headers", EXPOSED),
            ]
        return []

    def preflight(
        self, origin: bytes | None, allowed: list[tuple[bytes, bytes]], requested: bytes | None, allow: bytes = METHODS
    ) -> list[tuple[bytes, bytes]]:
        """An OPTIONS answer, given `allowed` = `headers(origin)`: the methods, and the
        headers asked for (any header may be sent: none of them is a credential the
        browser adds by itself); `allow`, the route's own methods. Nothing for a stranger."""
        if origin is not None and not allowed:
            return []
        return [
            *allowed,
            (b"access-control-allow-methods", METHODS),
            (b"access-control-allow-headers", requested or REQUEST_HEADERS),
            (b"access-control-max-age", MAX_AGE),
            (b"allow", allow),
        ]
