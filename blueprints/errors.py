"""REST errors: every failure is ``{error: {code, message, details?}}``, never HTML."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from extensions import db
from services.errors import AppError, Unavailable

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


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(AppError)
    def handle_app_error(error: AppError):
        response, status = error_response(error.code, error.message, error.status, error.details)
        response.headers.update(error.headers)
        return response, status

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

