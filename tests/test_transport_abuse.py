"""Clients that stop reading or speak garbage: dropped, with memory and logs bounded."""

import json
import os
import socket
import time

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
    user = register_user(strict_hub)
    bystander = RecordingClient(strict_hub.url)
    bystander.connect(token=user.token)
    lines_before = strict_hub.log_text().count("protocol error")
    ws = _raw_socketio(strict_hub, user.token)
    closed_after = None
    for sent in range(1, 101):
        try:
            ws.send(["4abc", "42{}", '42abc["x"]', "4" + os.urandom(4).hex(), "42[]"][sent % 5])
        except (websocket.WebSocketConnectionClosedException, BrokenPipeError,
                ConnectionResetError):
            closed_after = sent
            break
        time.sleep(0.005)
    if closed_after is None:
        with pytest.raises(Exception):  # noqa: B017 - any close or reset will do
            ws.recv()
    else:
        assert closed_after <= 10
    assert strict_hub.log_text().count("protocol error") - lines_before <= 3
    assert bystander.call("get_rooms") == [f"user:{user.id}"]
    bystander.close()


def test_event_before_connect_and_unknown_namespace_are_refused(strict_hub):
    ws = websocket.create_connection(
        strict_hub.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
        timeout=5)
    ws.recv()
    ws.send("40/random,")
    answer = ws.recv()
    assert answer.startswith("44/random,")
    ws.close()
