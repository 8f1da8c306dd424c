"""Transport defences on the real server: oversized frames never stall anyone."""

import contextlib
import json
import os
import socket
import struct
import threading
import time

import pytest
import websocket

from tests.churn import internals
from tests.support import (
    RecordingClient,
    eventually,
    register_user,
    rss_kb,
)


def _engineio_socket(hub) -> websocket.WebSocket:
    ws = websocket.create_connection(
        hub.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=10)
    assert ws.recv().startswith("0{")  # Engine.IO OPEN
    return ws


def _send_raw_frame_header(ws: websocket.WebSocket, length: int) -> None:
    """A masked text frame header declaring ``length`` bytes, written straight to the socket."""
    header = bytearray([0x81])
    if length < 126:
        header.append(0x80 | length)
    elif length < 65536:
        header += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", length)
    header += os.urandom(4)
    ws.sock.sendall(bytes(header))


def _ack_latencies(client, stop, out):
    while not stop.is_set():
        started = time.perf_counter()
        client.call("get_rooms", timeout=10)
        out.append(time.perf_counter() - started)
        time.sleep(0.01)


@pytest.mark.parametrize("size_mb", [10, 50])
def test_oversized_frame_is_refused_without_stalling_others(sqlite_hub, sqlite_user, size_mb):
    """The bystander's slowest ack stays under half a second.

    With the limit raised to 200 MB, a hub that takes a 50 MB frame in kept
    a bystander's ack waiting 8.4 s; with six test processes on two cores the
    slowest ack here has reached 0.18 s.
    """
    user = sqlite_user
    bystander = RecordingClient(sqlite_hub.url)
    bystander.connect(token=user.token)
    pid = sqlite_hub.process.pid
    rss_before = rss_kb(pid)
    latencies: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=_ack_latencies, args=(bystander, stop, latencies))
    probe.start()
    try:
        attacker = _engineio_socket(sqlite_hub)
        _send_raw_frame_header(attacker, size_mb * 1024 * 1024)
        chunk = os.urandom(64 * 1024)
        sent = 0
        try:
            while sent < size_mb * 1024 * 1024:
                attacker.sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: what we want
        time.sleep(0.5)
    finally:
        stop.set()
        probe.join()
    assert sent < size_mb * 1024 * 1024, "the server read the whole oversized frame"
    assert max(latencies) < 0.5, f"bystander acks stalled: max {max(latencies):.3f}s"
    assert rss_kb(pid) - rss_before < 10 * 1024
    assert bystander.call("get_rooms") == [f"user:{user.id}"]
    bystander.close()


def test_frame_just_under_the_limit_is_accepted(sqlite_hub, sqlite_user):
    user = sqlite_user
    client = RecordingClient(sqlite_hub.url)
    client.connect(token=user.token)
    answer = client.call("join_room", "room:" + "x" * 15000)
    assert answer["ok"] is False and answer["error"]["code"] == "invalid_payload"
    assert client.sio.connected
    client.close()


def test_fragmented_message_over_the_limit_is_refused(sqlite_hub):
    ws = _engineio_socket(sqlite_hub)
    fragment = b"4" + b"x" * 8000
    ws.send_frame(websocket.ABNF.create_frame(fragment, websocket.ABNF.OPCODE_TEXT, fin=0))
    for _ in range(2):
        ws.send_frame(websocket.ABNF.create_frame(b"x" * 8000, websocket.ABNF.OPCODE_CONT,
                                                  fin=0))
    with pytest.raises((websocket.WebSocketConnectionClosedException, socket.error,
                        websocket.WebSocketTimeoutException)):
        for _ in range(5):
            frame = ws.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                assert struct.unpack("!H", frame.data[:2])[0] == 1009
                raise websocket.WebSocketConnectionClosedException("closed")


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 60, 1000, 2500])
def test_masked_payloads_of_every_length_arrive_intact(sqlite_hub, sqlite_user, length):
    # Each "é" travels as a 6-byte JSON escape: frames of every length modulo the mask.
    client = RecordingClient(sqlite_hub.url)
    client.connect(token=sqlite_user.token)
    name = "room:" + "é" * length
    answer = client.call("join_room", name)
    if len(name) <= 128:
        assert answer == {"ok": True, "room": name}
    else:
        assert answer["error"]["code"] == "invalid_payload"
    client.close()


def test_invalid_utf8_text_closes_with_1007(sqlite_hub):
    ws = _engineio_socket(sqlite_hub)
    ws.send_frame(websocket.ABNF.create_frame(b"42[\"x\",\"\xff\xfe\"]",
                                              websocket.ABNF.OPCODE_TEXT))
    frame = ws.recv_frame()
    while frame.opcode != websocket.ABNF.OPCODE_CLOSE:
        frame = ws.recv_frame()
    assert struct.unpack("!H", frame.data[:2])[0] == 1007


def _close_code(ws: websocket.WebSocket) -> int:
    frame = ws.recv_frame()
    while frame.opcode != websocket.ABNF.OPCODE_CLOSE:
        frame = ws.recv_frame()
    return struct.unpack("!H", frame.data[:2])[0]


def _raw_frame(first_byte: int, payload: bytes, masked: bool = True) -> bytes:
    mask = os.urandom(4) if masked else b""
    header = bytes([first_byte, (0x80 if masked else 0) | len(payload)]) + mask
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if masked else payload
    return header + body


