"""WebSocket frames under a size limit, checked before a byte of payload is read.

gevent-websocket reads whatever length a client declares, then unmasks it one
byte at a time in Python; python-engineio checks its size limit only after
that. One 10 MB frame stalls every other client for seconds. Here the
declared length of each frame, and of a fragmented message so far, is checked
against ``max_message_size`` from the header alone: an oversized frame closes
the connection with 1009 (message too big) and its payload is never read.
Accepted payloads are unmasked with a big-integer XOR and their UTF-8 checked
by Python's decoder, both at C speed. No client event takes binary data, so a
binary frame closes the connection with 1003 (unsupported data), also from its
header alone.
"""

from __future__ import annotations

import struct

import gevent
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, WebSocket

from services.http_connections import DEFAULT_HEADER_TIMEOUT, RequestHeadDeadline

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_MESSAGE_TOO_BIG = 1009


class FrameRefused(Exception):
    """A frame refused from its header: the connection closes with ``code``.

    Not a ``WebSocketError``: that is a socket error, which ``receive`` closes
    without a code.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` repeated; the same operation masks."""
    length = len(payload)
    if not length:
        return b""
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        length, "little")


class LimitedWebSocket(WebSocket):
    """gevent-websocket's socket with a size check before each payload read.

    It takes the place of the socket the handler built (same slots, no new
    ones), so the per-message byte count lives on the handler.
    """

    __slots__ = ()

    def read_frame(self):
        header = Header.decode_header(self.stream)
        if header.flags:
            raise ProtocolError
        opcode, handler = header.opcode, self.handler
        if opcode == self.OPCODE_BINARY:
            raise FrameRefused(CLOSE_UNSUPPORTED_DATA, "binary data is not accepted")
        if opcode == self.OPCODE_TEXT:
            handler.message_bytes = 0
        if opcode in (self.OPCODE_TEXT, self.OPCODE_CONTINUATION):
            handler.message_bytes += header.length
            if handler.message_bytes > handler.max_message_size:
                raise FrameRefused(CLOSE_MESSAGE_TOO_BIG, "message too big")
        elif header.length > 125:
            raise ProtocolError("control frame too long")
        if not header.length:
            return header, b""
        payload = self.raw_read(header.length)
        if len(payload) != header.length:
            raise WebSocketError("Unexpected EOF reading frame payload")
        if header.mask:
            payload = unmask(payload, header.mask)
        return header, payload

    def validate_utf8(self, payload) -> None:
        """Checked once, at C speed, when the whole message is decoded.

        gevent-websocket runs a pure-Python UTF-8 automaton over every frame and
        again over every message, about a microsecond per byte: the largest
        cost of a small event. The final ``decode`` still refuses invalid
        UTF-8 (closing with 1007), and a message is at most
        ``max_message_size`` bytes, so nothing unbounded is buffered.
        """

    def receive(self):
        try:
            return super().receive()
        except FrameRefused as refused:
            self.close(refused.code, refused.reason)
            return None

    def close(self, code: int = 1000, message: bytes | str = b"") -> None:
        """As gevent-websocket's, but the close frame carries ``code``, which it leaves out."""
        if self.closed:
            return super().close(code, message)
        reason = message.encode() if isinstance(message, str) else bytes(message or b"")
        try:
            self.send_frame(struct.pack("!H", code) + reason[:123], self.OPCODE_CLOSE)
        except WebSocketError:
            pass
        finally:
            self.closed = True
            self.stream = self.raw_write = self.raw_read = self.environ = None


class LimitedWebSocketHandler(RequestHeadDeadline, WebSocketHandler):
    """Serves direct Engine.IO WebSockets itself; upgrades others to a ``LimitedWebSocket``.

    ``services.engine_socket`` first refuses what must not reach python-engineio
    (a foreign Origin, a session used by another client, an address over its
    cap), before gevent-websocket could answer 101, then serves a new WebSocket
    session itself. A long-polling session upgrading to WebSocket keeps
    python-engineio's path, on a ``LimitedWebSocket`` bound to the handler's
    ``max_message_size``. Request heads have a deadline
    (``services.http_connections``).
    """

    max_message_size = DEFAULT_MAX_MESSAGE_SIZE
    message_bytes = 0

    def run_application(self):
        from services.engine_socket import serve_engine_request

        if serve_engine_request(self):
            return None
        return super().run_application()

    def upgrade_connection(self):
        result = super().upgrade_connection()
        websocket = getattr(self, "websocket", None)
        if websocket is not None:
            websocket.__class__ = LimitedWebSocket
        return result


def make_handler_class(max_message_size: int, *,
                       header_timeout: float = DEFAULT_HEADER_TIMEOUT,
                       ) -> type[LimitedWebSocketHandler]:
    """A handler class for ``WSGIServer(handler_class=...)`` with this frame limit."""
    return type("HubWebSocketHandler", (LimitedWebSocketHandler,),
                {"max_message_size": max_message_size, "header_timeout": header_timeout})


class HubWebSocketWorker(GeventWebSocketWorker):
    """gunicorn worker with the limited handler; limits from ``MAX_MESSAGE_SIZE`` and
    ``HTTP_HEADER_TIMEOUT``."""

    wsgi_handler = LimitedWebSocketHandler

    def load_wsgi(self):
        super().load_wsgi()
        config = self.wsgi.config
        self.wsgi_handler = make_handler_class(config["MAX_MESSAGE_SIZE"],
                                               header_timeout=config["HTTP_HEADER_TIMEOUT"])

    def handle_exit(self, sig, frame):
        """SIGTERM: gunicorn waits ``graceful_timeout`` for open requests, and a socket is
        one until it closes; the node (``gunicorn.conf.py`` starts it) closes them now."""
        super().handle_exit(sig, frame)
        node = getattr(self, "hub_node", None)
        if node is not None:
            gevent.spawn(node.stop)
