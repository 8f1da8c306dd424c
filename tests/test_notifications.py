"""Notifications: stored then emitted, read state across tabs, broadcasts for the offline."""

import uuid

import pytest

from tests.support import eventually, promote_user

NOTIFICATION_KEYS = {"id", "type", "title", "message", "timestamp", "read", "unreadCount"}


def _notify(api, admin, user_id, **body):
    body = {"title": "Hello", "message": "World", **body}
    return api.post(f"/api/socket/notify/{user_id}", admin.token, json=body)


def test_notify_stores_then_emits_to_every_socket_of_the_user(api, admin, user, connect):
    tab1, tab2 = connect(user.token), connect(user.token)
    response = _notify(api, admin, user.id, type="warning", data={"k": [1, 2]})
    assert response.status_code == 201
    body = response.json()
    assert body["delivered"] == 2
    note = body["notification"]
    assert note["type"] == "warning" and note["read"] is False and note["unreadCount"] == 1
    assert note["data"] == {"k": [1, 2]} and note["timestamp"].endswith("Z")
    for tab in (tab1, tab2):
        assert tab.wait_for("notification") == note
    listed = api.get("/api/notifications", user.token).json()
    assert listed["notifications"][0]["id"] == note["id"]
    assert listed["unreadCount"] == 1


def test_notify_offline_user_delivers_zero_but_stores(api, admin, user):
    response = _notify(api, admin, user.id)
    assert response.status_code == 201 and response.json()["delivered"] == 0
    assert api.get("/api/notifications", user.token).json()["unreadCount"] == 1


@pytest.mark.parametrize("body", [{}, {"title": "t"}, {"title": "", "message": "m"},
                                  {"title": "t", "message": "m", "type": "bogus"},
                                  {"title": "t", "message": "m", "extra": 1},
                                  {"title": "t", "message": "m", "data": "x" * 9000},
                                  {"title": 5, "message": "m"}])
def test_notify_rejects_invalid_bodies(api, admin, user, body):
    response = api.post(f"/api/socket/notify/{user.id}", admin.token, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_payload"


def test_notify_unknown_user_is_404(api, admin):
    response = _notify(api, admin, 99999999)
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "User not found"}}


def test_admin_routes_refuse_non_admins(api, user):
    for method, path in [("post", f"/api/socket/notify/{user.id}"),
                         ("post", "/api/socket/broadcast"), ("post", "/api/socket/ping"),
                         ("get", "/api/socket/stats")]:
        response = getattr(api, method)(path, user.token, json={"title": "t", "message": "m"})
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "forbidden"


def test_mark_read_over_socket_tells_other_tabs(api, admin, user, connect):
    tab1, tab2 = connect(user.token), connect(user.token)
    note = _notify(api, admin, user.id).json()["notification"]
    tab1.wait_for("notification")
    answer = tab1.call("mark_notification_read", note["id"])
    assert answer == {"ok": True, "id": note["id"], "unreadCount": 0}
    assert tab2.wait_for("notification_read") == {"id": note["id"], "unreadCount": 0}
    assert tab1.call("get_rooms")  # round trip: tab1 would have had it by now
    assert tab1.received("notification_read") == []
    again = tab1.call("mark_notification_read", int(note["id"]))
    assert again["ok"] is True and again["unreadCount"] == 0


def test_users_cannot_read_each_others_notifications(api, admin, make_user, connect):
    owner, other = make_user(), make_user()
    note = _notify(api, admin, owner.id).json()["notification"]
    client = connect(other.token)
    assert client.call("mark_notification_read", note["id"]) == {
        "ok": False, "error": {"code": "not_found", "message": "Notification not found"}}
    assert client.call("mark_notification_read", "999999999")["error"]["code"] == "not_found"
    rest = api.post(f"/api/notifications/{note['id']}/read", other.token)
    assert rest.status_code == 404
    assert rest.json()["error"] == {"code": "not_found", "message": "Notification not found"}
    assert api.get("/api/notifications", owner.token).json()["unreadCount"] == 1


def test_get_notifications_pages_newest_first_and_filters_unread(api, admin, user, connect):
    ids = [_notify(api, admin, user.id, title=f"n{i}").json()["notification"]["id"]
           for i in range(5)]
    client = connect(user.token)
    page = client.call("get_notifications", {"limit": 2})
    assert [n["id"] for n in page["notifications"]] == [ids[4], ids[3]]
    assert page["unreadCount"] == 5
    rest = client.call("get_notifications", {"limit": 10, "before": page["nextCursor"]})
    assert [n["id"] for n in rest["notifications"]] == [ids[2], ids[1], ids[0]]
    client.call("mark_notification_read", ids[4])
    unread = client.call("get_notifications", {"unreadOnly": True})
    assert ids[4] not in [n["id"] for n in unread["notifications"]]
    assert unread["unreadCount"] == 4
    everything = client.call("get_notifications")
    assert len(everything["notifications"]) == 5