@pytest.mark.parametrize(("first_byte", "masked", "why"), [
    (0x81, False, "unmasked client frame"),
    (0xC1, True, "reserved bit without an extension"),
    (0x83, True, "unknown opcode"),
    (0x09, True, "fragmented control frame"),
])
def test_frames_breaking_rfc_6455_close_with_1002(sqlite_hub, first_byte, masked, why):
    ws = _engineio_socket(sqlite_hub)
    ws.sock.sendall(_raw_frame(first_byte, b"40", masked=masked))
    assert _close_code(ws) == 1002, why


def test_unknown_engineio_packet_closes_with_1002(sqlite_hub):
    ws = _engineio_socket(sqlite_hub)
    ws.send("9nonsense")
    assert _close_code(ws) == 1002


def test_websocket_ping_is_answered_and_close_is_echoed(sqlite_hub):
    ws = _engineio_socket(sqlite_hub)
    ws.ping(b"are you there")
    frame = ws.recv_frame()
    assert (frame.opcode, frame.data) == (websocket.ABNF.OPCODE_PONG, b"are you there")
    ws.send_close(status=1001)
    assert _close_code(ws) == 1001


def test_fragmented_messages_are_reassembled(sqlite_hub, sqlite_user):
    ws = _engineio_socket(sqlite_hub)
    connect = ("40" + json.dumps({"token": sqlite_user.token})).encode()
    half = len(connect) // 2
    ws.send_frame(websocket.ABNF.create_frame(connect[:half], websocket.ABNF.OPCODE_TEXT,
                                              fin=0))
    ws.ping(b"between fragments")
    ws.send_frame(websocket.ABNF.create_frame(connect[half:], websocket.ABNF.OPCODE_CONT))
    replies = [ws.recv_frame() for _ in range(2)]
    assert replies[0].opcode == websocket.ABNF.OPCODE_PONG
    assert replies[1].data.startswith(b"40{")
    ws.send('421["get_rooms"]')
    answer = ws.recv()
    while not answer.startswith("431"):
        answer = ws.recv()
    assert json.loads(answer[3:]) == [[f"user:{sqlite_user.id}"]]
    ws.close()


def test_binary_payload_gets_a_clear_error_then_the_connection_closes(sqlite_hub, sqlite_user):
    client = RecordingClient(sqlite_hub.url)
    client.connect(token=sqlite_user.token)
    answer = client.call("join_room", b"\x00\x01binary")
    assert answer == {"ok": False, "error": {"code": "invalid_payload",
                                             "message": "Binary data is not accepted"}}
    assert client.disconnected.wait(5), "a client sending binary data stayed connected"


@pytest.mark.parametrize("transports", [("polling",), ("polling", "websocket")])
def test_long_polling_and_its_upgrade_still_work(sqlite_hub, sqlite_user, sqlite_admin,
                                                 transports):
    client = RecordingClient(sqlite_hub.url)
    client.connect(token=sqlite_user.token, transports=transports)
    assert client.wait_for("session")["userId"] == str(sqlite_user.id)
    assert client.call("get_rooms") == [f"user:{sqlite_user.id}"]
    response = sqlite_hub.api.post(f"/api/socket/notify/{sqlite_user.id}", sqlite_admin.token,
                                   json={"title": "over " + "/".join(transports),
                                         "message": "m"})
    assert response.status_code == 201
    assert client.wait_for("notification")["title"] == "over " + "/".join(transports)
    client.close()


@pytest.fixture(scope="module")
def quick_ping_hub(module_hub_factory):
    return module_hub_factory({"SOCKETIO_PING_INTERVAL": "1", "SOCKETIO_PING_TIMEOUT": "1"},
                              name="ping")


def test_a_client_that_stops_answering_pings_is_dropped(quick_ping_hub):
    user, admin = register_user(quick_ping_hub), register_user(quick_ping_hub, admin=True)
    ws = _engineio_socket(quick_ping_hub)
    ws.send("40" + json.dumps({"token": user.token}))
    pings = 0
    started = time.monotonic()
    while time.monotonic() - started < 3.5:
        message = ws.recv()
        if message == "2":
            pings += 1
            ws.send("3")
    assert pings >= 2, "the server stopped pinging a client that answers"

    def offline():
        return not quick_ping_hub.api.get(f"/api/socket/user/{user.id}/online",
                                          admin.token).json()["online"]
    assert not offline()
    eventually(offline, timeout=5)
    after_silence = []
    with contextlib.suppress(websocket.WebSocketConnectionClosedException, OSError):
        while message := ws.recv():
            after_silence.append(message)
    assert after_silence[-1] == "1", "no Engine.IO close packet before the socket ended"


def test_an_open_websocket_keeps_nothing_of_its_request(sqlite_hub, sqlite_user, sqlite_admin):
    """The handshake's buffered reader (8 KB) is closed once the socket is upgraded, and
    neither its parsed head nor its WSGI environ outlive the handshake."""
    kept = ("requestReaders", "requestHeads", "requestEnvirons")
    before = internals(sqlite_hub, sqlite_admin)
    sockets = [_engineio_socket(sqlite_hub) for _ in range(20)]
    for ws in sockets:
        ws.send("40" + json.dumps({"token": sqlite_user.token}))
        assert ws.recv().startswith("40{")
    during = internals(sqlite_hub, sqlite_admin)
    for ws in sockets:
        ws.close()
    assert during["engineioSockets"] - before["engineioSockets"] == 20
    for name in kept:
        assert during[name] - before[name] < 5, (name, before[name], during[name])
