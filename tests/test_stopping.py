"""Stopping a node with SIGTERM, as systemd, Docker and gunicorn's master do.

Node A (``python app.py``, or gunicorn whose master passes SIGTERM to its
worker) and node B share PostgreSQL and Redis behind nginx, which sends
everyone to A and to B only when A is gone. ``NODE_TTL`` is production's
15 s, so "offline at once" cannot be the dead-node timeout in disguise.
"""

import time

import pytest
import socketio
from sqlalchemy import select

from extensions import db
from models import Connection, Node
from tests.support import (
    GUNICORN,
    RecordingClient,
    app_on,
    eventually,
    nginx_proxy_config,
    register_user,
)

EXIT_BOUND = 5.0


@pytest.fixture(params=["app.py", "gunicorn"])
def two_nodes(request, hub_factory):
    """Node A (the parameter) and node B, with nginx in front preferring A."""
    a, b = hub_factory.nodes(2, {"NODE_TTL": "15"}, name="node", commands=[
        GUNICORN if request.param == "gunicorn" else None, None])
    nginx = hub_factory.nginx(nginx_proxy_config(
        f"server 127.0.0.1:{a.port} max_fails=1 fail_timeout=30s; "
        f"server 127.0.0.1:{b.port} backup;"))
    with app_on(a.database_url) as app:
        yield a, b, nginx, app


def _rows_of(app, node_id: str) -> tuple[int, bool]:
    """Connection rows held by ``node_id`` and whether its node row exists, read from SQL."""
    with app.app_context():
        rows = len(db.session.scalars(select(Connection.sid)
                                      .where(Connection.node_id == node_id)).all())
        node = db.session.get(Node, node_id) is not None
        db.session.rollback()
        return rows, node


def test_sigterm_closes_sockets_deletes_the_nodes_rows_and_exits_within_seconds(two_nodes):
    a, b, nginx, app = two_nodes
    admin = register_user(b, admin=True)
    leaving, staying = register_user(b), register_user(b)
    gone = RecordingClient(nginx.url)
    gone.connect(token=leaving.token)
    back = socketio.Client(reconnection=True, reconnection_delay=0.1,
                           reconnection_delay_max=0.5, randomization_factor=0)
    back.connect(nginx.url, auth={"token": staying.token}, transports=["websocket"],
                 wait_timeout=10)
    first_sid = back.get_sid()

    def online(user) -> dict:
        return b.api.get(f"/api/socket/user/{user.id}/online", admin.token).json()
    eventually(lambda: online(leaving)["online"] and online(staying)["online"])
    assert _rows_of(app, "node-a") == (2, True)

    a.process.terminate()
    sent_at = time.monotonic()
    a.process.wait(timeout=30)
    assert time.monotonic() - sent_at < EXIT_BOUND
    assert _rows_of(app, "node-a") == (0, False)
    assert online(leaving) == {"userId": str(leaving.id), "online": False, "connections": 0}
    assert gone.disconnected.is_set()

    eventually(lambda: back.connected and back.get_sid() not in (None, first_sid), timeout=10)
    assert eventually(lambda: online(staying)["online"])
    assert _rows_of(app, "node-b")[0] == 1
    back.disconnect()
    gone.close()
