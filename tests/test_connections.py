"""Connection state in SQL: online checks, counts, stats, ping and pong."""

import time
import uuid
from datetime import UTC, datetime

import pytest

from config import TestingConfig
from extensions import db
from models import Connection
from tests.support import app_on, eventually

# Connects, disconnects and pongs reach SQL in one batch per flush interval; the
# second is headroom for a busy machine.
FLUSH_BOUND = TestingConfig.CONNECTION_FLUSH_INTERVAL + 1.0


@pytest.fixture
def connection_row(hub):
    """Reads one socket's row of the hub's ``connections`` table, as any node would."""
    with app_on(hub.database_url) as app:

        def read(sid: str) -> dict | None:
            with app.app_context():
                row = db.session.get(Connection, sid)
                if row is None:
                    return None
                return {column.key: getattr(row, column.key)
                        for column in Connection.__table__.c}

        yield read


def _online(api, token, user_id):
    response = api.get(f"/api/socket/user/{user_id}/online", token)
    assert response.status_code == 200
    return response.json()


def test_online_follows_connects_and_disconnects(api, user, connect):
    assert _online(api, user.token, user.id) == {"userId": str(user.id), "online": False,
                                                  "connections": 0}
    first, second = connect(user.token), connect(user.token)
    assert _online(api, user.token, user.id) == {"userId": str(user.id), "online": True,
                                                  "connections": 2}
    first.close()
    eventually(lambda: _online(api, user.token, user.id)["connections"] == 1)
    second.close()
    eventually(lambda: _online(api, user.token, user.id)["online"] is False)


def test_online_of_another_user_is_for_admins_only(api, make_user, admin, connect):
    alice, bob = make_user(), make_user()
    connect(alice.token)
    assert api.get(f"/api/socket/user/{alice.id}/online", bob.token).status_code == 403
    assert _online(api, admin.token, alice.id)["online"] is True


def test_online_count_counts_distinct_users(api, make_user, connect):
    alice, bob = make_user(), make_user()

    def online_count():
        return api.get("/api/socket/online-count", alice.token).json()["count"]

    baseline = online_count()
    sockets = [connect(alice.token), connect(alice.token), connect(bob.token)]
    for client in sockets:
        client.wait_for("session")  # sent once the connection is registered
    assert online_count() == baseline + 2
    third_of_alice = connect(alice.token)
    third_of_alice.wait_for("session")
    assert online_count() == baseline + 2
    sockets[0].close()
    eventually(lambda: _online(api, alice.token, alice.id)["connections"] == 2)
    assert online_count() == baseline + 2
    sockets[2].close()
    eventually(lambda: online_count() == baseline + 1)


def test_stats_lists_this_node_with_its_connections(api, admin, user, connect):
    connect(user.token)
    stats = api.get("/api/socket/stats", admin.token).json()
    assert set(stats) == {"totalConnections", "onlineUsers", "rooms", "nodes", "uptimeSeconds"}
    assert stats["totalConnections"] >= 1 and stats["onlineUsers"] >= 1
    assert len(stats["nodes"]) == 1
    node = stats["nodes"][0]
    assert node["connections"] == stats["totalConnections"]
    assert node["lastHeartbeat"].endswith("Z")
    assert stats["uptimeSeconds"] > 0


def test_ping_reaches_every_socket_and_pong_records_round_trip(api, admin, user, connect,
                                                               hub):
    client = connect(user.token)
    response = api.post("/api/socket/ping", admin.token)
    assert response.status_code == 200
    body = response.json()
    assert body["sent"] >= 1 and body["timestamp"].endswith("Z")
    ping = client.wait_for("ping")
    assert ping == {"timestamp": body["timestamp"]}
    answer = client.call("pong", ping)
    assert answer["ok"] is True and 0 <= answer["rttMs"] < 5000


def test_pong_accepts_epoch_millis_and_tolerates_nonsense(connect, user):
    import time

    client = connect(user.token)
    assert client.call("pong", {"timestamp": time.time() * 1000})["rttMs"] is not None
    assert client.call("pong", {"timestamp": "yesterday"}) == {"ok": True, "rttMs": None}
    assert client.call("pong") == {"ok": True, "rttMs": None}
    assert client.call("pong", "x")["error"]["code"] == "invalid_payload"


def test_unknown_events_and_extra_arguments_are_invalid_payload(connect, user):
    client = connect(user.token)
    assert client.call("no_such_event")["error"]["code"] == "invalid_payload"
    assert client.call("get_rooms", "extra")["error"]["code"] == "invalid_payload"
    assert client.call("join_room", "room:a", "room:b")["error"]["code"] == "invalid_payload"
    assert client.call("join_room")["error"]["code"] == "invalid_payload"
    assert client.sio.connected


def test_stats_rooms_counts_a_newly_joined_room(api, admin, user, connect):
    client = connect(user.token)
    client.wait_for("session")

    def rooms_after_next_heartbeat():
        """Rooms are counted at each heartbeat: wait for one that began after this call."""
        asked = datetime.now(UTC)

        def fresh_stats():
            stats = api.get("/api/socket/stats", admin.token).json()
            beat = datetime.fromisoformat(stats["nodes"][0]["lastHeartbeat"])
            return stats if beat > asked else None
        return eventually(fresh_stats)["rooms"]

    baseline = rooms_after_next_heartbeat()
    room = f"room:stats-{uuid.uuid4().hex}"
    assert client.call("join_room", room)["ok"] is True
    assert rooms_after_next_heartbeat() == baseline + 1
    assert client.call("leave_room", room)["ok"] is True
    assert rooms_after_next_heartbeat() == baseline


def test_connection_row_records_user_node_address_agent_and_times(api, admin, user, connect,
                                                                  connection_row):
    opened = datetime.now(UTC)
    client = connect(user.token, headers={"User-Agent": "rows-check/1.0"})
    client.wait_for("session")
    sid = client.sid
    row = eventually(lambda: connection_row(sid), timeout=FLUSH_BOUND)
    node_id = api.get("/api/socket/stats", admin.token).json()["nodes"][0]["id"]
    assert row["user_id"] == user.id and row["node_id"] == node_id
    assert row["remote_addr"] == "127.0.0.1"
    assert row["user_agent"] == "rows-check/1.0"
    assert opened <= row["connected_at"] <= datetime.now(UTC)
    assert row["last_seen_at"] == row["connected_at"]
    client.close()
    eventually(lambda: connection_row(sid) is None, timeout=FLUSH_BOUND)


def test_pong_records_last_seen_and_round_trip_in_sql(user, connect, connection_row):
    client = connect(user.token)
    client.wait_for("session")
    connected = eventually(lambda: connection_row(client.sid), timeout=FLUSH_BOUND)
    time.sleep(0.1)  # so that the pong's time differs from the connect's
    before = datetime.now(UTC)
    answer = client.call("pong", {"timestamp": time.time() * 1000})
    after = datetime.now(UTC)
    seen = eventually(lambda: (row := connection_row(client.sid))
                      and row["last_seen_at"] > connected["last_seen_at"] and row,
                      timeout=FLUSH_BOUND)
    assert before <= seen["last_seen_at"] <= after
    assert seen["rtt_ms"] == pytest.approx(answer["rttMs"])
    assert seen["connected_at"] == connected["connected_at"]
