"""The error tree, one class per contract error code.

Domain code raises these; the HTTP middleware turns them into
``{"error": {"code", "message", "field"?}}`` with the status below, and the
WebSocket gateway into ``error`` frames.
"""

from __future__ import annotations

__all__ = [
    "HTTP_CODES",
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "error_body",
]


#: The contract's error code for an HTTP status that arrives without one (aiohttp's own 4xx).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, object]:
    """``{"error": {"code", "message", "field"?}}``: every HTTP error's body."""
    err: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        err["field"] = field
    return {"error": err}


class ApiError(Exception):
    """Base of every error a client may see. ``status`` is the HTTP status."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, object]:
        return error_body(self.code, self.message, self.field)


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Invalid(ApiError):
    """A field is present but its value is not acceptable (422, names the field)."""

    status, code = 422, "invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class RateLimited(ApiError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str = "too many requests", *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(ApiError):
    """Redis (or another dependency) does not answer; the client may retry."""

    status, code = 503, "unavailable"
