"""Socket.IO packets as the hub encodes and decodes them: orjson, and an early binary check.

Given to python-socketio's constructor (``serializer=HubPacket``,
``json=PacketJson``, see ``services.transport.install``): every packet the
server builds or reads is one of these, except the commonest pair: a plain
event on the default namespace (``2["name",...]``, with or without an ack
id) and its text ack, which ``plain_event`` and ``ack_text`` read and write
without a packet object in between (``services.transport.socket_server``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from engineio import json as engineio_json
from socketio import packet

from services.transport import json_input


def orjson_text(data: Any) -> str:
    """``data`` as JSON text by orjson; ``TypeError`` when orjson refuses it.

    Plain first: orjson's option for non-string keys (an ``int`` key, such as a
    count by a number) doubles the time of every dictionary it encodes, and
    almost no payload needs it.
    """
    try:
        return orjson.dumps(data).decode()
    except TypeError:
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()


class PacketJson:
    """JSON for Socket.IO packets: orjson, falling back to the standard module.

    orjson is several times faster both ways. What it refuses (integers past
    64 bits, NaN literals from a client) goes to python-engineio's own JSON,
    so nothing decodes or encodes differently from before, only faster; a
    document nested too deeply is a ``ValueError`` either way (see
    ``services.transport.json_input``). Given to the server as its ``json``, it is also
    what python-engineio decodes its own packets with.
    """

    @staticmethod
    def dumps(data: Any, **_options: Any) -> str:
        try:
            return orjson_text(data)
        except TypeError:
            return engineio_json.dumps(data, separators=(",", ":"))

    @staticmethod
    def loads(text: str | bytes) -> Any:
        return json_input.decode(text)


class HubPacket(packet.Packet):
    """python-socketio's packet with faster JSON and a cheaper binary check.

    Every packet built for sending is scanned for ``bytes`` to decide whether
    it needs binary attachments. A walk in Python visits every value: for a
    snapshot of 1,000 recipients, 7,000 of them, about half of what a tracker
    cost the hub (py-spy, ``bench/recipient_batches.py``). orjson refuses
    ``bytes``, so a packet whose data it encodes has none: that JSON is kept
    for ``encode``, and only data it refuses is walked (and encoded as before).
    """

    json = PacketJson

    def __init__(self, packet_type: int = packet.EVENT, data: Any = None,
                 namespace: str | None = None, id: int | None = None,
                 binary: bool | None = None, encoded_packet: Any = None) -> None:
        self.encoded_data: str | None = None
        if binary is None and data is not None and encoded_packet is None:
            try:
                self.encoded_data = orjson_text(data)
                binary = False
            except TypeError:
                pass
        super().__init__(packet_type, data, namespace, id, binary, encoded_packet)

    def encode(self) -> Any:
        if self.encoded_data is None:
            return super().encode()
        encoded = str(self.packet_type)
        if self.namespace is not None and self.namespace != "/":
            encoded += self.namespace + ","
        if self.id is not None:
            encoded += str(self.id)
        return encoded + self.encoded_data

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        if isinstance(data, bytes | bytearray):
            return True
        if isinstance(data, list):
            values = data
        elif isinstance(data, dict):
            values = data.values()
        else:
            return False
        for value in values:
            if isinstance(value, list | dict | bytes | bytearray) and cls.data_is_binary(value):
                return True
        return False


# An EVENT on the default namespace, no attachments: ``2``, the ack id if any, the array.
# More than 100 digits is not a match, so python-socketio's decoder refuses it as before.
_PLAIN_EVENT = re.compile(r"2([0-9]{0,100})\[")


def plain_event(data: str) -> tuple[int | None, str] | None:
    """The ack id and the JSON array of a plain event; None for any other packet.

    What this reads, python-socketio's ``Packet.decode`` reads the same way;
    everything else (namespaces, attachments, odd ids) is left to it.
    """
    match = _PLAIN_EVENT.match(data)
    if match is None:
        return None
    digits = match.group(1)
    return (int(digits) if digits else None), data[match.end() - 1:]


def ack_text(namespace: str, ack_id: int, encoded_args: str) -> str:
    """An ACK packet as ``Packet.encode`` writes it, from its arguments' JSON array."""
    if namespace == "/":
        return f"3{ack_id}{encoded_args}"
    return f"3{namespace},{ack_id}{encoded_args}"
