"""What every REST blueprint needs: the caller's identity, role checks, body parsing."""

from __future__ import annotations

from functools import wraps
from typing import Any

from flask import request
from marshmallow import Schema
from werkzeug.routing import IntegerConverter, Map

from schemas.common import MAX_ID, MAX_USER_ID, load_or_raise
from services import auth
from services.auth import Identity
from services.errors import AuthRefused, Forbidden, InvalidPayload, Unauthenticated


def bearer_identity(token_types: frozenset[str] = auth.ACCESS_ONLY) -> Identity:
    """The caller's token (an access token unless told), checked exactly as a socket's is
    (``auth.authenticate_token``)."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    try:
        return auth.authenticate_token(token, token_types)
    except AuthRefused as refused:
        raise Unauthenticated(refused.message) from None


def authenticated(view):
    """Any signed-in caller; the identity is passed as ``identity``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        return view(*args, identity=bearer_identity(), **kwargs)

    return wrapper


def admin_only(view):
    """Admins only: everyone else gets 403."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        identity = bearer_identity()
        if not identity.is_admin:
            raise Forbidden("Admin role required")
        return view(*args, identity=identity, **kwargs)

    return wrapper


def json_body(schema: type[Schema]) -> dict[str, Any]:
    """The request's JSON body validated by ``schema``; 400 with details otherwise."""
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidPayload("Request body must be a JSON object")
    return load_or_raise(schema, body)


def query_args(schema: type[Schema]) -> dict[str, Any]:
    return load_or_raise(schema, request.args.to_dict())


def idempotency_key() -> str | None:
    return request.headers.get("Idempotency-Key")


class IdConverter(IntegerConverter):
    """``<id:...>``: a row id in a path, 1 to the largest a 64-bit id column holds.

    Werkzeug's ``int`` takes any number of digits, and an id past 64 bits
    reached the database: SQLite raised ``OverflowError`` (500), PostgreSQL an
    out-of-range error (503). Out of range is now no such route: 404 JSON.
    """

    def __init__(self, url_map: Map, max: int = MAX_ID) -> None:
        super().__init__(url_map, min=1, max=max)


class UserIdConverter(IdConverter):
    """``<user_id:...>``: a user id, at most ``MAX_USER_ID``."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, max=MAX_USER_ID)


ID_CONVERTERS = {"id": IdConverter, "user_id": UserIdConverter}
