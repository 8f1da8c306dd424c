"""RFC 6455 framing as a server speaks it: the frames it sends, and its clients' frames read.

Standard library only, and used by both WebSocket paths: the hub's own
Engine.IO socket (``services.transport.engine_socket``) reads with
``MessageReader``; gevent-websocket's socket, kept for sessions upgraded from
long-polling (``services.transport.handler``), reads with its own parser but
refuses the same frames with the same close codes, raising the same
``ProtocolViolation``.

A client's frame is judged from its header alone: an oversized data frame
(or a fragmented message grown past the limit), a binary frame, an unmasked
one, reserved bits, an unknown opcode or a long or fragmented control frame
is refused before a byte of its payload is read. Payloads are unmasked with
one big-integer XOR, at C speed.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable, Iterator

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
DATA_OPCODES = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
MAX_CONTROL_PAYLOAD = 125
# A close frame's payload is its 2-byte code and at most this much reason.
MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_MESSAGE_TOO_BIG = 1009

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ProtocolViolation(Exception):
    """The peer broke RFC 6455, or sent what the hub refuses: the connection closes with ``code``.

    Not a gevent-websocket ``WebSocketError``: that is a socket error, which
    its ``receive`` closes without a code.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame, as a server sends it."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, length))
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return header + payload


def close_payload(code: int, reason: str | bytes = b"") -> bytes:
    """A close frame's payload: the code, then as much of the reason as a control frame holds."""
    encoded = reason.encode() if isinstance(reason, str) else bytes(reason)
    return struct.pack("!H", code) + encoded[:MAX_CLOSE_REASON]


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, close_payload(code, reason))


def close_code(payload: bytes) -> int:
    """The code of a received close frame; one without a code is a normal close."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else CLOSE_NORMAL


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` repeated; the same operation masks."""
    length = len(payload)
    if not length:
        return b""
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        length, "little")


def accept_key(client_key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(client_key.encode("latin-1") + WEBSOCKET_GUID)
                            .digest()).decode("ascii")


class MessageReader:
    """A client's frames in, its whole messages and control frames out.

    Bytes are fed as they arrive, in pieces of any size; a frame split across
    pieces waits in ``pending``. Fragments are put back together, and a
    control frame between them comes out on its own, in order. Only text
    messages exist here: binary frames are refused.
    """

    __slots__ = ("max_message_size", "pending", "fragments", "fragments_size", "fragmented")

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self.pending = b""
        self.fragments: list[bytes] = []
        self.fragments_size = 0
        self.fragmented = False

    def feed(self, data: bytes) -> Iterable[tuple[int, bytes]]:
        """``(OP_TEXT, message)`` for each whole message, ``(opcode, payload)`` for each
        control frame, in the order they complete; ``ProtocolViolation`` for a refused frame.

        A frame's header is checked as soon as it is in, before its payload
        has arrived. The caller may stop taking frames at any point (the
        connection closed): what was not taken is dropped with it.

        The commonest read, an event as a client sends it, is one whole, final,
        masked text frame of under 126 bytes with nothing pending: it is
        answered here without starting the generator: 4 % of an ack's instructions
        (``make bench-acks``).
        """
        if not self.pending and not self.fragmented and len(data) >= 6 \
                and data[0] == 0x80 | OP_TEXT:
            length = data[1] ^ 0x80  # over 127 when the mask bit is unset
            if length <= 125 and len(data) == 6 + length and length <= self.max_message_size:
                return ((OP_TEXT, unmask(data[6:], data[2:6])),)
        return self._frames(data)

    def _frames(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        buffer = self.pending + data if self.pending else data
        position, size = 0, len(buffer)
        try:
            while size - position >= 2:
                first, second = buffer[position], buffer[position + 1]
                opcode, length = first & 0x0F, second & 0x7F
                header = 2
                if length == 126:
                    if size - position < 4:
                        break
                    length = int.from_bytes(buffer[position + 2:position + 4], "big")
                    header = 4
                elif length == 127:
                    if size - position < 10:
                        break
                    length = int.from_bytes(buffer[position + 2:position + 10], "big")
                    header = 10
                self._check_header(first, second, opcode, length)
                end = position + header + 4 + length
                if end > size:
                    break
                mask_at = position + header
                payload = unmask(buffer[mask_at + 4:end], buffer[mask_at:mask_at + 4])
                position = end
                if opcode == OP_TEXT:
                    if self.fragmented:
                        raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "message interrupted")
                    if first & 0x80:
                        yield OP_TEXT, payload
                    else:
                        self.fragments, self.fragments_size = [payload], len(payload)
                        self.fragmented = True
                elif opcode == OP_CONTINUATION:
                    if not self.fragmented:
                        raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "nothing to continue")
                    self.fragments.append(payload)
                    self.fragments_size += len(payload)
                    if first & 0x80:
                        message = b"".join(self.fragments)
                        self.fragments, self.fragments_size, self.fragmented = [], 0, False
                        yield OP_TEXT, message
                else:
                    yield opcode, payload
        finally:
            self.pending = buffer[position:]

    def _check_header(self, first: int, second: int, opcode: int, length: int) -> None:
        if first & 0x70:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "no extension was negotiated")
        if not second & 0x80:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        if opcode == OP_BINARY:
            # No client event takes binary data: refused before its payload is read.
            raise ProtocolViolation(CLOSE_UNSUPPORTED_DATA, "binary data is not accepted")
        if opcode in DATA_OPCODES:
            total = length + (self.fragments_size if opcode == OP_CONTINUATION else 0)
            if total > self.max_message_size:
                raise ProtocolViolation(CLOSE_MESSAGE_TOO_BIG, "message too big")
        elif opcode in CONTROL_OPCODES:
            if length > MAX_CONTROL_PAYLOAD or not first & 0x80:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "bad control frame")
        else:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "unknown opcode")
