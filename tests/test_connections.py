"""Connection state in SQL: online checks, counts, stats, ping and pong."""

from tests.support import eventually


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
    baseline = api.get("/api/socket/online-count", make_user().token).json()["count"]
    alice, bob = make_user(), make_user()
    connect(alice.token), connect(alice.token), connect(bob.token)
    eventually(lambda: api.get("/api/socket/online-count", alice.token).json()["count"]
               >= baseline + 2)


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
