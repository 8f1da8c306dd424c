"""Randomised isolation: whatever users do, no socket receives another user's data."""

import random

from tests.support import RecordingClient, eventually, register_user


def test_no_socket_ever_receives_another_users_data(sqlite_hub):
    rng = random.Random(20261124)
    admin = register_user(sqlite_hub, admin=True)
    users = [register_user(sqlite_hub) for _ in range(4)]
    sockets = {}
    for user in users:
        sockets[user.id] = [RecordingClient(sqlite_hub.url) for _ in range(2)]
        for client in sockets[user.id]:
            client.connect(token=user.token)
    owned_messages: dict[int, set[str]] = {user.id: set() for user in users}
    owned_phones: dict[int, set[str]] = {user.id: set() for user in users}
    api = sqlite_hub.api
    for _ in range(60):
        user = rng.choice(users)
        client = rng.choice(sockets[user.id])
        action = rng.randrange(8)
        if action == 0:
            target = rng.choice(users)
            api.post(f"/api/socket/notify/{target.id}", admin.token,
                     json={"title": f"for {target.id}", "message": "m",
                           "data": {"owner": target.id}})
        elif action == 1:
            phone = f"+1555{rng.randrange(10**7):07d}"
            response = api.post("/api/messages", user.token, json={
                "body": f"from {user.id}", "recipients": [phone]})
            owned_messages[user.id].add(response.json()["id"])
            owned_phones[user.id].add(phone)
        elif action == 2:
            client.call("subscribe_analytics")
        elif action == 3 and owned_messages[user.id]:
            client.call("track_message", rng.choice(sorted(owned_messages[user.id])))
        elif action == 4:
            other = rng.choice(users)
            if other.id != user.id and owned_messages[other.id]:
                answer = client.call("track_message", rng.choice(sorted(owned_messages[other.id])))
                assert answer["error"]["code"] == "not_found"
            answer = client.call("join_room", f"user:{other.id}")
            assert answer["ok"] is (other.id == user.id)
        elif action == 5:
            client.call("join_room", f"room:shared-{rng.randrange(3)}")
        elif action == 6:
            client.call("mark_all_notifications_read")
        elif owned_phones[user.id]:
            api.post("/api/simulator/inbound", admin.token, json={
                "from": rng.choice(sorted(owned_phones[user.id])), "body": "a reply"})
    all_messages = set().union(*owned_messages.values())
    for message_ids in owned_messages.values():
        for message_id in message_ids:
            eventually(lambda m=message_id: api.get(f"/api/messages/{m}", admin.token).json()
                       ["status"] != "SENDING", timeout=10)
    delivered_inbound = sum(len(client.received("inbound_message"))
                            for clients in sockets.values() for client in clients)
    assert delivered_inbound > 0  # replies did reach their users' sockets
    for user in users:
        listed = api.get("/api/inbound?limit=100", user.token).json()["inbound"]
        assert {m["from"] for m in listed} <= owned_phones[user.id]
        own_notes = {n["id"] for n in api.get("/api/notifications?limit=100",
                                              user.token).json()["notifications"]}
        for client in sockets[user.id]:
            client.call("get_rooms")
            for event, payload in client.events:
                if event == "notification":
                    assert payload["id"] in own_notes, (user.id, payload)
                    if "owner" in (payload.get("data") or {}):
                        assert payload["data"]["owner"] == user.id
                elif event in ("message_update", "recipient_update"):
                    assert payload["messageId"] in owned_messages[user.id], (user.id, payload)
                    assert payload["messageId"] in all_messages
                elif event == "inbound_message":
                    assert payload["from"] in owned_phones[user.id], (user.id, payload)
                elif event == "analytics_update" and payload["type"] == "dashboard_stats":
                    assert payload["data"]["messagesTotal"] <= len(owned_messages[user.id])
                assert event != "global_analytics_update"
            client.close()