@pytest.mark.parametrize("payload", ["x", 5, [], {"limit": 0}, {"limit": 1000},
                                     {"limit": "many"}, {"unreadOnly": "maybe"},
                                     {"before": -1}, {"other": 1}])
def test_get_notifications_rejects_invalid_payloads(connect, user, payload):
    client = connect(user.token)
    answer = client.call("get_notifications", payload)
    assert answer["ok"] is False and answer["error"]["code"] == "invalid_payload"


def test_mark_all_read_over_rest_tells_sockets(api, admin, user, connect):
    client = connect(user.token)
    for _ in range(3):
        _notify(api, admin, user.id)
    response = api.post("/api/notifications/read-all", user.token)
    assert response.status_code == 200 and response.json() == {"count": 3}
    assert client.wait_for("notification_read") == {"all": True, "unreadCount": 0}
    assert client.call("mark_all_notifications_read") == {"ok": True, "count": 0}


def test_broadcast_reaches_online_users_and_offline_users_find_it(api, admin, make_user,
                                                                  connect):
    online, offline = make_user(), make_user()
    client = connect(online.token)
    response = api.post("/api/socket/broadcast", admin.token,
                        json={"title": "Maintenance", "message": "at noon", "type": "warning"})
    assert response.status_code == 201
    body = response.json()
    assert body["recipients"] >= 2
    note = body["notification"]
    assert client.wait_for("notification", lambda n: n["id"] == note["id"])["type"] == "warning"
    later = api.get("/api/notifications", offline.token).json()
    assert note["id"] in [n["id"] for n in later["notifications"]]
    before = later["unreadCount"]
    assert api.post(f"/api/notifications/{note['id']}/read", offline.token).json() == {
        "id": note["id"], "unreadCount": before - 1}
    assert api.get("/api/notifications", online.token).json()["unreadCount"] >= 1


def test_users_registered_after_a_broadcast_do_not_get_it(api, admin, make_user):
    note = api.post("/api/socket/broadcast", admin.token,
                    json={"title": "old news", "message": "m"}).json()["notification"]
    newcomer = make_user()
    listed = api.get("/api/notifications", newcomer.token).json()["notifications"]
    assert note["id"] not in [n["id"] for n in listed]


def test_idempotency_key_replays_and_conflicts(api, admin, user, connect):
    client = connect(user.token)
    headers = {"Idempotency-Key": f"key-{user.id}"}
    first = api.post(f"/api/socket/notify/{user.id}", admin.token, headers=headers,
                     json={"title": "once", "message": "m"})
    second = api.post(f"/api/socket/notify/{user.id}", admin.token, headers=headers,
                      json={"title": "once", "message": "m"})
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    conflict = api.post(f"/api/socket/notify/{user.id}", admin.token, headers=headers,
                        json={"title": "different", "message": "m"})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"
    client.call("get_rooms")
    eventually(lambda: client.received("notification"))
    assert len([n for n in client.received("notification") if n["title"] == "once"]) == 1
    assert api.get("/api/notifications", user.token).json()["unreadCount"] == 1


@pytest.mark.parametrize("kind", ["message_sent", "message_failed", "delivery_update", "system",
                                  "warning"])
def test_notify_accepts_every_type_the_spec_lists(api, admin, user, connect, kind):
    client = connect(user.token)
    response = _notify(api, admin, user.id, type=kind)
    assert response.status_code == 201
    assert response.json()["notification"]["type"] == kind
    assert client.wait_for("notification")["type"] == kind


def test_notification_event_has_the_spec_keys_and_a_string_id(api, admin, user, connect):
    client = connect(user.token)
    _notify(api, admin, user.id, title="plain")
    _notify(api, admin, user.id, title="with data", data={"messageId": "7"})
    plain = client.wait_for("notification", lambda n: n["title"] == "plain")
    with_data = client.wait_for("notification", lambda n: n["title"] == "with data")
    assert set(plain) == NOTIFICATION_KEYS
    assert set(with_data) == NOTIFICATION_KEYS | {"data"}
    for note in (plain, with_data):
        assert isinstance(note["id"], str) and note["id"].isdigit()
    assert with_data["unreadCount"] == 2 and with_data["read"] is False


