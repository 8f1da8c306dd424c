"""Engine.IO over a WebSocket, with no greenlet of its own besides the one reading it.

python-engineio gives every WebSocket three greenlets: the WSGI greenlet that
reads, a writer fed by a queue, and a ping task spawned anew every interval;
gevent-websocket reads each frame in several buffered calls and builds each
outgoing frame again for every recipient. Each idle greenlet keeps a copy of
its stack (8-30 KB), and every packet crosses a queue and a greenlet switch.

Here the connection's WSGI greenlet reads whatever has arrived and parses the
frames in it; packets are written straight to the non-blocking socket by
whichever greenlet sends them, and a flusher greenlet exists only while the
kernel's send buffer is full; a frame sent to many sockets (a broadcast) is
built once; pings run on a libev timer, not a greenlet.

Everything that can end a connection (a close frame, EOF, a reset, a ping
timeout, a slow consumer, a protocol error) ends up in the reader, which
closes the Engine.IO socket once. Direct WebSocket connections (the official
clients with ``transports: ['websocket']``) take this path; long-polling, and
upgrades from it, keep python-engineio's socket.

Before either, every request on the Engine.IO path passes
``serve_engine_request``'s checks, which answer an HTTP error (never a 101)
for a foreign Origin, a session used by another client than the one that
opened it, or a new session from an address at its cap.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import socket
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs

import gevent
import orjson
from engineio import packet as eio_packet
from engineio.socket import Socket

from services.transport import proxies
from services.transport.frames import (
    CLOSE_INVALID_DATA,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    MessageReader,
    ProtocolViolation,
    accept_key,
    close_code,
    close_frame,
    frame,
)
from services.turns import SLICE_SECONDS, let_others_run

log = logging.getLogger(__name__)

READ_SIZE = 65536

# Engine.IO packet types as the first character of a text frame.
ENGINE_CLOSE, ENGINE_PING, ENGINE_PONG, ENGINE_MESSAGE = "1", "2", "3", "4"
ENGINE_UPGRADE, ENGINE_NOOP = "5", "6"


def packet_frame(pkt: eio_packet.Packet) -> bytes:
    """The frame of an Engine.IO packet, built once and kept on the packet.

    python-socketio hands the same packet object to every recipient of a room
    emit, so a broadcast to thousands of sockets encodes and frames it once.
    """
    cached = pkt.__dict__.get("ws_frame")
    if cached is None:
        encoded = pkt.encode()
        if isinstance(encoded, str):
            cached = frame(OP_TEXT, encoded.encode())
        else:
            cached = frame(OP_BINARY, bytes(encoded))
        pkt.ws_frame = cached
    return cached


PING_FRAME = frame(OP_TEXT, ENGINE_PING.encode())
CLOSE_PACKET_FRAME = frame(OP_TEXT, ENGINE_CLOSE.encode())


class EngineWebSocket(Socket):
    """An Engine.IO socket whose transport is this WebSocket, from its first packet.

    Stands in python-engineio's server's ``sockets`` map like its own sockets,
    so python-socketio sends, disconnects and counts it the same way.
    """

    def __init__(self, server: Any, *, sid: str, sock: Any, max_message_size: int,
                 max_backlog: int) -> None:
        self.server = server
        self.sid = sid
        self.queue = None
        self.last_ping = None
        self.connected = True
        self.upgraded = True
        self.upgrading = False
        self.closing = False
        self.closed = False
        self.session = {}
        self.sock = sock
        self.fd = sock.fileno()
        self.max_message_size = max_message_size
        self.max_backlog = max_backlog
        self.backlog: deque[bytes] | None = None
        self.dropped = False
        self.close_reason: Any = None
        self.reader = MessageReader(max_message_size)
        self.ping_timer: Any = None
        self.close_sent = False

    # Sending -----------------------------------------------------------------

    def send(self, pkt: eio_packet.Packet) -> None:
        if not self.closed:
            self.write(packet_frame(pkt))

    def send_message(self, text: str) -> None:
        """An Engine.IO MESSAGE of ``text``, framed directly: no packet object for one reader."""
        if not self.closed:
            self.write(frame(OP_TEXT, (ENGINE_MESSAGE + text).encode()))

    def write(self, data: bytes) -> None:
        """Write now if the kernel takes it; otherwise queue it behind a flusher greenlet."""
        if self.dropped:
            return
        if self.backlog is not None:
            if len(self.backlog) >= self.max_backlog:
                log.warning("dropping %s: %d packets unread (slow consumer)", self.sid,
                            len(self.backlog))
                self.abort(self.server.reason.SERVER_DISCONNECT)
                return
            self.backlog.append(data)
            return
        try:
            sent = os.write(self.fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.abort(self.server.reason.TRANSPORT_ERROR)
            return
        if sent < len(data):
            self.backlog = deque((data[sent:],))
            gevent.spawn(self._flush)

    def _flush(self) -> None:
        backlog = self.backlog
        try:
            while backlog:
                self.sock.sendall(backlog.popleft())
        except OSError:
            self.abort(self.server.reason.TRANSPORT_ERROR)
        finally:
            if self.backlog is backlog:
                self.backlog = None

    def abort(self, reason: Any) -> None:
        """End the connection from any greenlet: the reader wakes up and closes it."""
        if not self.dropped:
            self.close_reason = reason
            self._stop_writing()

    def _stop_writing(self) -> None:
        """No more writes; shutting the socket down wakes the reader, which closes."""
        self.dropped = True
        self.backlog = None
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    # Pings -------------------------------------------------------------------

    def schedule_ping(self) -> None:
        """Ping after the interval; the pong, or its absence, decides what comes next."""
        self._arm_timer(self.server.ping_interval, self._send_ping)

    def _arm_timer(self, seconds: float, callback) -> None:
        if self.ping_timer is not None:
            self.ping_timer.close()
        self.ping_timer = gevent.get_hub().loop.timer(seconds)
        self.ping_timer.start(callback)

    def _send_ping(self) -> None:
        if self.closed or self.dropped:
            return
        self.last_ping = time.time()
        self.write(PING_FRAME)
        self._arm_timer(self.server.ping_timeout, self._ping_timed_out)

    def _ping_timed_out(self) -> None:
        if not self.closed:
            self.write(CLOSE_PACKET_FRAME)
            self.abort(self.server.reason.PING_TIMEOUT)

    def check_ping_timeout(self) -> bool:
        """python-engineio's service task asks every socket; the timer already answers."""
        return not self.closed

    # Receiving -----------------------------------------------------------------

    def run(self) -> None:
        """Read and dispatch until the connection ends, then close the Engine.IO socket."""
        reason = self.server.reason.TRANSPORT_CLOSE
        # Like libuv, a read shorter than the buffer means the kernel had no more: the next
        # read waits for readiness first instead of trying, which saved a failed recv
        # syscall and its exception per message. The socket's own watcher keeps gevent's
        # close semantics: closing the socket elsewhere throws into this greenlet, the
        # callback's owner, as into a ``Hub.wait``. That wait makes a waiter, its bound
        # method and a tuple each time; this one makes nothing: at 10,000 sockets waking
        # together (a mass disconnect), about 26,000 young objects that stayed alive for the
        # next collection to walk.
        hub = gevent.get_hub()
        resume = gevent.getcurrent().switch
        readable = self.sock._read_event

        def wait_until_readable() -> None:
            readable.start(resume)
            try:
                hub.switch()
            finally:
                readable.stop()

        try:
            while not self.closed and not self.dropped:
                try:
                    data = os.read(self.fd, READ_SIZE)
                except BlockingIOError:
                    wait_until_readable()
                    continue
                if not data or not self._consume(data):
                    break
                if len(data) < READ_SIZE:
                    wait_until_readable()
        except ProtocolViolation as violation:
            self.send_close(violation.code, violation.reason)
            reason = self.server.reason.TRANSPORT_ERROR
        except OSError:
            reason = self.server.reason.TRANSPORT_ERROR
        finally:
            if self.ping_timer is not None:
                self.ping_timer.close()
                self.ping_timer = None
            self.close(wait=False, abort=True, reason=self.close_reason or reason)

    def _consume(self, data: bytes) -> bool:
        """Handle every message and control frame completed by ``data``.

        False when the connection is over: the peer closed the WebSocket, or
        handling a message closed or dropped the socket. A read can hold
        thousands of events (64 KB of them): after each ``SLICE_SECONDS`` of
        handling them, the node's other sockets get their turn.
        """
        # ``taking_turns()``'s check, inline: its closure would be made for every read, and
        # nearly every read is one event.
        turn_started = time.perf_counter()
        for opcode, payload in self.reader.feed(data):
            if opcode == OP_TEXT:
                self._on_message(payload)
            elif opcode == OP_PING:
                self.write(frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self.send_close(close_code(payload))
                return False
            if time.perf_counter() - turn_started >= SLICE_SECONDS:
                let_others_run()
                turn_started = time.perf_counter()
            if self.closed or self.dropped:
                return False
        return True

    def _on_message(self, payload: bytes) -> None:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(CLOSE_INVALID_DATA, "invalid UTF-8") from None
        kind = text[:1]
        if kind == ENGINE_MESSAGE:
            try:
                self.server.handlers["message"](self.sid, text[1:])
            except Exception:
                log.exception("message handler error on %s", self.sid)
        elif kind == ENGINE_PONG:
            self.last_ping = None
            self.schedule_ping()
        elif kind == ENGINE_CLOSE:
            self.close_reason = self.server.reason.CLIENT_DISCONNECT
            self.dropped = True
        elif kind != ENGINE_NOOP:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "unexpected Engine.IO packet")

    # Closing ---------------------------------------------------------------------

    def send_close(self, code: int, reason: str = "") -> None:
        """The WebSocket close frame, at most once per connection."""
        if not self.close_sent:
            self.close_sent = True
            self.write(close_frame(code, reason))

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        """Close once: the disconnect handlers run, then the WebSocket is closed.

        ``wait`` has nothing to wait for: packets are written when sent.
        """
        if self.closed or self.closing:
            return
        self.closing = True
        self.server._trigger_event("disconnect", self.sid,
                                   reason or self.server.reason.SERVER_DISCONNECT,
                                   run_async=False)
        if not abort:
            self.write(CLOSE_PACKET_FRAME)
        self.send_close(CLOSE_NORMAL)
        self.closed = True
        self.server.sockets.pop(self.sid, None)
        if not self.dropped:
            self._stop_writing()


