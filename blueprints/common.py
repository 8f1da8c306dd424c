"""What every REST blueprint needs: the caller's identity, role checks, body parsing.

Refusals say what to do: a refused token has the code a socket's
``connect_error`` gives for the same cause and a message naming the way out,
and a body that is not JSON says where it breaks.
"""

from __future__ import annotations

import json
from functools import wraps
from typing import Any, NoReturn

from flask import Request, request
from marshmallow import Schema
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import IntegerConverter, Map
from werkzeug.wsgi import LimitedStream

from schemas.common import MAX_ID, MAX_USER_ID, load_or_raise
from services import auth
from services.auth import Identity
from services.errors import (
    AuthRefused,
    Forbidden,
    InvalidJson,
    InvalidPayload,
    UnsupportedMediaType,
)
from services.transport.json_input import TOO_DEEP

LOG_IN = "log in again (POST /api/auth/login)"
WANTED = {auth.ACCESS_ONLY: "an access token", auth.REFRESH_ONLY: "a refresh token"}


def token_advice(code: str, token_types: frozenset[str]) -> str | None:
    """What a REST caller does about a refused token, by the refusal's code."""
    wanted = WANTED.get(token_types, "a token")
    return {
        "auth_required": f"send the header Authorization: Bearer <token>, with {wanted} "
                         "from POST /api/auth/login",
        "invalid_token": f"send {wanted} this hub issued (POST /api/auth/login)",
        "token_expired": "get a new access token from POST /api/auth/refresh with the refresh "
                         f"token as Bearer, or {LOG_IN}" if token_types == auth.ACCESS_ONLY
                         else LOG_IN,
        "token_revoked": f"its session was logged out or the account's sessions ended: {LOG_IN}",
        "user_not_found": "the account was deleted or disabled (an admin can enable it again)",
    }.get(code)


def bearer_identity(token_types: frozenset[str] = auth.ACCESS_ONLY) -> Identity:
    """The caller's token (an access token unless told), checked exactly as a socket's is
    (``auth.authenticate_token``); a refusal keeps the socket's code and says what to do."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    try:
        return auth.authenticate_token(token, token_types)
    except AuthRefused as refused:
        advice = token_advice(refused.code, token_types)
        raise AuthRefused(f"{refused.message}: {advice}" if advice else refused.message,
                          refused.code) from None


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


class ApiRequest(Request):
    """Flask's request, with refusals of a body that say what is wrong and what to send.

    Flask's own answer to a body ``get_json()`` cannot read is a bare 400,
    the same whether the Content-Type is missing or the JSON does not parse.
    And Werkzeug reads a chunked body (no Content-Length) up to
    ``MAX_CONTENT_LENGTH`` and stops there without looking further: a larger
    body was cut at the limit and read as if whole.
    """

    def get_data(self, cache: bool = True, as_text: bool = False,
                 parse_form_data: bool = False) -> Any:
        unread = getattr(self, "_cached_data", None) is None
        data = super().get_data(cache=cache, as_text=as_text, parse_form_data=parse_form_data)
        stream = self.stream
        if (unread and self.content_length is None and isinstance(stream, LimitedStream)
                and stream.is_exhausted and self.environ["wsgi.input"].read(1)):
            raise RequestEntityTooLarge()
        return data

    def on_json_loading_failed(self, e: ValueError | None) -> NoReturn:
        if e is None:
            sent = f"this request's is {self.mimetype}" if self.mimetype else "it had none"
            raise UnsupportedMediaType(f"Send Content-Type: application/json ({sent})")
        if not self.get_data(cache=True):
            raise InvalidJson("Body is empty: send a JSON object")
        if isinstance(e, UnicodeDecodeError):
            raise InvalidJson("Body is not valid JSON: it is not UTF-8 text")
        if isinstance(e, json.JSONDecodeError):
            raise InvalidJson(f"Body is not valid JSON at line {e.lineno} column {e.colno}: "
                              f"{e.msg}")
        if str(e) == TOO_DEEP:
            raise InvalidJson("Body is JSON nested too deeply: at most about 1,000 levels are read")
        raise InvalidJson(f"Body is not valid JSON: {e}")


JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "true or false",
              int: "a number", float: "a number", type(None): "null"}


def json_body(schema: type[Schema]) -> dict[str, Any]:
    """The request's JSON object validated by ``schema``; 400 saying why not."""
    body = request.get_json()
    if not isinstance(body, dict):
        raise InvalidPayload("Body must be a JSON object, not "
                             f"{JSON_TYPES.get(type(body), type(body).__name__)}")
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
