"""REST errors: every failure is ``{error: {code, message, details?}}``, never HTML."""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, request
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from extensions import db
from services.errors import AppError, PayloadTooLarge, Unavailable

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "invalid_payload",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(code: str, message: str, status: int, details=None):
    error = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return jsonify({"error": error}), status


def describe_size(size: int) -> str:
    """``1.2 MB``, ``16 KB``, ``900 bytes`` (units of 1024, as the limits are set)."""
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def too_large() -> PayloadTooLarge:
    """How big the body is and what the limit is, in the same unit unless they look equal."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    size = request.content_length
    if size is None:  # chunked: counted while read, so only "more than the limit" is known
        return PayloadTooLarge(f"Body is larger than the limit of {describe_size(limit)} "
                               "(MAX_CONTENT_LENGTH)")
    shown, allowed = describe_size(size), describe_size(limit)
    if shown == allowed:
        shown, allowed = f"{size:,} bytes", f"{limit:,} bytes"
    return PayloadTooLarge(f"Body is {shown}; the limit is {allowed} (MAX_CONTENT_LENGTH)")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(AppError)
    def handle_app_error(error: AppError):
        response, status = error_response(error.code, error.message, error.status, error.details)
        response.headers.update(error.headers)
        return response, status

    @app.errorhandler(RequestEntityTooLarge)
    def handle_too_large(error: RequestEntityTooLarge):
        return handle_app_error(too_large())

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        status = error.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        response, status = error_response(code, error.description or error.name, status)
        if status == 429 and error.response is not None:
            retry_after = error.response.headers.get("Retry-After")
            if retry_after:
                response.headers["Retry-After"] = retry_after
        return response, status

    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    def handle_database_down(error: Exception):
        log.error("database unavailable: %s", type(error).__name__)
        db.session.rollback()
        unavailable = Unavailable("Database unavailable, try again shortly")
        return error_response(unavailable.code, unavailable.message, unavailable.status)

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        log.exception("unhandled error")
        return error_response("internal_error", "Internal error", 500)