def _engine_of(application: Any) -> tuple[Any, str] | None:
    """The Socket.IO server and its Engine.IO path, when ``application`` is the hub's app."""
    extensions = getattr(application, "extensions", None)
    flask_socketio = extensions.get("socketio") if isinstance(extensions, dict) else None
    middleware = getattr(flask_socketio, "sockio_mw", None)
    if middleware is None or flask_socketio.server is None:
        return None
    return flask_socketio.server, middleware.engineio_path


def _handshake_key(environ: dict[str, Any]) -> str | None:
    """The client's key when this is a well-formed RFC 6455 opening handshake."""
    if environ.get("REQUEST_METHOD") != "GET" or environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return None
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        return None
    if "upgrade" not in environ.get("HTTP_CONNECTION", "").lower():
        return None
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
        return None
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except ValueError:
        return None
    return key


def _is_direct_connect(query: dict[str, list[str]]) -> bool:
    """A new Engine.IO v4 session asking for the WebSocket transport from the start."""
    return (query.get("transport") == ["websocket"] and query.get("EIO") == ["4"]
            and "sid" not in query and "j" not in query)


def _origin_allowed(server: Any, environ: dict[str, Any]) -> bool:
    """python-engineio's own origin check, so there is one policy for every transport."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin or server.cors_allowed_origins == []:
        return True
    allowed = server._cors_allowed_origins(environ)
    return allowed is None or origin in allowed


def _refuse(handler: Any, status: str, code: str, message: str) -> bool:
    """An HTTP error in the API's JSON shape instead of the upgrade."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    handler.status = status
    handler.close_connection = True
    handler.socket.sendall(
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    return True


def serve_engine_request(handler: Any) -> bool | EngineWebSocket:
    """Answer a request on the Engine.IO path here if it is refused or opens a direct WebSocket.

    False leaves the request to gevent-websocket and python-engineio; True
    means it was answered (refused); an ``EngineWebSocket``, already opened
    (its 101 sent), is for the handler to ``run`` once it has let go of the
    request (``LimitedWebSocketHandler.run_application``). The
    checks run before gevent-websocket could answer 101, on every path a
    WebSocket can take (a new session, an upgrade, a query string that only
    python-engineio understands), and on long-polling requests too:

    - a browser page of a foreign origin gets 403;
    - a request with the sid of a session opened by another client (another
      address or Origin, see ``services.transport.engine_sessions``) gets 403;
    - a request for a new session from an address that already has
      ``MAX_CONNECTIONS_PER_ADDRESS`` sessions gets 429.
    """
    environ = handler.environ
    engine = _engine_of(handler.application)
    if engine is None:
        return False
    hub, path = engine
    if not (environ.get("PATH_INFO") or "").startswith(path):
        return False
    # The checks below judge the client behind trusted proxies, as the WSGI stack
    # will; ProxyFix reads only the forwarded headers, so its second pass there
    # for requests left to python-engineio gives the same answer.
    proxies.policy_of(handler.application).apply(environ)
    server = hub.eio
    if not _origin_allowed(server, environ):
        log.warning("refusing a request from origin %r", environ.get("HTTP_ORIGIN", "")[:200])
        return _refuse(handler, "403 Forbidden", "forbidden", "Not an accepted origin")
    # python-engineio reads the first of repeated parameters; so does this.
    query = parse_qs(environ.get("QUERY_STRING", ""))
    sessions = hub.engine_sessions
    if "sid" in query:
        if not sessions.belongs_to(query["sid"][0], environ):
            log.warning("refusing a request from %s on a session another client opened",
                        sessions.client_of(environ).address)
            return _refuse(handler, "403 Forbidden", "forbidden",
                           "This session belongs to another client")
    elif not sessions.admits(environ):
        return _refuse(handler, "429 Too Many Requests", "too_many_connections",
                       "Too many connections from this address")
    return _open_direct_websocket(handler, hub, query)


def _open_direct_websocket(handler: Any, hub: Any,
                           query: dict[str, list[str]]) -> bool | EngineWebSocket:
    """Open this request's ``EngineWebSocket`` if it asks for one; False otherwise.

    Other requests, malformed handshakes included, are left to
    python-engineio, which answers them as it always does.
    """
    environ = handler.environ
    server = hub.eio
    if not _is_direct_connect(query) or "websocket" not in server.transports:
        return False
    key = _handshake_key(environ)
    if key is None:
        return False
    handler.close_connection = True
    sid = server.generate_id()
    sock = handler.socket
    engine_socket = EngineWebSocket(server, sid=sid, sock=sock,
                                    max_message_size=server.max_http_buffer_size,
                                    max_backlog=hub.max_outbound_packets)
    server.sockets[sid] = engine_socket
    accepted = server._trigger_event("connect", sid, environ, run_async=False)
    if accepted is not None and accepted is not True:
        server.sockets.pop(sid, None)
        return _refuse(handler, "401 Unauthorized", "unauthenticated", "Connection refused")
    handler.status = "101 Switching Protocols"
    opening = eio_packet.Packet(eio_packet.OPEN, {
        "sid": sid,
        "upgrades": [],
        "pingTimeout": int(server.ping_timeout * 1000),
        "pingInterval": int(server.ping_interval + server.ping_interval_grace_period) * 1000,
        "maxPayload": server.max_http_buffer_size,
    })
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                 + accept_key(key).encode() + b"\r\n\r\n" + packet_frame(opening))
    # The request's buffered reader holds an 8 KB buffer for as long as the socket
    # lives; frames are read from the socket itself, so it goes now.
    handler.rfile.close()
    engine_socket.schedule_ping()
    return engine_socket
