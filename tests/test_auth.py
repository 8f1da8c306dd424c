"""Registration, login, refresh, logout, and every way a socket connect is refused."""

import time
import uuid

import jwt
import pytest
import socketio

from tests.churn import internals
from tests.support import (
    JWT_SECRET,
    LiveServer,
    RecordingClient,
    connect_refusal,
    mint_token,
    raw_websocket,
    register_user,
    rss_kb,
    run_flask,
)


@pytest.fixture(scope="module")
def closed_hub(module_hub_factory):
    """A hub on its own SQLite database with ``REGISTRATION_ENABLED=0``; no users yet."""
    return module_hub_factory({"REGISTRATION_ENABLED": "0"}, name="closed", admin=False)


def _flask_users_create(database_url: str, *arguments: str, typed: str | None = None):
    """``flask users create ...`` as an operator runs it; ``typed`` is what they type."""
    return run_flask(database_url, "users", "create", *arguments, typed=typed)


def _login(server, email, password):
    response = server.api.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def test_register_login_and_refresh(api):
    alice = f"alice-{uuid.uuid4().hex[:8]}@example.com"
    response = api.post("/api/auth/register",
                        json={"email": alice.title(), "password": "long enough pw",
                              "name": "Alice"})
    assert response.status_code == 201
    user = response.json()["user"]
    assert user["email"] == alice and user["role"] == "user"
    assert isinstance(user["id"], str)

    login = api.post("/api/auth/login", json={"email": alice, "password": "long enough pw"})
    assert login.status_code == 200
    body = login.json()
    assert {"accessToken", "refreshToken", "user"} <= body.keys()

    refreshed = api.post("/api/auth/refresh", body["refreshToken"])
    assert refreshed.status_code == 200
    me = api.get("/api/auth/me", refreshed.json()["accessToken"])
    assert me.status_code == 200 and me.json()["user"]["email"] == alice


def test_registering_a_taken_email_answers_like_a_new_one_and_changes_nothing(api, user):
    fresh = api.post("/api/auth/register", json={
        "email": f"fresh-{uuid.uuid4().hex[:8]}@example.com", "password": "another password"})
    taken = api.post("/api/auth/register",
                     json={"email": user.email.upper(), "password": "another password"})
    assert fresh.status_code == taken.status_code == 201
    assert fresh.headers["Content-Type"] == taken.headers["Content-Type"]
    new_user, lookalike = fresh.json()["user"], taken.json()["user"]
    assert new_user.keys() == lookalike.keys()
    assert lookalike["email"] == user.email and lookalike["role"] == "user"
    assert lookalike["id"].isdigit() and lookalike["id"] != str(user.id)
    assert lookalike["name"] is None and lookalike["createdAt"].endswith("Z")
    assert api.post("/api/auth/login", json={"email": user.email,
                                             "password": user.password}).status_code == 200
    assert api.post("/api/auth/login", json={"email": user.email,
                                             "password": "another password"}).status_code == 401


@pytest.mark.parametrize("password", ["password1", "Password123", "qwertyuiop", "iloveyou1"])
def test_common_passwords_are_refused(api, password):
    response = api.post("/api/auth/register", json={
        "email": f"common-{uuid.uuid4().hex[:8]}@example.com", "password": password})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "password": ["This password is one of the most common ones; choose another."]}


