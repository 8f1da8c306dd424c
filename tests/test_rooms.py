"""Room joins and leaves, the room policy, and proof that forbidden rooms stay closed."""

import pytest


def test_socket_starts_in_its_user_room_only(connect, user):
    client = connect(user.token)
    assert client.call("get_rooms") == [f"user:{user.id}"]


def test_join_and_leave_open_room(connect, user):
    client = connect(user.token)
    assert client.call("join_room", "room:lobby") == {"ok": True, "room": "room:lobby"}
    assert client.call("get_rooms") == ["room:lobby", f"user:{user.id}"]
    assert client.call("leave_room", "room:lobby") == {"ok": True, "room": "room:lobby"}
    assert client.call("get_rooms") == [f"user:{user.id}"]


def test_joining_own_user_room_again_is_fine(connect, user):
    client = connect(user.token)
    assert client.call("join_room", f"user:{user.id}")["ok"] is True


@pytest.mark.parametrize("room", ["admins", "analytics:global", "analytics:user:1",
                                  "authenticated", "message:1", "message:abc", "lobby",
                                  "room:", "USER:1", "user:01"])
def test_forbidden_rooms(connect, user, room):
    client = connect(user.token)
    answer = client.call("join_room", room)
    assert answer == {"ok": False, "error": {"code": "forbidden",
                                             "message": "You may not join this room"}}
    assert client.call("get_rooms") == [f"user:{user.id}"]


def test_user_cannot_join_another_users_room_nor_see_its_events(connect, make_user, admin,
                                                                api):
    alice, bob = make_user(), make_user()
    alice_socket, bob_socket = connect(alice.token), connect(bob.token)
    assert bob_socket.call("join_room", f"user:{alice.id}")["error"]["code"] == "forbidden"
    response = api.post(f"/api/socket/notify/{alice.id}", admin.token,
                        json={"title": "for alice", "message": "private"})
    assert response.status_code == 201
    alice_socket.wait_for("notification", lambda n: n["title"] == "for alice")
    bob_socket.call("get_rooms")  # a round trip: anything in flight has arrived
    assert not [n for n in bob_socket.received("notification") if n["title"] == "for alice"]


def test_cannot_join_another_sockets_sid_room(connect, make_user):
    first, second = connect(make_user().token), connect(make_user().token)
    answer = first.call("join_room", second.sid)
    assert answer["ok"] is False and answer["error"]["code"] == "forbidden"


@pytest.mark.parametrize("payload", [None, 12, ["room:x"], {"room": "room:x"}, "", "x" * 129,
                                     "room:a\nb", "room:\u200bzero", " room:pad", True])
def test_invalid_room_names(connect, user, payload):
    client = connect(user.token)
    answer = client.call("join_room", payload)
    assert answer["ok"] is False and answer["error"]["code"] == "invalid_payload"
    assert client.sio.connected


def test_own_user_room_and_internal_rooms_cannot_be_left(connect, user):
    client = connect(user.token)
    for room in (f"user:{user.id}", "authenticated"):
        answer = client.call("leave_room", room)
        assert answer["ok"] is False and answer["error"]["code"] == "forbidden"
    assert client.call("get_rooms") == [f"user:{user.id}"]


def test_room_cap_per_connection(connect, user):
    client = connect(user.token)
    answers = [client.call("join_room", f"room:r{i}") for i in range(130)]
    refused = [a for a in answers if not a["ok"]]
    assert refused and refused[0]["error"]["code"] == "forbidden"
    assert len(client.call("get_rooms")) == 128


def test_admin_joins_admins_room_but_not_other_users_rooms(connect, admin, user):
    client = connect(admin.token)
    assert "admins" in client.call("get_rooms")
    assert client.call("join_room", f"user:{user.id}")["error"]["code"] == "forbidden"


def test_failure_without_ack_arrives_as_error_event(connect, user):
    client = connect(user.token)
    client.emit("join_room", "admins")
    error = client.wait_for("error")
    assert error == {"event": "join_room", "code": "forbidden",
                     "message": "You may not join this room"}


def test_room_name_of_exactly_128_characters_is_the_longest_accepted(connect, user):
    client = connect(user.token)
    longest = "room:" + "a" * 123
    assert len(longest) == 128
    assert client.call("join_room", longest) == {"ok": True, "room": longest}
    assert longest in client.call("get_rooms")
    too_long = longest + "a"
    answer = client.call("join_room", too_long)
    assert answer["ok"] is False and answer["error"]["code"] == "invalid_payload"
    assert too_long not in client.call("get_rooms")


def test_admin_may_join_the_room_of_another_users_message(api, connect, admin, user):
    sent = api.post("/api/messages", user.token,
                    json={"body": "hello", "recipients": ["+15551238001"]})
    assert sent.status_code == 202
    room = f"message:{sent.json()['id']}"
    client = connect(admin.token)
    assert client.call("join_room", room) == {"ok": True, "room": room}
    assert room in client.call("get_rooms")
