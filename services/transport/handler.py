"""The request handler of the hub's gevent server: size-limited WebSockets, timed heads.

gevent-websocket reads whatever length a client declares, then unmasks it one
byte at a time in Python; python-engineio checks its size limit only after
that. One 10 MB frame stalls every other client for seconds. Direct Engine.IO
WebSockets are served by ``services.transport.engine_socket``; a session
upgraded from long-polling keeps gevent-websocket's socket, whose frame
reader here checks the declared length of each frame, and of a fragmented
message so far, against ``max_message_size`` from the header alone: an
oversized frame closes the connection with 1009 (message too big) and its
payload is never read. Accepted payloads are unmasked with a big-integer XOR
and their UTF-8 checked by Python's decoder, both at C speed. No client event
takes binary data, so a binary frame closes the connection with 1003
(unsupported data), also from its header alone. Both paths share RFC 6455's
rules and codes (``services.transport.frames``).
"""

from __future__ import annotations

import gevent
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, WebSocket

from services.transport.engine_sessions import compact_environ
from services.transport.engine_socket import serve_engine_request
from services.transport.frames import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_UNSUPPORTED_DATA,
    MAX_CONTROL_PAYLOAD,
    ProtocolViolation,
    close_payload,
    unmask,
)
from services.transport.http_connections import DEFAULT_HEADER_TIMEOUT, RequestHeadDeadline

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024


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
            raise ProtocolViolation(CLOSE_UNSUPPORTED_DATA, "binary data is not accepted")
        if opcode == self.OPCODE_TEXT:
            handler.message_bytes = 0
        if opcode in (self.OPCODE_TEXT, self.OPCODE_CONTINUATION):
            handler.message_bytes += header.length
            if handler.message_bytes > handler.max_message_size:
                raise ProtocolViolation(CLOSE_MESSAGE_TOO_BIG, "message too big")
        elif header.length > MAX_CONTROL_PAYLOAD:
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
        except ProtocolViolation as refused:
            self.close(refused.code, refused.reason)
            return None

    def close(self, code: int = CLOSE_NORMAL, message: bytes | str = b"") -> None:
        """As gevent-websocket's, but the close frame carries ``code``, which it leaves out."""
        if self.closed:
            return super().close(code, message)
        try:
            self.send_frame(close_payload(code, message or b""), self.OPCODE_CLOSE)
        except WebSocketError:
            pass
        finally:
            self.closed = True
            self.stream = self.raw_write = self.raw_read = self.environ = None


class LimitedWebSocketHandler(RequestHeadDeadline, WebSocketHandler):
    """Serves direct Engine.IO WebSockets itself; upgrades others to a ``LimitedWebSocket``.

    ``services.transport.engine_socket`` first refuses what must not reach python-engineio
    (a foreign Origin, a session used by another client, an address over its
    cap), before gevent-websocket could answer 101, then serves a new WebSocket
    session itself. A long-polling session upgrading to WebSocket keeps
    python-engineio's path, on a ``LimitedWebSocket`` bound to the handler's
    ``max_message_size``. Request heads have a deadline
    (``services.transport.http_connections``).
    """

    max_message_size = DEFAULT_MAX_MESSAGE_SIZE
    message_bytes = 0

    def run_application(self):
        served = serve_engine_request(self)
        if served is False:
            return super().run_application()
        if served is not True:
            self.let_go_of_request()
            served.run()
        return None

    def let_go_of_request(self) -> None:
        """Drop what only the handshake needed, before a WebSocket lives on this handler.

        The socket's reader runs on this greenlet for hours, and everything
        the request left on the handler lives as long: its head parsed twice
        (the headers, and the environ made from them), the request line with
        its query string. Only the few environ keys the hub reads later stay,
        the same compact copy python-socketio keeps (``compact_environ``), for
        pywsgi's error reports.
        """
        self.environ = compact_environ(self.environ)
        for name in ("headers", "requestline", "path"):
            self.__dict__.pop(name, None)

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
