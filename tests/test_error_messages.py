"""Errors that say what to do, against a live hub: each has its exact code, and a message
that names the place to fix or the thing to send. One cause has one code on REST and
on a socket's ``connect_error``; docs/API.md's table lists every code the hub answers."""

from __future__ import annotations

import json
import re

import pytest
import requests

from blueprints.openapi import ROUTES
from services.messaging.webhook_signing import sign_webhook_body
from tests.support import ROOT, WEBHOOK_SECRET, connect_refusal, mint_token, register_user

MB = 1024 * 1024


def _error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    return response.json()["error"]


def _post_raw(server, path: str, body: bytes, content_type: str,
              token: str | None = None) -> requests.Response:
    return server.api.post(path, token, headers={"Content-Type": content_type}, data=body)


# Every route that takes a JSON body, with an admin's token and a real id in its path.
BODY_ROUTES = [route for route in ROUTES if route.body is not None]


@pytest.fixture(scope="module")
def admin(sqlite_hub):
    return register_user(sqlite_hub, admin=True)


def _route_path(route, admin) -> str:
    return route.path.replace("{userId}", str(admin.id))


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_malformed_json_is_invalid_json_at_its_line_and_column(sqlite_hub, admin, route):
    body = b'{"title": "Hello" "message": "x"}'
    response = sqlite_hub.api.request(route.method.upper(), _route_path(route, admin),
                                      admin.token, data=body,
                                      headers=_signed(route, body, "application/json"))
    assert _error(response, 400) == {
        "code": "invalid_json",
        "message": "Body is not valid JSON at line 1 column 19: Expecting ',' delimiter"}


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_a_body_without_its_content_type_is_told_which_to_send(sqlite_hub, admin, route):
    body = b'{"title": "Hello", "message": "x"}'
    response = sqlite_hub.api.request(route.method.upper(), _route_path(route, admin),
                                      admin.token, data=body, headers=_signed(route, body))
    assert _error(response, 400) == {
        "code": "unsupported_media_type",
        "message": "Send Content-Type: application/json (it had none)"}


