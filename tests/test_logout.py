"""Logging out ends the whole session: both tokens of the pair, every token refreshed from
it, and their sockets; tokens from another service, with or without ``jti``, alike."""

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import flask_migrate
import jwt
import pytest
from sqlalchemy import text

from extensions import db
from services import auth
from services.errors import AuthRefused
from tests.support import (
    JWT_SECRET,
    app_on,
    connect_refusal,
    mint_token,
)


def _revoked(response) -> bool:
    return response.status_code == 401 and response.json()["error"]["code"] == "token_revoked"


def test_logout_with_the_access_token_also_revokes_the_refresh_token(api, user):
    assert api.post("/api/auth/logout", user.token).status_code == 200
    assert _revoked(api.post("/api/auth/refresh", user.refresh_token))
    assert _revoked(api.post("/api/auth/logout", user.refresh_token))


def test_logout_with_the_refresh_token_revokes_every_access_token_of_the_session(
        api, hub, user, connect):
    refreshed = api.post("/api/auth/refresh", user.refresh_token).json()["accessToken"]
    client = connect(refreshed)
    client.wait_for("session")
    assert api.post("/api/auth/logout", user.refresh_token).status_code == 200
    assert client.disconnected.wait(5), "a refreshed token's socket outlived the logout"
    for token in (user.token, refreshed):
        assert _revoked(api.get("/api/auth/me", token))
        assert connect_refusal(hub, token)["data"] == {"code": "token_revoked"}


def test_logout_ends_only_its_own_session(api, user, connect):
    login = api.post("/api/auth/login", json={"email": user.email, "password": user.password})
    other = login.json()
    elsewhere = connect(other["accessToken"])
    elsewhere.wait_for("session")
    assert api.post("/api/auth/logout", user.token).status_code == 200
    assert api.get("/api/auth/me", other["accessToken"]).status_code == 200
    assert api.post("/api/auth/refresh", other["refreshToken"]).status_code == 200
    assert elsewhere.call("get_rooms") == [f"user:{user.id}"]


def test_token_without_jti_from_another_service_is_revoked_for_rest_and_sockets(
        api, hub, user, connect):
    token = mint_token(str(user.id))
    client = connect(token)
    client.wait_for("session")
    assert api.post("/api/auth/logout", token).status_code == 200
    assert client.disconnected.wait(5), "the jti-less token's socket stayed connected"
    assert _revoked(api.get("/api/auth/me", token))
    assert connect_refusal(hub, token)["data"] == {"code": "token_revoked"}
    # Another token of that service for the same user is a session of its own.
    assert api.get("/api/auth/me", mint_token(str(user.id), expires_in=901)).status_code == 200


def test_token_with_jti_from_another_service_is_revoked_by_its_jti(api, hub, user):
    jti = f"other-service-{uuid.uuid4().hex}"
    token = mint_token(str(user.id), jti=jti)
    assert api.post("/api/auth/logout", token).status_code == 200
    assert _revoked(api.get("/api/auth/me", token))
    assert connect_refusal(hub, token)["data"] == {"code": "token_revoked"}
    same_jti = mint_token(str(user.id), expires_in=901, jti=jti)
    assert _revoked(api.get("/api/auth/me", same_jti))


def test_tokens_revoked_before_the_upgrade_stay_revoked(database_url):
    """Revision 0005 renames the blocklist's token keys to the session keys they now map to."""
    with_jti = mint_token("1", jti=str(uuid.uuid4()))
    without_jti = mint_token("1")
    claims = jwt.decode(without_jti, JWT_SECRET, algorithms=["HS256"])
    canonical = json.dumps(claims, sort_keys=True, separators=(",", ":"))
    old_keys = [jwt.decode(with_jti, JWT_SECRET, algorithms=["HS256"])["jti"],
                "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()]
    with app_on(database_url):
        flask_migrate.upgrade(revision="0003")
        db.session.execute(text(
            "INSERT INTO users (id, email, password_hash, role, active, created_at) "
            "VALUES (1, 'old@example.com', 'x', 'user', true, :now)"),
            {"now": datetime.now(UTC) - timedelta(days=1)})
        for key in old_keys:
            db.session.execute(text(
                "INSERT INTO revoked_tokens (token_key, user_id, revoked_at, expires_at) "
                "VALUES (:key, 1, :now, :later)"),
                {"key": key, "now": datetime.now(UTC),
                 "later": datetime.now(UTC) + timedelta(hours=1)})
        db.session.commit()
        flask_migrate.upgrade()
        for token in (with_jti, without_jti):
            with pytest.raises(AuthRefused) as refused:
                auth.authenticate_token(token)
            assert refused.value.code == "token_revoked"
        try:
            assert auth.authenticate_token(mint_token("1", expires_in=901)).user_id == 1
        finally:
            auth.forget_cached_user(1)  # this process's cache outlives this database
