"""Two deployments on one Redis: each its own channel and rate-limit counts, and a shared
channel refused at start.

Redis pub/sub ignores the database number in the URL, so a staging hub on
``redis://…/5`` and a production hub on ``redis://…/6`` meet on any channel
they share. Each deployment here is two ``python app.py`` nodes on its own
fresh PostgreSQL database, and their users have the same numeric ids.
"""

import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support import (
    REDIS_URL,
    LiveServer,
    RecordingClient,
    app_on,
    eventually,
    register_user,
)


def _redis_database(number: int) -> str:
    parts = urlsplit(REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{number}"))


def _deployment(hub_factory, name: str, redis_db: int, nodes: int = 2,
                channel: str | None = None) -> list[LiveServer]:
    """``nodes`` hub processes, not started, sharing one fresh database and Redis database
    ``redis_db``."""
    env = {"SOCKETIO_MESSAGE_QUEUE": _redis_database(redis_db)}
    if channel:
        env["SOCKETIO_CHANNEL"] = channel
    return hub_factory.nodes(nodes, env, name=name, start=False)


def _client(server: LiveServer, token: str) -> RecordingClient:
    client = RecordingClient(server.url)
    client.connect(token=token)
    return client


def _online_on(server: LiveServer, admin, user_id: int) -> None:
    eventually(lambda: server.api.get(f"/api/socket/user/{user_id}/online",
                                      admin.token).json()["online"])


def test_two_deployments_on_one_redis_never_see_each_others_events(hub_factory):
    staging = _deployment(hub_factory, "staging", 5)
    production = _deployment(hub_factory, "production", 6)
    for server in (*staging, *production):
        server.start()
    staging_user, production_user = register_user(staging[0]), register_user(production[0])
    assert staging_user.id == production_user.id
    staging_admin = register_user(staging[1], admin=True)
    production_admin = register_user(production[1], admin=True)
    on_staging = _client(staging[0], staging_user.token)
    on_production = _client(production[0], production_user.token)
    _online_on(staging[1], staging_admin, staging_user.id)
    _online_on(production[1], production_admin, production_user.id)

    # Staging's events cross its own two nodes through Redis...
    assert staging[1].api.post(f"/api/socket/notify/{staging_user.id}", staging_admin.token,
                               json={"title": "staging only", "message": "m"}
                               ).status_code == 201
    sent = staging[1].api.post("/api/messages", staging_user.token, json={
        "body": "staging message", "recipients": ["+15551230001"]})
    assert sent.status_code == 202, sent.text
    assert on_staging.wait_for("notification")["title"] == "staging only"
    on_staging.wait_for("message_update", lambda m: m["status"] != "SENDING")
    # ...then production's: had the two shared a channel, staging's emits would have
    # reached production's node before this one.
    assert production[1].api.post(f"/api/socket/notify/{production_user.id}",
                                  production_admin.token,
                                  json={"title": "production only", "message": "m"}
                                  ).status_code == 201
    assert on_production.wait_for("notification")["title"] == "production only"
    on_production.call("get_rooms")
    on_staging.call("get_rooms")

    assert [n["title"] for n in on_production.received("notification")] == [
        "production only"]
    assert on_production.received("message_update") == []
    assert "production only" not in [n["title"] for n in on_staging.received("notification")]
    on_staging.close()
    on_production.close()


def test_a_node_of_another_deployment_on_the_same_channel_refuses_to_start(hub_factory):
    channel = f"hub-test-{uuid.uuid4().hex[:8]}"
    first = _deployment(hub_factory, "first", 5, channel=channel)
    second = _deployment(hub_factory, "second", 6, nodes=1, channel=channel)
    for server in first:
        server.start()  # the second node of a deployment joins its first without a word
    with pytest.raises(RuntimeError, match="server exited early"):
        second[0].start()
    assert second[0].process.wait(timeout=10) != 0
    refusal = second[0].log_text()
    assert "refusing to start node second-a" in refusal
    assert f"uses the message queue channel '{channel}'" in refusal
    assert "node first-" in refusal
    eventually(lambda: any("node second-a of another deployment" in server.log_text()
                           for server in first))
    admin = register_user(first[0], admin=True)
    user = register_user(first[0])
    on_first = _client(first[0], user.token)
    _online_on(first[1], admin, user.id)
    assert first[1].api.post(f"/api/socket/notify/{user.id}", admin.token,
                             json={"title": "still served", "message": "m"}
                             ).status_code == 201
    assert on_first.wait_for("notification")["title"] == "still served"
    on_first.close()


def _deployment_of(url: str) -> str:
    from services.node.deployment import deployment_id

    with app_on(url):
        return deployment_id()


def test_the_deployment_is_the_database_however_its_url_is_spelled(hub_factory, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "hub.db").touch()
    (tmp_path / "b.db").touch()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    first = _deployment_of(f"sqlite:///{tmp_path / 'a' / 'hub.db'}")
    assert _deployment_of(f"sqlite:///{tmp_path / 'link' / 'hub.db'}") == first
    assert _deployment_of(f"sqlite:///{tmp_path / 'b.db'}") != first
    url, other = (hub_factory.database("postgresql", migrate=False) for _ in range(2))
    by_address = _deployment_of(url)
    assert _deployment_of(url + "?application_name=spelled-otherwise") == by_address
    assert _deployment_of(other) != by_address


def test_deployments_on_one_redis_database_keep_their_own_rest_rate_limits(hub_factory):
    """Flask-Limiter counts in the queue's Redis: one deployment's guesser spends only
    its own deployment's budget, on all of its nodes."""
    limit = {"LOGIN_RATE_LIMIT": "2/minute"}
    staging = hub_factory.nodes(2, {"SOCKETIO_MESSAGE_QUEUE": REDIS_URL, **limit},
                                name="staging")
    production = hub_factory.nodes(1, {"SOCKETIO_MESSAGE_QUEUE": REDIS_URL, **limit},
                                   name="production")
    guess = {"email": f"guessed-{uuid.uuid4().hex[:8]}@example.com", "password": "wrong"}

    def status(server: LiveServer) -> int:
        return server.api.post("/api/auth/login", json=guess).status_code

    assert [status(staging[0]), status(staging[1])] == [401, 401]
    assert status(staging[0]) == 429
    assert status(staging[1]) == 429  # the deployment's nodes share one count
    assert status(production[0]) == 401
