"""Deleting, disabling, enabling, promoting and demoting an account with ``flask users``:
REST, logins and the live sockets of every node follow within about a second, and no
deleted account can stop a node from recording everyone else's connections."""

import contextlib
import time

import pytest
import socketio
from sqlalchemy import delete

from tests.support import (
    RecordingClient,
    app_on,
    connect_refusal,
    eventually,
    mint_token,
    promote_user,
    register_user,
    run_flask,
)

# From the command's commit to every node: one revocation poll (1 s) plus a loop tick,
# with room for a machine shared by parallel test runs.
CHANGE_BOUND = 3.0


def _users(server, command, user, *extra):
    """``flask users COMMAND EMAIL`` as the operator runs it beside the nodes."""
    env = {name: value for name, value in server.extra_env.items()
           if name.startswith("SOCKETIO_")}
    result = run_flask(server.database_url, "users", command, user.email, *extra, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _seconds_until(check, bound=CHANGE_BOUND):
    """How long ``check`` took to hold, failing past ``bound``."""
    started = time.monotonic()
    eventually(check, timeout=bound, interval=0.02)
    return time.monotonic() - started


def _client(server, token):
    client = RecordingClient(server.url)
    client.connect(token=token)
    client.wait_for("session")
    return client


def _status(server, method, path, token):
    return server.api.request(method, path, token).status_code


def test_deleting_a_user_refuses_their_tokens_and_closes_their_sockets(hub, make_user, connect):
    doomed = make_user()
    client = connect(doomed.token)
    client.wait_for("session")
    assert "deleted user" in _users(hub, "delete", doomed, "--yes")
    assert client.disconnected.wait(CHANGE_BOUND), "a deleted user's socket stayed open"
    _seconds_until(lambda: _status(hub, "GET", "/api/auth/me", doomed.token) == 401)
    assert _status(hub, "POST", "/api/auth/refresh", doomed.refresh_token) == 401
    login = hub.api.post("/api/auth/login",
                         json={"email": doomed.email, "password": doomed.password})
    assert login.status_code == 401
    assert connect_refusal(hub, doomed.token) == {"message": "User not found",
                                                  "data": {"code": "user_not_found"}}


def _delete_by_hand(database_url, user_id):
    """What an operator's SQL or a cascade does: the row goes, and no node is told."""
    from extensions import db
    from models import User

    with app_on(database_url):
        db.session.execute(delete(User).where(User.id == user_id))
        db.session.commit()


def test_a_deleted_users_socket_does_not_freeze_connection_writes_for_others(
        hub, make_user, connect, admin):
    doomed, other = make_user(), make_user()
    doomed_socket = connect(doomed.token)

    def online(user):
        return hub.api.get(f"/api/socket/user/{user.id}/online", admin.token).json()["online"]

    def online_count():
        return hub.api.get("/api/socket/online-count", admin.token).json()["count"]

    eventually(lambda: online(doomed))
    _delete_by_hand(hub.database_url, doomed.id)
    # A pong for the row the cascade removed, and maybe (from the node's cached account
    # facts) a new connect whose row can no longer be inserted: both in the node's batch.
    assert doomed_socket.call("pong", {"timestamp": 0})["ok"] is True
    late = RecordingClient(hub.url)
    with contextlib.suppress(socketio.exceptions.ConnectionError):
        late.connect(token=doomed.token)
    baseline = online_count()
    other_socket = connect(other.token)
    other_socket.wait_for("session")
    eventually(lambda: online_count() == baseline + 1, timeout=5)
    other_socket.close()
    eventually(lambda: online_count() == baseline, timeout=5)
    late.close()
    assert "no longer exists" in hub.log_text() or late.connect_error is not None


def test_a_deleted_accounts_token_does_not_pass_for_the_next_account_with_its_id(
        hub, make_user):
    doomed = make_user()
    issued_earlier = mint_token(str(doomed.id), iat=int(time.time()) - 60)
    _delete_by_hand(hub.database_url, doomed.id)
    newcomer = make_user()
    if hub.name == "sqlite":
        assert newcomer.id == doomed.id, "SQLite gave the highest id again"
    response = hub.api.get("/api/auth/me", issued_earlier)
    assert response.status_code == 401, response.text
    assert hub.api.get("/api/auth/me", newcomer.token).status_code == 200


def test_disabling_ends_every_session_and_enabling_does_not_revive_them(hub, make_user,
                                                                        connect):
    user = make_user()
    client = connect(user.token)
    client.wait_for("session")
    minted_before = mint_token(str(user.id), iat=int(time.time()) - 1)
    assert "disabled" in _users(hub, "disable", user)
    assert client.disconnected.wait(CHANGE_BOUND), "a disabled user's socket stayed open"
    _seconds_until(lambda: _status(hub, "GET", "/api/auth/me", user.token) == 401)
    credentials = {"email": user.email, "password": user.password}
    assert hub.api.post("/api/auth/login", json=credentials).status_code == 401

    _users(hub, "enable", user)
    fresh = hub.api.post("/api/auth/login", json=credentials)
    assert fresh.status_code == 200
    _seconds_until(lambda: _status(hub, "GET", "/api/auth/me",
                                   fresh.json()["accessToken"]) == 200)
    for method, path, token in (("GET", "/api/auth/me", user.token),
                                ("POST", "/api/auth/refresh", user.refresh_token),
                                ("GET", "/api/auth/me", minted_before)):
        response = hub.api.request(method, path, token)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_revoked"
    minted_after = mint_token(str(user.id), iat=int(time.time()))
    assert _status(hub, "GET", "/api/auth/me", minted_after) == 200


def test_demoting_an_admin_closes_admin_routes_and_rooms_at_once(hub, make_user, connect):
    owner = make_user()
    message_id = hub.api.post("/api/messages", owner.token, json={
        "body": "private", "recipients": ["+15551230001"]}).json()["id"]
    boss = promote_user(hub, make_user())
    client = connect(boss.token)
    assert client.wait_for("session")["role"] == "admin"
    assert client.call("track_message", message_id)["ok"] is True
    assert client.call("subscribe_analytics")["ok"] is True
    admin_rooms = ["admins", "analytics:global", f"analytics:user:{boss.id}",
                   f"message:{message_id}", f"user:{boss.id}"]
    assert client.call("get_rooms") == admin_rooms
    assert _status(hub, "GET", "/api/socket/stats", boss.token) == 200

    _users(hub, "demote", boss)
    _seconds_until(lambda: _status(hub, "GET", "/api/socket/stats", boss.token) == 403)
    _seconds_until(lambda: client.call("get_rooms") == [f"analytics:user:{boss.id}",
                                                        f"user:{boss.id}"])
    assert client.call("track_message", message_id)["error"]["code"] == "not_found"
    assert client.sio.connected


def test_users_commands_explain_an_unknown_user(sqlite_hub):
    result = run_flask(sqlite_hub.database_url, "users", "disable", "nobody@example.com")
    assert result.returncode == 1
    assert "No user 'nobody@example.com'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def slow_receipts_hub(module_hub_factory):
    """A hub whose simulated provider reports deliveries 2 s after sending."""
    return module_hub_factory({"SIMULATED_RECEIPT_DELAY": "2"}, name="slow-receipts")


def test_renewing_with_a_users_token_leaves_other_users_message_rooms(slow_receipts_hub):
    server = slow_receipts_hub
    admin, owner = register_user(server, admin=True), register_user(server)
    phones = [f"+1555777{i:04d}" for i in range(20)]
    message_id = server.api.post("/api/messages", owner.token,
                                 json={"body": "mine", "recipients": phones}).json()["id"]
    owner_socket, admin_socket = _client(server, owner.token), _client(server, admin.token)
    try:
        assert owner_socket.call("track_message", message_id)["ok"] is True
        assert admin_socket.call("track_message", message_id)["ok"] is True
        users_token = mint_token(str(admin.id), expires_in=600)
        assert admin_socket.call("authenticate", users_token)["ok"] is True
        assert admin_socket.call("get_rooms") == [f"user:{admin.id}"]

        owner_socket.wait_for("message_update", lambda m: m["deliveredCount"] == 20,
                              timeout=15)
        admin_socket.call("get_rooms")
        delivered = [u for u in admin_socket.received("recipient_update")
                     if u["status"] == "DELIVERED"]
        assert delivered == [], f"{len(delivered)} of another user's updates after renewal"
    finally:
        owner_socket.close()
        admin_socket.close()


def test_account_changes_and_logouts_reach_every_node(cluster):
    a, b = cluster
    victim = register_user(a)
    on_a, on_b = _client(a, victim.token), _client(b, victim.token)
    boss = promote_user(a, register_user(a))
    boss_on_b = _client(b, boss.token)
    assert "admins" in boss_on_b.call("get_rooms")

    _users(a, "demote", boss)
    for node in (a, b):
        _seconds_until(lambda node=node: _status(node, "GET", "/api/socket/stats",
                                                 boss.token) == 403)
    _seconds_until(lambda: "admins" not in boss_on_b.call("get_rooms"))

    _users(a, "delete", victim, "--yes")
    assert on_a.disconnected.wait(CHANGE_BOUND) and on_b.disconnected.wait(CHANGE_BOUND)
    for node in (a, b):
        _seconds_until(lambda node=node: _status(node, "GET", "/api/auth/me",
                                                 victim.token) == 401)

    # Logging out on A with the refresh token ends the access token refreshed on B.
    user = register_user(a)
    refreshed = b.api.post("/api/auth/refresh", user.refresh_token).json()["accessToken"]
    refreshed_on_b = _client(b, refreshed)
    assert a.api.post("/api/auth/logout", user.refresh_token).status_code == 200
    assert refreshed_on_b.disconnected.wait(CHANGE_BOUND)
    _seconds_until(lambda: _status(b, "GET", "/api/auth/me", refreshed) == 401)
    boss_on_b.close()
