"""Upstream model failures, as the API errors they become (scoped MODEL_* codes)."""

from __future__ import annotations

from ..actions.errors import ApiError, BadRequest, TooManyRequests


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
