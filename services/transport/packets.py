"""Socket.IO packets as the hub encodes and decodes them: orjson, and an early binary check.

Given to python-socketio's constructor (``serializer=HubPacket``,
``json=PacketJson``, see ``services.transport.install``): every packet the
server builds or reads is one of these.
"""

from __future__ import annotations

from typing import Any

import orjson
from engineio import json as engineio_json
from socketio import packet

from services.transport import json_input


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
            return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            return engineio_json.dumps(data, separators=(",", ":"))

    @staticmethod
    def loads(text: str | bytes) -> Any:
        return json_input.decode(text)


class HubPacket(packet.Packet):
    """python-socketio's packet with faster JSON and a binary check that stops early.

    Every packet built for sending is scanned for ``bytes`` to decide whether
    it needs binary attachments; the library's scan visits every value with
    ``functools.reduce`` even after a hit.
    """

    json = PacketJson

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
