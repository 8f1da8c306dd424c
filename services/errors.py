"""One exception hierarchy for REST and socket errors.

Services raise these; the REST error handler turns them into
``{error: {code, message, details?}}`` with ``status``, and the socket wrapper
into ``{ok: false, error: {code, message}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class AppError(Exception):
    code = "internal_error"
    status = 500
    default_message = "Internal error"
    headers: Mapping[str, str] = {}

    def __init__(self, message: str | None = None, details: Any = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return error


class InvalidPayload(AppError):
    code = "invalid_payload"
    status = 400
    default_message = "Invalid payload"


class InvalidJson(InvalidPayload):
    """A body that is not JSON at all, as opposed to JSON the schema refuses."""

    code = "invalid_json"
    default_message = "Body is not valid JSON"


class UnsupportedMediaType(InvalidPayload):
    """Invalid input as API.md's status list has it (400), with the header to send named."""

    code = "unsupported_media_type"
    default_message = "Send Content-Type: application/json"


class Unauthenticated(AppError):
    code = "unauthenticated"
    status = 401
    default_message = "Authentication required"


class Forbidden(AppError):
    code = "forbidden"
    status = 403
    default_message = "Forbidden"


class NotFound(AppError):
    code = "not_found"
    status = 404
    default_message = "Not found"


class Conflict(AppError):
    code = "conflict"
    status = 409
    default_message = "Conflict"


class PayloadTooLarge(AppError):
    code = "payload_too_large"
    status = 413
    default_message = "Request body too large"


class RateLimited(AppError):
    code = "rate_limited"
    status = 429
    default_message = "Too many requests"


class QuotaExceeded(AppError):
    """A daily quota is used up; ``retry_after`` is the seconds until it renews."""

    code = "quota_exceeded"
    status = 429
    default_message = "Daily quota exceeded"

    def __init__(self, message: str, *, details: Any, retry_after: int) -> None:
        super().__init__(message, details)
        self.headers = {"Retry-After": str(retry_after)}


class Unavailable(AppError):
    code = "unavailable"
    status = 503
    default_message = "Service temporarily unavailable"


class AuthRefused(Unauthenticated):
    """A refused token, with the code of its cause (``token_expired``, ...), the same on a
    socket's ``connect_error`` (where ``message`` is what it shows) and on REST."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code
