"""Clients that stop reading or speak garbage: dropped, with memory and logs bounded."""

import json
import socket

import pytest
import websocket

from tests.support import (
    RecordingClient,
    eventually,
    register_user,
)


@pytest.fixture(scope="module")
def strict_hub(module_hub_factory):
    return module_hub_factory({"MAX_OUTBOUND_PACKETS": "50"}, name="strict")


MALFORMED_PACKETS = ("4abc", "42{}", '42abc["x"]', '42["x"', "42[]")


def _raw_socketio(hub, token, rcvbuf=None):
    options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)] if rcvbuf else None
    ws = websocket.create_connection(
        hub.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=10,
        sockopt=options)
    assert ws.recv().startswith("0{")
    ws.send("40" + json.dumps({"token": token}))
    assert ws.recv().startswith("40{")
    return ws


def test_client_that_never_reads_is_dropped(strict_hub):
    user, admin = register_user(strict_hub), register_user(strict_hub, admin=True)
    stalled = _raw_socketio(strict_hub, user.token, rcvbuf=4096)
    data = {"blob": "x" * 7000}

    def online():
        return strict_hub.api.get(f"/api/socket/user/{user.id}/online",
                                  admin.token).json()["online"]
    eventually(online)
    for _ in range(1500):
        strict_hub.api.post(f"/api/socket/notify/{user.id}", admin.token,
                            json={"title": "flood", "message": "m", "data": data})
        if not online():
            break
    assert not online(), "a client that never reads stayed connected"
    assert "slow consumer" in strict_hub.log_text()
    stalled.close()


def test_malformed_packets_close_the_connection_with_bounded_logging(strict_hub):
    """The fifth malformed packet closes the connection: the client sends five, then only reads.

    Counting the sends until one fails measured the machine (how far the
    client got before the close arrived), not the hub.
    """
    user = register_user(strict_hub)
    bystander = RecordingClient(strict_hub.url)
    bystander.connect(token=user.token)
    lines_before = strict_hub.log_text().count("protocol error")
    ws = _raw_socketio(strict_hub, user.token)
    for malformed in MALFORMED_PACKETS:
        ws.send(malformed)
    frames = []
    while not frames or frames[-1] != "":  # a close frame reads as ""; ten seconds at most
        frames.append(ws.recv())
    assert "1" in frames  # Engine.IO's close packet before the WebSocket's close frame
    assert strict_hub.log_text().count("protocol error") - lines_before <= 3
    assert bystander.call("get_rooms") == [f"user:{user.id}"]
    bystander.close()


def test_four_malformed_packets_leave_the_connection_open(strict_hub):
    user = register_user(strict_hub)
    ws = _raw_socketio(strict_hub, user.token)
    for malformed in MALFORMED_PACKETS[:-1]:
        ws.send(malformed)
    ws.send('421["get_rooms"]')
    frames = [ws.recv()]
    while not frames[-1].startswith("431"):  # after the session event
        frames.append(ws.recv())
    assert frames[-1] == f'431[["user:{user.id}"]]' and "1" not in frames
    ws.close()


def test_event_before_connect_and_unknown_namespace_are_refused(strict_hub):
    ws = websocket.create_connection(
        strict_hub.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
        timeout=5)
    ws.recv()
    ws.send("40/random,")
    answer = ws.recv()
    assert answer.startswith("44/random,")
    ws.close()
