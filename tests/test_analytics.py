"""Live analytics: snapshots, batching, isolation between users, the admins' global view."""

import time

import pytest

from tests.support import eventually

KEYS = {"messagesToday", "messagesTotal", "recipientsToday", "recipientsTotal", "sent",
        "delivered", "failed", "deliveryRate", "costToday", "costMonth", "costTotal",
        "inFlight", "scheduled", "paused", "inboundToday", "inboundTotal",
        "unreadNotifications"}


def _latest(client, kind):
    updates = [u for u in client.received("analytics_update") if u["type"] == kind]
    return updates[-1]["data"] if updates else None


def _send(api, user, phones):
    response = api.post("/api/messages", user.token, json={"body": "hi", "recipients": phones})
    assert response.status_code == 202
    return response.json()["id"]


def test_subscribe_answers_at_once_with_a_snapshot(connect, user):
    client = connect(user.token)
    assert client.call("subscribe_analytics") == {"ok": True}
    first = client.wait_for("analytics_update")
    assert first["type"] == "dashboard_stats"
    assert set(first["data"]) == KEYS
    assert first["data"]["messagesTotal"] == 0
    kinds = {u["type"] for u in client.received("analytics_update")}
    assert kinds == {"dashboard_stats", "message_stats", "usage_stats"}
    messages = _latest(client, "message_stats")
    assert len(messages["hourly"]) == 24 and messages["hourly"][-1]["hour"].endswith("Z")
    assert len(_latest(client, "usage_stats")["daily"]) == 30
    assert f"analytics:user:{user.id}" in client.call("get_rooms")
    assert client.received("global_analytics_update") == []


def test_figures_match_an_independent_count(api, user, connect):
    phones = ["+15554440001", "+15554440002", "+15005550001", "+15005550009"]
    first = _send(api, user, phones)
    second = _send(api, user, ["+15554440003"])
    for message_id in (first, second):
        eventually(lambda m=message_id: api.get(f"/api/messages/{m}", user.token).json()
                   ["status"] != "SENDING", timeout=10)
    eventually(lambda: api.get("/api/analytics/dashboard", user.token).json()["delivered"] == 3,
               timeout=10)
    messages = [api.get(f"/api/messages/{m}", user.token).json() for m in (first, second)]
    figures = api.get("/api/analytics/dashboard", user.token).json()
    assert figures["messagesTotal"] == figures["messagesToday"] == 2
    assert figures["recipientsTotal"] == 5
    assert figures["sent"] == sum(m["successCount"] for m in messages) == 3
    assert figures["failed"] == sum(m["failedCount"] for m in messages) == 2
    assert figures["delivered"] == 3 and figures["deliveryRate"] == 1.0
    assert figures["costTotal"] == pytest.approx(sum(m["cost"] for m in messages))
    assert figures["costTotal"] == pytest.approx(3 * 0.0075)
    assert figures["inFlight"] == 0
    assert figures["unreadNotifications"] == 2  # one "message sent" per message
    stats = api.get("/api/analytics/messages", user.token).json()
    assert stats["messagesByStatus"] == {"SCHEDULED": 0, "SENDING": 0, "PAUSED": 0, "SENT": 2,
                                         "FAILED": 0, "CANCELED": 0}
    assert stats["recipientsByStatus"] == {"PENDING": 0, "SCHEDULED": 0, "SENDING": 0,
                                           "SENT": 0, "DELIVERED": 3, "FAILED": 2,
                                           "SUPPRESSED": 0, "EXPIRED": 0, "CANCELED": 0,
                                           "UNKNOWN": 0}
    this_hour = stats["hourly"][-1]
    assert (this_hour["sent"], this_hour["delivered"], this_hour["failed"]) == (3, 3, 2)
    usage = api.get("/api/analytics/usage", user.token).json()["daily"][-1]
    assert usage["segments"] == 3 and usage["cost"] == pytest.approx(3 * 0.0075)


def test_burst_of_messages_is_batched_and_ends_on_final_figures(api, user, connect):
    client = connect(user.token)
    client.call("subscribe_analytics")
    client.wait_for("analytics_update")
    started = time.monotonic()
    ids = [_send(api, user, [f"+1555666{i:04d}"]) for i in range(20)]
    for message_id in ids:
        eventually(lambda m=message_id: api.get(f"/api/messages/{m}", user.token).json()
                   ["status"] == "SENT", timeout=15)
    final = eventually(lambda: (d := _latest(client, "dashboard_stats")) and
                       d["delivered"] == 20 and d, timeout=10)
    elapsed = time.monotonic() - started
    assert final["messagesTotal"] == 20 and final["sent"] == 20 and final["inFlight"] == 0
    dashboards = [u for u in client.received("analytics_update")
                  if u["type"] == "dashboard_stats"]
    # The testing interval is 0.5 s: at most about one update per interval, plus the snapshot.
    assert len(dashboards) <= elapsed / 0.5 + 3, (len(dashboards), elapsed)
    assert final == api.get("/api/analytics/dashboard", user.token).json()


