"""Fixtures: real hub servers on free ports, users, and recording Socket.IO clients.

The end-to-end tests talk to ``python app.py`` started as a subprocess, over a
real websocket, against a database built by the migrations. Every hub-backed
test runs on SQLite and, when reachable, on PostgreSQL. PostgreSQL, Redis and
Chromium cases skip when the service is missing, and fail under
``REQUIRE_SERVICES=1``.

A test whose hub needs settings of its own asks ``hub_factory`` (or
``module_hub_factory`` for a hub its module shares) instead of starting one;
work done in the test's own process on both backends asks ``database_url``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.support import (
    BACKENDS,
    HubFactory,
    LiveServer,
    RecordingClient,
    TestUser,
    app_on,
    empty_database,
    js_packages,
    migrate_database,
    register_user,
    seed_admin,
)

# fake_twilio, fake_twilio_process, fake_smsc: the outside SMS systems on loopback.
pytest_plugins = ["tests.fakes.fixtures"]


def pytest_configure(config):
    os.makedirs(os.path.join(os.path.dirname(__file__), "..", "test-output"), exist_ok=True)


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> Iterator[str]:
    """An empty database, once a SQLite file and once a fresh PostgreSQL database."""
    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def queue_app(database_url) -> Iterator[Flask]:
    """An app context on a migrated database with its admin; every claim is stale at once
    (``DISPATCH_CLAIM_TIMEOUT`` 0), for the send queue's statements called in process."""
    migrate_database(database_url)
    seed_admin(database_url)
    with app_on(database_url, DISPATCH_CLAIM_TIMEOUT=0.0) as app:
        yield app


@pytest.fixture
def hub_factory(tmp_path_factory) -> Iterator[HubFactory]:
    """Factory: ``hub_factory(env={...})`` starts a live hub on a new database (``HubFactory``);
    every hub, node, proxy and database it made is gone after the test."""
    with HubFactory(tmp_path_factory) as factory:
        yield factory


@pytest.fixture(scope="module")
def module_hub_factory(tmp_path_factory) -> Iterator[HubFactory]:
    """``hub_factory`` for the hubs a module's tests share: they are gone after the module."""
    with HubFactory(tmp_path_factory) as factory:
        yield factory


@pytest.fixture(scope="session", params=BACKENDS)
def hub(request, tmp_path_factory) -> Iterator[LiveServer]:
    """A running hub, once per database backend for the whole session; it logs its sends."""
    with HubFactory(tmp_path_factory) as hubs:
        yield hubs(backend=request.param, name=request.param, send_log=True)


@pytest.fixture(scope="session")
def js_modules() -> Path:
    """tests/js/node_modules: the pinned npm packages for Node (``npm ci`` on first use)."""
    return js_packages() / "node_modules"


@pytest.fixture(scope="session")
def sqlite_hub(tmp_path_factory) -> Iterator[LiveServer]:
    """A hub on SQLite, for tests whose subject does not depend on the database."""
    with HubFactory(tmp_path_factory) as hubs:
        yield hubs(name="sqlite", send_log=True)


@pytest.fixture(scope="module")
def cluster(module_hub_factory) -> tuple[LiveServer, LiveServer]:
    """Nodes A and B on one fresh PostgreSQL database and one Redis channel, per module."""
    a, b = module_hub_factory.nodes(2)
    return a, b


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
