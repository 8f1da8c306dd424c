"""Transport defences on the real server: oversized frames never stall anyone."""

import os
import socket
import struct
import threading
import time

import pytest
import websocket

from tests.support import RecordingClient


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


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
    user = sqlite_user
    bystander = RecordingClient(sqlite_hub.url)
    bystander.connect(token=user.token)
    pid = sqlite_hub.process.pid
    rss_before = _rss_kb(pid)
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
    assert max(latencies) < 0.1, f"bystander acks stalled: max {max(latencies):.3f}s"
    assert _rss_kb(pid) - rss_before < 10 * 1024
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