def test_mark_all_read_over_socket_counts_and_tells_other_tabs(api, admin, user, connect):
    tab1, tab2 = connect(user.token), connect(user.token)
    for _ in range(3):
        _notify(api, admin, user.id)
    eventually(lambda: len(tab1.received("notification")) == 3)
    assert tab1.call("mark_all_notifications_read") == {"ok": True, "count": 3}
    assert tab2.wait_for("notification_read") == {"all": True, "unreadCount": 0}
    tab1.call("get_rooms")  # round trip: tab1 would have had it by now
    assert tab1.received("notification_read") == []
    assert api.get("/api/notifications", user.token).json()["unreadCount"] == 0
    assert tab1.call("get_notifications", {"unreadOnly": True})["notifications"] == []


def test_mark_read_over_rest_tells_the_users_sockets(api, admin, user, connect):
    client = connect(user.token)
    first = _notify(api, admin, user.id).json()["notification"]
    _notify(api, admin, user.id)
    response = api.post(f"/api/notifications/{first['id']}/read", user.token)
    assert response.status_code == 200
    assert response.json() == {"id": first["id"], "unreadCount": 1}
    assert client.wait_for("notification_read") == {"id": first["id"], "unreadCount": 1}


def test_rest_notifications_page_newest_first_and_filter_unread(api, admin, user):
    ids = [_notify(api, admin, user.id, title=f"n{i}").json()["notification"]["id"]
           for i in range(5)]
    page = api.get("/api/notifications?limit=2", user.token).json()
    assert [n["id"] for n in page["notifications"]] == [ids[4], ids[3]]
    assert page["unreadCount"] == 5 and page["nextCursor"] == ids[3]
    rest = api.get(f"/api/notifications?limit=10&before={page['nextCursor']}", user.token).json()
    assert [n["id"] for n in rest["notifications"]] == [ids[2], ids[1], ids[0]]
    assert rest["nextCursor"] is None
    api.post(f"/api/notifications/{ids[4]}/read", user.token)
    unread = api.get("/api/notifications?unreadOnly=true", user.token).json()
    assert [n["id"] for n in unread["notifications"]] == [ids[3], ids[2], ids[1], ids[0]]
    assert unread["unreadCount"] == 4
    everything = api.get("/api/notifications", user.token).json()["notifications"]
    assert [(n["id"], n["read"]) for n in everything] == [
        (ids[4], True), (ids[3], False), (ids[2], False), (ids[1], False), (ids[0], False)]
    for bad in ("limit=0", "limit=many", "unreadOnly=maybe", "before=-1"):
        refused = api.get(f"/api/notifications?{bad}", user.token)
        assert refused.status_code == 400, bad
        assert refused.json()["error"]["code"] == "invalid_payload"
        assert bad.split("=")[0] in refused.json()["error"]["details"]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "title"), ({"title": "t"}, "message"), ({"title": "", "message": "m"}, "title"),
    ({"title": "t", "message": ""}, "message"), ({"title": 5, "message": "m"}, "title"),
    ({"title": "t", "message": "m", "type": "bogus"}, "type"),
    ({"title": "t", "message": "m", "data": {"k": 1}}, "data"),
])
def test_broadcast_rejects_invalid_bodies(api, admin, body, field):
    response = api.post("/api/socket/broadcast", admin.token, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_payload" and isinstance(error["message"], str)
    assert field in error["details"]


def test_broadcast_idempotency_key_replays_conflicts_and_is_per_caller(api, admin, make_user,
                                                                       connect, hub):
    watcher = make_user()
    client = connect(watcher.token)
    title = f"once {uuid.uuid4().hex}"
    headers = {"Idempotency-Key": f"broadcast-{title}"}

    def broadcast(token, text="m"):
        return api.post("/api/socket/broadcast", token, headers=headers,
                        json={"title": title, "message": text})

    def stored_titles():
        listed = api.get("/api/notifications?limit=100", watcher.token).json()
        return [n["title"] for n in listed["notifications"]].count(title)

    first, repeat = broadcast(admin.token), broadcast(admin.token)
    assert first.status_code == repeat.status_code == 201
    assert repeat.json() == first.json()
    client.wait_for("notification", lambda n: n["title"] == title)
    client.call("get_rooms")
    assert [n["title"] for n in client.received("notification")].count(title) == 1
    assert stored_titles() == 1

    conflict = broadcast(admin.token, text="another message")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"

    other_admin = promote_user(hub, make_user()).token
    other = broadcast(other_admin)
    assert other.status_code == 201
    assert other.json()["notification"]["id"] != first.json()["notification"]["id"]
    assert broadcast(admin.token).json() == first.json()
    assert stored_titles() == 2
