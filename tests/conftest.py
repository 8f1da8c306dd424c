"""Fixtures: real hub servers on free ports, users, and recording Socket.IO clients.

The end-to-end tests talk to ``python app.py`` started as a subprocess, over a
real websocket, against a database built by the migrations. Every hub-backed
test runs on SQLite and, when reachable, on PostgreSQL. PostgreSQL, Redis and
Chromium cases skip when the service is missing, and fail under
``REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.support import (
    REDIS_URL,
    LiveServer,
    RecordingClient,
    TestUser,
    fresh_postgres_database,
    js_packages,
    migrate_database,
    postgres_reachable,
    redis_reachable,
    register_user,
    require_service,
    seed_admin,
)

# fake_twilio, fake_twilio_process, fake_smsc: the outside SMS systems on loopback.
pytest_plugins = ["tests.fakes.fixtures"]


def pytest_configure(config):
    os.makedirs(os.path.join(os.path.dirname(__file__), "..", "test-output"), exist_ok=True)


def _send_log_env(tmp_path_factory) -> dict:
    """Every SMS the simulated provider accepts, one JSON line each (``server.send_log``)."""
    return {"SIMULATED_SMS_SEND_LOG": str(tmp_path_factory.mktemp("sends") / "sent.jsonl")}


def _start_hub(tmp_path_factory, backend: str):
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("hub-sqlite") / "hub.db"
        url = f"sqlite:///{path}"
        migrate_database(url)
        admin_email = seed_admin(url)
        server = LiveServer(url, name="sqlite", env=_send_log_env(tmp_path_factory))
        server.start()
        return server, admin_email, None
    require_service("PostgreSQL", postgres_reachable())
    database = fresh_postgres_database()
    url = database.__enter__()
    migrate_database(url)
    admin_email = seed_admin(url)
    server = LiveServer(url, name="postgresql", env=_send_log_env(tmp_path_factory))
    server.start()
    return server, admin_email, database


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def hub(request, tmp_path_factory):
    """A running hub, once per database backend for the whole session."""
    server, admin_email, database = _start_hub(tmp_path_factory, request.param)
    server.admin_email = admin_email
    yield server
    server.stop()
    if database is not None:
        database.__exit__(None, None, None)


@pytest.fixture(scope="session")
def js_modules() -> Path:
    """tests/js/node_modules: the pinned npm packages for Node (``npm ci`` on first use)."""
    return js_packages() / "node_modules"


@pytest.fixture(scope="session")
def sqlite_hub(tmp_path_factory):
    """A hub on SQLite, for tests whose subject does not depend on the database."""
    server, admin_email, _ = _start_hub(tmp_path_factory, "sqlite")
    server.admin_email = admin_email
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster():
    """Nodes A and B on one fresh PostgreSQL database and one Redis channel, per module."""
    require_service("PostgreSQL", postgres_reachable())
    require_service("Redis", redis_reachable())
    channel = f"hub-test-{uuid.uuid4().hex[:8]}"
    with fresh_postgres_database() as url:
        migrate_database(url)
        seed_admin(url)
        env = {"SOCKETIO_MESSAGE_QUEUE": REDIS_URL, "SOCKETIO_CHANNEL": channel}
        a = LiveServer(url, name="node-a", env={**env, "NODE_ID": "node-a"})
        b = LiveServer(url, name="node-b", env={**env, "NODE_ID": "node-b"})
        a.start()
        b.start()
        a.channel = b.channel = channel
        try:
            yield a, b
        finally:
            a.stop()
            b.stop()


@pytest.fixture
def make_user(hub):
    """Factory: a new registered, logged-in user (``admin=True``: the seeded admin)."""
    return lambda admin=False: register_user(hub, admin)


@pytest.fixture
def sqlite_user(sqlite_hub) -> TestUser:
    return register_user(sqlite_hub)


@pytest.fixture
def sqlite_admin(sqlite_hub) -> TestUser:
    return register_user(sqlite_hub, admin=True)


@pytest.fixture
def user(make_user) -> TestUser:
    return make_user()


@pytest.fixture
def admin(make_user) -> TestUser:
    return make_user(admin=True)


@pytest.fixture
def connect(hub):
    """Factory: a connected, recording Socket.IO client (websocket transport)."""
    clients: list[RecordingClient] = []

    def open_client(token: str | None = None, **kwargs) -> RecordingClient:
        client = RecordingClient(hub.url)
        clients.append(client)
        client.connect(token=token, **kwargs)
        return client

    yield open_client
    for client in clients:
        client.close()


@pytest.fixture
def api(hub):
    """REST calls against the hub: ``api.post(path, token, json=...)``."""
    return hub.api