def test_a_notification_reaches_the_users_figures_at_once(api, admin, user, connect):
    client = connect(user.token)
    client.call("subscribe_analytics")
    before = client.wait_for("analytics_update")["data"]["unreadNotifications"]
    response = api.post(f"/api/socket/notify/{user.id}", admin.token,
                        json={"title": "Quota", "message": "80% used"})
    assert response.json()["notification"]["unreadCount"] == before + 1
    eventually(lambda: (d := _latest(client, "dashboard_stats")) and
               d["unreadNotifications"] == before + 1, timeout=10)


def test_users_never_receive_each_others_figures(api, make_user, connect):
    alice, bob = make_user(), make_user()
    alice_socket, bob_socket = connect(alice.token), connect(bob.token)
    alice_socket.call("subscribe_analytics")
    bob_socket.call("subscribe_analytics")
    message_id = _send(api, alice, ["+15557770001"])
    eventually(lambda: (d := _latest(alice_socket, "dashboard_stats")) and d["sent"] == 1,
               timeout=10)
    bob_socket.call("get_rooms")
    assert all(u["data"].get("messagesTotal", 0) == 0
               for u in bob_socket.received("analytics_update") if u["type"] ==
               "dashboard_stats")
    assert bob_socket.call("join_room", f"analytics:user:{alice.id}")["error"]["code"] == \
        "forbidden"
    assert message_id


def test_unsubscribe_stops_updates(api, user, connect):
    client = connect(user.token)
    client.call("subscribe_analytics")
    client.wait_for("analytics_update")
    assert client.call("unsubscribe_analytics") == {"ok": True}
    count = len(client.received("analytics_update"))
    _send(api, user, ["+15558880001"])
    time.sleep(1.5)
    assert len(client.received("analytics_update")) == count
    assert not any(r.startswith("analytics:") for r in client.call("get_rooms"))


def test_admins_get_global_figures_and_users_never_do(api, admin, user, connect):
    admin_socket, user_socket = connect(admin.token), connect(user.token)
    admin_socket.call("subscribe_analytics")
    user_socket.call("subscribe_analytics")
    snapshot = admin_socket.wait_for("global_analytics_update")
    assert snapshot["type"] == "dashboard_stats"
    data = snapshot["data"]
    assert {"onlineUsers", "connectionsByNode", "eventsInPerSecond",
            "eventsOutPerSecond"} <= set(data)
    assert data["onlineUsers"] >= 2 and data["connectionsByNode"][0]["connections"] >= 2
    before = data["messagesTotal"]
    _send(api, user, ["+15559990001"])
    admin_socket.wait_for("global_analytics_update",
                          lambda u: u["data"]["messagesTotal"] >= before + 1, timeout=10)
    user_socket.call("get_rooms")
    assert user_socket.received("global_analytics_update") == []
    assert api.get("/api/analytics/global", user.token).status_code == 403
    assert api.get("/api/analytics/global", admin.token).json()["messagesTotal"] >= before + 1


def test_analytics_events_take_no_payload(connect, user):
    client = connect(user.token)
    assert client.call("subscribe_analytics", "global")["error"]["code"] == "invalid_payload"
    assert client.call("subscribe_analytics", {}) == {"ok": True}


def test_one_round_for_several_users_gives_each_their_own_figures(api, admin, make_user,
                                                                   connect):
    """The scheduler computes all changed users together; each must get exactly their REST twins."""
    users = [make_user() for _ in range(3)]
    sockets = [connect(u.token) for u in users]
    for socket in sockets:
        socket.call("subscribe_analytics")
        socket.wait_for("analytics_update")
    ids = {u.id: [_send(api, u, [f"+155580{n}{i:04d}" for i in range(n + 1)])
                  for _ in range(n + 1)] for n, u in enumerate(users)}
    api.post("/api/socket/broadcast", admin.token,
             json={"title": "Figures", "message": "everyone", "type": "system"})
    for user in users:
        for message_id in ids[user.id]:
            eventually(lambda m=message_id, u=user: api.get(f"/api/messages/{m}", u.token)
                       .json()["deliveredCount"] > 0, timeout=15)

    def settled(user, socket):
        twins = {kind: api.get(f"/api/analytics/{path}", user.token).json() for kind, path in
                 (("dashboard_stats", "dashboard"), ("message_stats", "messages"),
                  ("usage_stats", "usage"))}
        return all(_latest(socket, kind) == twin for kind, twin in twins.items()) and twins
    for n, (user, socket) in enumerate(zip(users, sockets, strict=True)):
        twins = eventually(lambda u=user, s=socket: settled(u, s), timeout=10)
        dashboard = twins["dashboard_stats"]
        assert dashboard["messagesTotal"] == n + 1
        assert dashboard["recipientsTotal"] == (n + 1) ** 2
        assert dashboard["delivered"] == (n + 1) ** 2
        # One "message sent" per message, and the broadcast.
        assert dashboard["unreadNotifications"] == n + 2
        assert twins["message_stats"]["hourly"][-1]["delivered"] == (n + 1) ** 2
        assert twins["usage_stats"]["daily"][-1]["segments"] == (n + 1) ** 2