def test_register_rejects_bad_bodies(api):
    bad = api.post("/api/auth/register", json={"email": "not-an-email", "password": "x"})
    assert bad.status_code == 400
    assert {"email", "password"} <= bad.json()["error"]["details"].keys()
    not_json = api.post("/api/auth/register", data="hello",
                        headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "unsupported_media_type"


def test_login_refusal_is_the_same_for_unknown_user_and_wrong_password(api, user):
    wrong = api.post("/api/auth/login", json={"email": user.email, "password": "nope nope"})
    unknown = api.post("/api/auth/login",
                       json={"email": "nobody@example.com", "password": "nope nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_access_token_cannot_refresh_and_refresh_token_cannot_call_the_api(api, user):
    assert api.post("/api/auth/refresh", user.token).status_code == 401
    assert api.get("/api/socket/online-count", user.refresh_token).status_code == 401


def test_rest_refusals_are_json(api, user):
    missing = api.get("/api/socket/online-count")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "auth_required"
    assert missing.json()["error"]["message"].startswith("Authentication required: ")
    forged = api.get("/api/socket/online-count", mint_token(str(user.id), secret="x" * 40))
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_token"
    assert forged.json()["error"]["message"].startswith("Invalid token: ")
    expired = api.get("/api/socket/online-count", mint_token(str(user.id), expires_in=-60))
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "token_expired"
    assert expired.json()["error"]["message"].startswith("Token expired: ")
    unknown_route = api.get("/api/nothing-here")
    assert unknown_route.status_code == 404 and unknown_route.json()["error"]["code"] == \
        "not_found"


def test_logout_revokes_the_token_for_rest_and_sockets(api, make_user, hub):
    someone = make_user()
    assert api.post("/api/auth/logout", someone.token).status_code == 200
    assert api.get("/api/socket/online-count", someone.token).status_code == 401
    client = RecordingClient(hub.url)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(token=someone.token)
    assert client.connect_error == {"message": "Token revoked",
                                    "data": {"code": "token_revoked"}}


def test_logout_disconnects_live_sockets_of_that_token(api, make_user, connect):
    someone = make_user()
    client = connect(someone.token)
    assert api.post("/api/auth/logout", someone.token).status_code == 200
    assert client.disconnected.wait(5), "revoked token's socket stayed connected"


def test_connect_receives_session_with_user_role_and_expiry(connect, user):
    client = connect(user.token)
    session = client.wait_for("session")
    assert session["userId"] == str(user.id)
    assert session["role"] == "user"
    assert session["expiresAt"].endswith("Z")


def test_token_from_other_service_sharing_the_key_is_accepted(connect, user):
    client = connect(mint_token(str(user.id)))
    assert client.wait_for("session")["userId"] == str(user.id)


def test_token_is_read_from_authorization_header_and_query(connect, user):
    by_header = connect(auth={}, headers={"Authorization": f"Bearer {user.token}"})
    assert by_header.wait_for("session")["userId"] == str(user.id)
    by_query = connect(query=f"token={user.token}")
    assert by_query.wait_for("session")["userId"] == str(user.id)


REFUSALS = [
    pytest.param(None, "Authentication required", "auth_required", id="no-auth"),
    pytest.param({}, "Authentication required", "auth_required", id="empty-auth"),
    pytest.param({"token": ""}, "Authentication required", "auth_required", id="empty-token"),
    pytest.param({"token": 123}, "Invalid token", "invalid_token", id="number"),
    pytest.param({"token": ["x"]}, "Invalid token", "invalid_token", id="list"),
    pytest.param({"token": "not.a.jwt"}, "Invalid token", "invalid_token", id="garbage"),
    pytest.param({"token": "x" * 10000}, "Invalid token", "invalid_token", id="huge"),
]


@pytest.mark.parametrize(("auth", "message", "code"), REFUSALS)
def test_connect_refused_with_clear_reason(hub, auth, message, code):
    client = RecordingClient(hub.url)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(auth=auth if auth is not None else None)
    assert client.connect_error == {"message": message, "data": {"code": code}}


def _refused_without_a_token(server: LiveServer) -> str:
    """One Socket.IO CONNECT without a token, on a WebSocket of its own: the refusal."""
    ws = raw_websocket(server)
    try:
        assert ws.recv().startswith("0")  # Engine.IO's open packet
        ws.send("40")
        return ws.recv()
    finally:
        ws.close()


def test_token_less_connects_leave_the_hubs_memory_and_tracebacks_flat(sqlite_hub):
    """1,000 connects without a token, each refused, keep nothing alive.

    The refusal was one exception object raised again and again: each raise
    added its frames to the object's traceback, so every refused connect's
    frames (and the request they held) stayed, 4 entries a connect.
    """
    admin = register_user(sqlite_hub, admin=True)
    for _ in range(100):  # the allocator and the caches settle first
        _refused_without_a_token(sqlite_hub)
    before, rss_before = internals(sqlite_hub, admin), rss_kb(sqlite_hub.process.pid)
    for _ in range(1000):
        assert _refused_without_a_token(sqlite_hub) == (
            '44{"message":"Authentication required","data":{"code":"auth_required"}}')
    after, rss_after = internals(sqlite_hub, admin), rss_kb(sqlite_hub.process.pid)
    assert after["tracebacks"] - before["tracebacks"] < 50, (before["tracebacks"],
                                                             after["tracebacks"])
    assert rss_after - rss_before < 2048, (rss_before, rss_after)


def test_connect_refuses_expired_forged_and_unknown_user_tokens(hub, user):
    assert connect_refusal(hub, mint_token(str(user.id), expires_in=-120)) == {
        "message": "Token expired", "data": {"code": "token_expired"}}
    assert connect_refusal(hub, mint_token(str(user.id), secret="another-secret-" * 3)) == {
        "message": "Invalid token", "data": {"code": "invalid_token"}}
    assert connect_refusal(hub, mint_token("987654321")) == {
        "message": "User not found", "data": {"code": "user_not_found"}}
    assert connect_refusal(hub, mint_token(user.id))["data"]["code"] == "invalid_token"


def test_connect_refuses_refresh_tokens_and_other_algorithms(hub, user):
    assert connect_refusal(hub, user.refresh_token)["message"] == "Invalid token"
    hs512 = mint_token(str(user.id), algorithm="HS512")
    assert connect_refusal(hub, hs512)["message"] == "Invalid token"
    unsigned = mint_token(str(user.id), secret=None, algorithm="none")
    assert connect_refusal(hub, unsigned)["message"] == "Invalid token"


def test_admin_role_comes_from_the_token_claim(connect, admin):
    client = connect(admin.token)
    assert client.wait_for("session")["role"] == "admin"
    assert "admins" in client.call("get_rooms")


def test_authenticate_renews_the_token_without_reconnecting(connect, user):
    client = connect(mint_token(str(user.id), expires_in=120))
    first = client.wait_for("session")["expiresAt"]
    renewed = client.call("authenticate", mint_token(str(user.id), expires_in=3600))
    assert renewed["ok"] is True and renewed["expiresAt"] > first
    assert client.sio.connected


def test_authenticate_refuses_another_users_token_and_garbage(connect, make_user):
    first, second = make_user(), make_user()
    client = connect(first.token)
    other = client.call("authenticate", second.token)
    assert other == {"ok": False, "error": {"code": "forbidden",
                                            "message": "The new token belongs to another user"}}
    garbage = client.call("authenticate", "garbage")
    assert garbage["ok"] is False and garbage["error"]["code"] == "unauthenticated"
    assert client.call("authenticate", 42)["error"]["code"] == "invalid_payload"


def test_expiring_token_is_warned_then_expired_then_dropped(connect, user):
    # The testing server warns 60 s ahead and drops after a 3 s grace: a token
    # with a few seconds left exercises every step quickly.
    client = connect(mint_token(str(user.id), expires_in=3))
    warning = client.wait_for("auth_expiring", timeout=5)
    assert warning["expiresAt"].endswith("Z")
    expired = client.wait_for("auth_expired", timeout=8)
    assert "authenticate" in expired["message"]
    started = time.monotonic()
    assert client.disconnected.wait(20), "expired socket was not dropped"
    assert time.monotonic() - started > 2


def test_renewing_after_auth_expired_keeps_the_socket(connect, user):
    client = connect(mint_token(str(user.id), expires_in=2))
    client.wait_for("auth_expired", timeout=8)
    assert client.call("authenticate", mint_token(str(user.id), expires_in=600))["ok"]
    assert not client.disconnected.wait(5)



def test_registration_switched_off_is_refused(closed_hub):
    response = closed_hub.api.post("/api/auth/register",
                                   json={"email": "newcomer@example.com",
                                         "password": "long enough pw"})
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "forbidden",
                                         "message": "Registration is disabled"}}
    refused = closed_hub.api.post("/api/auth/login", json={"email": "newcomer@example.com",
                                                          "password": "long enough pw"})
    assert refused.status_code == 401


def test_cli_creates_an_admin_whose_token_carries_the_role(closed_hub):
    created = _flask_users_create(closed_hub.database_url, "Boss@Example.com", "--admin",
                                  "--password", "boss password 123")
    assert created.returncode == 0, created.stderr
    body = _login(closed_hub, "boss@example.com", "boss password 123")
    assert body["user"]["role"] == "admin"
    claims = jwt.decode(body["accessToken"], JWT_SECRET, algorithms=["HS256"])
    assert claims["role"] == "admin" and claims["sub"] == body["user"]["id"]
    client = RecordingClient(closed_hub.url)
    client.connect(token=body["accessToken"])
    try:
        assert client.wait_for("session")["role"] == "admin"
        assert "admins" in client.call("get_rooms")
    finally:
        client.close()


def test_cli_prompts_for_the_password_and_without_admin_creates_a_user(closed_hub):
    created = _flask_users_create(closed_hub.database_url, "clerk@example.com",
                                  typed="clerk password 123\nclerk password 123\n")
    assert created.returncode == 0, created.stderr
    body = _login(closed_hub, "clerk@example.com", "clerk password 123")
    assert body["user"]["role"] == "user"
    claims = jwt.decode(body["accessToken"], JWT_SECRET, algorithms=["HS256"])
    assert claims.get("role") != "admin"


@pytest.mark.parametrize(("arguments", "complaint"), [
    (("carol", "--password", "x"),
     "Error: email: Not a valid email address.\npassword: Length must be between 8 and 256."),
    (("carol@example.com", "--password", "iloveyou1"),
     "Error: password: This password is one of the most common ones; choose another."),
    (("clerk@example.com", "--password", "another clerk password"),
     "Error: A user with this email already exists"),
])
def test_cli_applies_the_apis_rules_and_explains_refusals(closed_hub, arguments, complaint):
    if arguments[0] == "clerk@example.com":  # the account exists, whichever test made it
        _flask_users_create(closed_hub.database_url, "clerk@example.com",
                            "--password", "clerk password 123")
    refused = _flask_users_create(closed_hub.database_url, *arguments)
    assert refused.returncode == 1
    assert complaint in refused.stderr and "Traceback" not in refused.stderr
    assert closed_hub.api.post("/api/auth/login", json={
        "email": arguments[0], "password": arguments[2]}).status_code == 401
