"""Socket.IO packets read and written without packet objects, against python-socketio's own.

``plain_event`` and ``ack_text`` carry the commonest packets (a plain event
and its ack); every packet they read or write must come out exactly as
python-socketio's ``Packet`` decodes or encodes it, and every packet they do
not take must be left to it. The end-to-end twin, over a real WebSocket, is
at the bottom.
"""

from __future__ import annotations

import json

import orjson
import pytest
import websocket
from socketio import packet

from services.transport.packets import HubPacket, PacketJson, ack_text, plain_event


@pytest.mark.parametrize("encoded", [
    '2["get_rooms"]',
    '21["get_rooms"]',
    '20["join_room","user:1"]',
    '2007["pong",{"a":[1,2,{"b":null}]}]',
    '2' + '9' * 100 + '["get_rooms"]',
    '2[]',
    '2["x",18446744073709551616]',
])
def test_plain_events_read_as_python_socketio_reads_them(encoded):
    reference = HubPacket(encoded_packet=encoded)
    ack_id, arguments = plain_event(encoded)
    assert (ack_id, HubPacket.json.loads(arguments)) == (reference.id, reference.data)
    assert reference.packet_type == packet.EVENT and reference.namespace is None


@pytest.mark.parametrize("encoded", [
    '2/chat,["get_rooms"]',        # a namespace
    '2/,5["get_rooms"]',
    '21-["get_rooms"]',            # attachments
    '2' + '9' * 101 + '["x"]',     # an id python-socketio refuses
    '2',                           # no data
    '2{"a":1}',                    # data that is not an array
    '2 ["get_rooms"]',
    '2١["get_rooms"]',             # a digit, but not an ASCII one
    '3["get_rooms"]',              # not an event
])
def test_other_packets_are_left_to_python_socketio(encoded):
    assert plain_event(encoded) is None


@pytest.mark.parametrize(("namespace", "ack_id", "result"), [
    ("/", 0, ["user:1"]),
    ("/", 12345, {"ok": False, "error": {"code": "rate_limited", "message": "slow"}}),
    ("/admin", 7, None),
    ("/", 3, "é ✓"),
])
def test_ack_text_is_what_python_socketio_encodes(namespace, ack_id, result):
    reference = HubPacket(packet.ACK, namespace=namespace, id=ack_id, data=[result]).encode()
    assert ack_text(namespace, ack_id, HubPacket.json.dumps([result])) == reference


@pytest.mark.parametrize(("packet_type", "namespace", "ack_id", "data"), [
    (packet.EVENT, None, None, ["recipient_updates", {"updates": [{"id": 1, "s": "é ✓"}] * 3}]),
    (packet.EVENT, "/admin", 4, ["notification", {"nested": [[{"deep": None}]], 2: "key"}]),
    (packet.ACK, "/", 9, [{"ok": True, "big": 2**70}]),
    (packet.CONNECT, None, None, {"sid": "abc"}),
])
def test_packets_encode_as_python_socketio_encodes_them(packet_type, namespace, ack_id, data):
    def head_and_data(encoded: str) -> tuple[str, object]:
        start = min(encoded.index(c) for c in "[{" if c in encoded)
        return encoded[:start], json.loads(encoded[start:])

    hub = HubPacket(packet_type, namespace=namespace, id=ack_id, data=data)
    library = packet.Packet(packet_type, namespace=namespace, id=ack_id, data=data)
    assert hub.packet_type == library.packet_type
    # The same packet; orjson writes non-ASCII as UTF-8 where the library escapes it.
    assert head_and_data(hub.encode()) == head_and_data(library.encode())


def test_data_json_can_encode_is_not_walked_for_bytes(monkeypatch):
    def walked(data):
        raise AssertionError("walked")
    monkeypatch.setattr(HubPacket, "data_is_binary", staticmethod(walked))
    text = HubPacket(packet.EVENT, data=["batch", {"updates": [{"id": i} for i in range(1000)]}])
    assert text.packet_type == packet.EVENT
    with pytest.raises(AssertionError, match="walked"):
        HubPacket(packet.EVENT, data=["file", {"content": b"raw"}])


def test_bytes_anywhere_still_make_a_binary_event():
    binary = HubPacket(packet.EVENT, data=["file", {"parts": [{"content": b"raw"}]}])
    assert binary.packet_type == packet.BINARY_EVENT
    encoded = binary.encode()
    assert encoded[0].startswith("51-[") and encoded[1:] == [b"raw"]


def test_a_batch_already_encoded_is_sent_and_queued_as_the_same_json():
    """A shared snapshot's batch (``services.messaging.shared_snapshots``): to a local
    socket as a packet, to another process's through the queue, which encodes with
    ``PacketJson``; both as if the states had been encoded with the packet."""
    states = [{"recipientId": "7", "phone": "+15550000007", "version": 3}]
    shared = ["recipient_updates", {"messageId": "1",
                                    "updates": orjson.Fragment(orjson.dumps(states)),
                                    "version": 5}]
    fresh = ["recipient_updates", {"messageId": "1", "updates": states, "version": 5}]
    assert HubPacket(packet.EVENT, data=shared).encode() == \
        HubPacket(packet.EVENT, data=fresh).encode()
    queued = {"method": "emit", "event": "recipient_updates", "data": shared[1]}
    assert PacketJson.loads(PacketJson.dumps(queued))["data"] == fresh[1]


def _connected_socket(hub, token: str) -> websocket.WebSocket:
    ws = websocket.create_connection(
        hub.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=10)
    assert ws.recv().startswith("0{")
    ws.send("40" + json.dumps({"token": token}))
    assert ws.recv().startswith("40{")
    return ws


def _next_ack(ws: websocket.WebSocket, prefix: str) -> str:
    answer = ws.recv()
    while not answer.startswith(prefix):
        answer = ws.recv()
    return answer


def test_events_in_every_encoding_are_answered_alike(sqlite_hub, sqlite_user):
    ws = _connected_socket(sqlite_hub, sqlite_user.token)
    rooms = [[f"user:{sqlite_user.id}"]]
    for sent, ack_prefix in [('42007["get_rooms"]', "437["), ('42/,8["get_rooms"]', "438["),
                             ('429["get_rooms"]', "439[")]:
        ws.send(sent)
        assert json.loads(_next_ack(ws, ack_prefix)[len(ack_prefix) - 1:]) == rooms, sent
    ws.send('4211["get_rooms",{"unexpected":1}]')
    answer = json.loads(_next_ack(ws, "4311[")[4:])
    assert answer[0]["error"]["code"] == "invalid_payload"
    ws.close()
