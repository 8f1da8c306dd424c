"""What every REST blueprint needs: the caller's identity, role checks, body parsing."""

from __future__ import annotations

from functools import wraps
from typing import Any

from flask import request
from marshmallow import Schema

from schemas.common import load_or_raise
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
