"""The one error hierarchy, the bottom layer: actions, store and engine raise these,
and transport turns them into `{"message", "code"}` with the status they carry
(the one mapping, in transport/app.py)."""

from __future__ import annotations


class ApiError(Exception):
    status = 500
    code = "INTERNAL_SERVER_ERROR"
    retry_after: int | None = None  # seconds, sent as Retry-After

    def __init__(self, message: str, *, code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:  # scoped codes such as MODEL_TOO_MANY_REQUESTS
            self.code = code
        if retry_after is not None:
            self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The headers the answer carries besides the body, as ASGI sends them."""
        return [(b"retry-after", str(self.retry_after).encode())] if self.retry_after is not None else []


class BadRequest(ApiError):
    status = 400
    code = "BAD_REQUEST"


class NotAuthenticated(ApiError):
    status = 401
    code = "NOT_AUTHENTICATED"


class NotAuthorized(ApiError):
    status = 401  # the reference's status for NOT_AUTHORIZED
    code = "NOT_AUTHORIZED"


class NotFound(ApiError):
    status = 404
    code = "NOT_FOUND"


class MethodNotAllowed(ApiError):
    status = 405
    code = "METHOD_NOT_ALLOWED"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"allow", self.allow.encode())]  # RFC 9110: a 405 says what the route takes


class Conflict(ApiError):
    status = 409
    code = "CONFLICT"


class ContentTooLarge(ApiError):
    status = 413
    code = "CONTENT_TOO_LARGE"


class RequestTimeout(ApiError):
    status = 408
    code = "REQUEST_TIMEOUT"


class UriTooLong(ApiError):
    status = 414
    code = "URI_TOO_LONG"


class HeadersTooLarge(ApiError):
    status = 431
    code = "REQUEST_HEADER_FIELDS_TOO_LARGE"


class RangeNotSatisfiable(ApiError):
    """A download's Range lies past the file's end (answered with Content-Range: bytes */size)."""

    status = 416
    code = "RANGE_NOT_SATISFIABLE"


class TooManyRequests(ApiError):
    status = 429
    code = "TOO_MANY_REQUESTS"


class LimitsReached(ApiError):
    status = 429
    code = "LIMITS_REACHED"


class ServiceUnavailable(ApiError):
    """The database is busy, slow or unreachable: a clear answer now, and when to retry."""

    status = 503
    code = "SERVICE_UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class InternalError(ApiError):
    status = 500
    code = "INTERNAL_SERVER_ERROR"


# Scoped errors of the upstream model provider (the reference's MODEL_* codes).


class ModelTooManyRequests(TooManyRequests):
    code = "MODEL_TOO_MANY_REQUESTS"


class ModelBadRequest(BadRequest):
    code = "MODEL_BAD_REQUEST"


class ModelUnavailable(ApiError):
    """The provider could not be reached, or answered 5xx (after the retries)."""

    status = 503
    code = "MODEL_SERVICE_UNAVAILABLE"


class ModelTimeout(ApiError):
    status = 504
    code = "MODEL_TIMEOUT"


class ModelError(ApiError):
    """The provider answered with something that is not a usable completion."""

    status = 502
    code = "MODEL_ERROR"


# Every (status, code) pair the API can answer with; the spec documents these.
ALL = (
    BadRequest,
    NotAuthenticated,
    NotAuthorized,
    NotFound,
    MethodNotAllowed,
    Conflict,
    RequestTimeout,
    ContentTooLarge,
    UriTooLong,
    RangeNotSatisfiable,
    HeadersTooLarge,
    TooManyRequests,
    LimitsReached,
    InternalError,
)


class StartupError(Exception):
    """Not a wire error: what keeps `botkit serve` (or another command) from starting,
    in one line a user can act on. The CLI prints it without a traceback."""
