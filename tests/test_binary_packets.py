"""Binary packets: no client event takes binary data, so they end the connection at once.

python-socketio keeps a ``BINARY_EVENT`` header and every binary message after
it until the announced number of attachments (up to 9,999,999,999) has
arrived, and none of it was charged to any limit: one socket could fill the
node's memory. Every transport is attacked here: a direct WebSocket, a
long-polling session (``b<base64>`` packets) and a session upgraded from it.
"""

import base64
import json
import os
import select
import time

import pytest
import websocket

from tests.support import (
    AckProbe,
    PollingClient,
    RecordingClient,
    assert_acks_stay_flat,
    close_code,
    raw_websocket,
    register_user,
    rss_kb,
)

# A BINARY_EVENT announcing the most attachments python-socketio's parser accepts.
ENDLESS_HEADER = '59999999999-["join_room",{"_placeholder":true,"num":0}]'
FLOOD_BYTES = 50 * 1024 * 1024
CLOSE_UNSUPPORTED_DATA = 1003


@pytest.fixture(scope="module")
def budget_hub(module_hub_factory):
    return module_hub_factory({"EVENT_RATE": "20", "EVENT_BURST": "40"}, name="budget")


def _authenticated_websocket(hub, token: str) -> websocket.WebSocket:
    ws = raw_websocket(hub)
    assert ws.recv().startswith("0{")
    ws.send("40" + json.dumps({"token": token}))
    assert ws.recv().startswith("40{")
    return ws


def _upgraded_websocket(hub, token: str) -> websocket.WebSocket:
    polling = PollingClient(hub)
    assert polling.open().status == 200
    polling.connect(token)
    return polling.upgrade()


def _flood_with_attachments(ws: websocket.WebSocket) -> int:
    """The endless header, then 16 KB binary frames until the hub hangs up; bytes sent."""
    ws.send("4" + ENDLESS_HEADER)
    chunk = os.urandom(16000)
    sent = 0
    deadline = time.monotonic() + 20
    try:
        while sent < FLOOD_BYTES and time.monotonic() < deadline:
            ws.send_binary(chunk)
            sent += len(chunk)
    except (OSError, websocket.WebSocketConnectionClosedException):
        pass
    return sent


def _bystander(hub, user) -> RecordingClient:
    client = RecordingClient(hub.url)
    client.connect(token=user.token)
    return client


@pytest.mark.parametrize("transport", ["websocket", "upgraded"])
def test_endless_binary_attachments_close_the_socket_and_memory_stays_flat(
        sqlite_hub, transport):
    attacker_user, calm_user = register_user(sqlite_hub), register_user(sqlite_hub)
    calm = _bystander(sqlite_hub, calm_user)
    baseline = AckProbe.baseline(calm)
    open_socket = _authenticated_websocket if transport == "websocket" else _upgraded_websocket
    attacker = open_socket(sqlite_hub, attacker_user.token)
    rss_before = rss_kb(sqlite_hub.process.pid)
    with AckProbe(calm) as during:
        sent = _flood_with_attachments(attacker)
        time.sleep(0.5)
    growth_mb = (rss_kb(sqlite_hub.process.pid) - rss_before) / 1024
    assert sent < FLOOD_BYTES, "the hub read every attachment of the endless packet"
    assert growth_mb < 10, f"the node grew by {growth_mb:.0f} MB"
    assert_acks_stay_flat(baseline, during)
    assert calm.call("get_rooms") == [f"user:{calm_user.id}"]
    calm.close()


@pytest.mark.parametrize("transport", ["websocket", "upgraded"])
def test_binary_frame_closes_with_1003_before_its_payload_is_used(sqlite_hub, sqlite_user,
                                                                   transport):
    open_socket = _authenticated_websocket if transport == "websocket" else _upgraded_websocket
    ws = open_socket(sqlite_hub, sqlite_user.token)
    ws.send_binary(b"\x04" + os.urandom(100))
    assert close_code(ws) == CLOSE_UNSUPPORTED_DATA


def test_binary_event_header_is_answered_then_the_connection_closes(sqlite_hub, sqlite_user):
    ws = _authenticated_websocket(sqlite_hub, sqlite_user.token)
    ws.send('451-7["join_room",{"_placeholder":true,"num":0}]')
    answers = []
    while not any(answer.startswith("437") for answer in answers):
        answers.append(ws.recv())
    ack = json.loads(next(a for a in answers if a.startswith("437"))[3:])
    assert ack == [{"ok": False, "error": {
        "code": "invalid_payload", "message": "Binary data is not accepted"}}]
    assert close_code(ws) == CLOSE_UNSUPPORTED_DATA


def test_binary_packets_over_long_polling_end_the_session(sqlite_hub, sqlite_user):
    attacker_user = register_user(sqlite_hub)
    calm = _bystander(sqlite_hub, sqlite_user)
    baseline = AckProbe.baseline(calm)
    polling = PollingClient(sqlite_hub)
    assert polling.open().status == 200
    polling.connect(attacker_user.token)
    attachment = "b" + base64.b64encode(os.urandom(11000)).decode()
    rss_before = rss_kb(sqlite_hub.process.pid)
    answers = []
    with AckProbe(calm) as during:
        answers.append(polling.send("4" + ENDLESS_HEADER, "4" + attachment).status)
        while answers[-1] == 200 and len(answers) < 300:
            answers.append(polling.send("4" + attachment).status)
    assert answers[-1] == 400 and len(answers) <= 2, answers[:5]
    assert polling.poll().status == 400, "the session outlived its binary packet"
    assert rss_kb(sqlite_hub.process.pid) - rss_before < 10 * 1024
    assert_acks_stay_flat(baseline, during)
    calm.close()


def test_packets_that_are_not_events_are_charged_to_the_budget(budget_hub):
    """ACK packets nobody asked for are not events, but they cost the same to receive."""
    user = register_user(budget_hub)
    ws = _authenticated_websocket(budget_hub, user.token)
    unasked_ack = "431" + json.dumps(["x" * 15000])
    received = []
    try:
        for _ in range(1000):
            ws.send(unasked_ack)
            while select.select([ws.sock], [], [], 0)[0]:
                received.append(ws.recv())
            if "41" in received:
                break
    except (OSError, websocket.WebSocketConnectionClosedException):
        pass
    assert "41" in received, "a socket sending 15 MB of unasked acks was never disconnected"