def _signed(route, body: bytes, content_type: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": content_type} if content_type else {}
    if route.path == "/api/webhooks/delivery":
        headers["X-Signature"] = sign_webhook_body(body, WEBHOOK_SECRET)
    return headers


def test_the_position_counts_lines_of_a_pasted_body(sqlite_hub, admin):
    body = '{\n  "title": "Hello",\n  "message": "x",\n}\n'
    response = sqlite_hub.api.post(f"/api/socket/notify/{admin.id}", admin.token, data=body,
                                   headers={"Content-Type": "application/json"})
    assert _error(response, 400) == {
        "code": "invalid_json",
        "message": "Body is not valid JSON at line 4 column 1: "
                   "Expecting property name enclosed in double quotes"}


@pytest.mark.parametrize(("body", "content_type", "status", "error"), [
    (b"", "application/json", 400,
     {"code": "invalid_json", "message": "Body is empty: send a JSON object"}),
    (b"\xff\xfe\x00", "application/json", 400,
     {"code": "invalid_json", "message": "Body is not valid JSON: it is not UTF-8 text"}),
    (b'{"email": "a@example.com"}', "text/plain", 400,
     {"code": "unsupported_media_type",
      "message": "Send Content-Type: application/json (this request's is text/plain)"}),
    (b'{"email": "a@example.com"}', "application/x-www-form-urlencoded", 400,
     {"code": "unsupported_media_type", "message": "Send Content-Type: application/json "
                                                   "(this request's is "
                                                   "application/x-www-form-urlencoded)"}),
    (b'["a@example.com"]', "application/json", 400,
     {"code": "invalid_payload", "message": "Body must be a JSON object, not an array"}),
    (b"null", "application/json", 400,
     {"code": "invalid_payload", "message": "Body must be a JSON object, not null"}),
])
def test_bodies_that_are_not_a_json_object_say_why(sqlite_hub, body, content_type, status,
                                                    error):
    response = _post_raw(sqlite_hub, "/api/auth/login", body, content_type)
    assert _error(response, status) == error


def test_a_body_with_a_json_content_type_of_its_own_is_read(sqlite_hub, admin):
    """``application/merge-patch+json`` and friends are JSON too."""
    response = _post_raw(sqlite_hub, "/api/auth/login",
                         json.dumps({"email": admin.email, "password": admin.password}).encode(),
                         "application/vnd.api+json; charset=utf-8")
    assert response.status_code == 200, response.text


def test_an_oversized_body_is_told_its_size_and_the_limit(sqlite_hub, admin):
    body = b'{"body": "' + b"x" * (int(1.2 * MB) - 12) + b'"}'
    assert len(body) == int(1.2 * MB)
    response = _post_raw(sqlite_hub, "/api/auth/login", body, "application/json")
    assert _error(response, 413) == {
        "code": "payload_too_large",
        "message": "Body is 1.2 MB; the limit is 1 MB (MAX_CONTENT_LENGTH)"}
    just_over = b" " * (MB + 1)
    response = _post_raw(sqlite_hub, "/api/messages", just_over, "application/json",
                         admin.token)
    assert _error(response, 413) == {
        "code": "payload_too_large",
        "message": "Body is 1,048,577 bytes; the limit is 1,048,576 bytes (MAX_CONTENT_LENGTH)"}


def _chunked(body: bytes, size: int = 64 * 1024):
    """``body`` sent in chunks, without a Content-Length."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def test_a_chunked_body_over_the_limit_is_refused_not_cut_at_it(sqlite_hub, admin):
    """Werkzeug read a chunked body up to the limit and stopped: the first megabyte of a
    larger body passed for the whole of it."""
    login = json.dumps({"email": admin.email, "password": admin.password}).encode()
    whole = login + b" " * (MB - len(login))
    assert len(whole) == MB
    accepted = requests.post(sqlite_hub.url + "/api/auth/login", data=_chunked(whole),
                             headers={"Content-Type": "application/json"}, timeout=15)
    assert accepted.status_code == 200, accepted.text[:300]
    over = requests.post(sqlite_hub.url + "/api/auth/login", data=_chunked(whole + b" "),
                         headers={"Content-Type": "application/json"}, timeout=15)
    assert _error(over, 413) == {
        "code": "payload_too_large",
        "message": "Body is larger than the limit of 1 MB (MAX_CONTENT_LENGTH)"}


# One cause, one code ------------------------------------------------------------------

def _revoked_token(server) -> str:
    user = register_user(server)
    assert server.api.post("/api/auth/logout", user.token).status_code == 200
    return user.token


TOKENS = {
    "auth_required": lambda server: None,
    "invalid_token": lambda server: "not.a.jwt",
    "token_expired": lambda server: mint_token(str(register_user(server).id), expires_in=-60),
    "token_revoked": _revoked_token,
    "user_not_found": lambda server: mint_token("2000000000"),
}
# What each REST refusal's message tells the caller to do.
FIXES = {
    "auth_required": "send the header Authorization: Bearer <token>, with an access token "
                     "from POST /api/auth/login",
    "invalid_token": "send an access token this hub issued (POST /api/auth/login)",
    "token_expired": "get a new access token from POST /api/auth/refresh with the refresh token "
                     "as Bearer, or log in again (POST /api/auth/login)",
    "token_revoked": "log in again (POST /api/auth/login)",
    "user_not_found": "an admin can enable it again",
}


@pytest.mark.parametrize("code", list(TOKENS))
def test_a_refused_token_has_the_same_code_on_rest_as_on_connect(hub, code):
    token = TOKENS[code](hub)
    error = _error(hub.api.get("/api/auth/me", token), 401)
    assert error["code"] == code
    assert FIXES[code] in error["message"]
    refusal = connect_refusal(hub, token)
    assert refusal["data"] == {"code": code}
    assert error["message"].startswith(refusal["message"] + ": ")


def test_an_expired_refresh_token_is_told_to_log_in_again(sqlite_hub):
    user = register_user(sqlite_hub)
    expired = mint_token(str(user.id), expires_in=-60, type="refresh")
    error = _error(sqlite_hub.api.post("/api/auth/refresh", expired), 401)
    assert error == {"code": "token_expired",
                     "message": "Token expired: log in again (POST /api/auth/login)"}
    wrong_kind = _error(sqlite_hub.api.post("/api/auth/refresh", user.token), 401)
    assert wrong_kind == {"code": "invalid_token", "message": "Invalid token: send a refresh "
                                                              "token this hub issued "
                                                              "(POST /api/auth/login)"}


# The table -----------------------------------------------------------------------------

def _codes_in_the_source() -> set[str]:
    """Every error code the hub's code can answer with, found where codes are written."""
    patterns = [r'^\s+code = "([a-z_]+)"',                     # AppError classes
                r'AuthRefused\([^)]*?"([a-z_]+)"\)',             # refused tokens, connects
                r'_refuse\(handler, "[^"]+", "([a-z_]+)"',        # Engine.IO refusals
                r'\{"code": "([a-z_]+)"\}',                      # connect_error data
                r'^\s+\d{3}: "([a-z_]+)",',                      # HTTP statuses
                r'_HTTP_CODES\.get\(status, "([a-z_]+)"\)',
                r'error_response\("([a-z_]+)"',
                r'_json_error\("[^"]+", "([a-z_]+)"',                 # Engine.IO answers
                r'return "\d{3} [A-Z ]+", "([a-z_]+)"']
    codes = set()
    for path in [*(ROOT / "services").rglob("*.py"), *(ROOT / "blueprints").glob("*.py")]:
        text = path.read_text()
        for pattern in patterns:
            codes |= set(re.findall(pattern, text, flags=re.MULTILINE))
    return codes


def test_docs_api_md_lists_every_error_code_the_hub_answers():
    text = (ROOT / "docs" / "API.md").read_text()
    table = text.split("### Error codes\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))
    found = _codes_in_the_source()
    assert {"invalid_json", "token_expired", "payload_too_large", "http_error", "invalid_session",
            "bad_request", "invalid_namespace"} <= found
    assert found - listed == set(), "add these codes to docs/API.md's table"
