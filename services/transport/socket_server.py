"""The Socket.IO server class: python-socketio's, with the hub's packet handling.

Flask-SocketIO builds a plain ``socketio.Server``; ``install_transport``
(``services.transport.install``) makes it this subclass once, so that:

- an event knows whether the client asked for an acknowledgement (failures
  without one are sent as an ``error`` event, as the API promises);
- client events never reach the reserved ``connect``/``disconnect`` handlers;
- a socket is put in its rooms only after the CONNECT reply has gone out;
- a CONNECT to a namespace the hub does not serve is refused in the v5 form,
  ``{message, data: {code}}``, like every other refusal;
- malformed packets are counted per connection, logged at a bounded rate, and
  a connection that keeps sending them is closed;
- binary packets (no client event takes binary data) close the connection at
  once, so no attachments are ever kept;
- every packet of a connected socket, event or not, is charged to its rate
  limits (events and bytes), and a socket that keeps flooding is disconnected;
- each Engine.IO session is counted, bound to its client and closed when it
  has no authenticated connection for ``CONNECT_TIMEOUT`` (``EngineSessions``);
- a client whose outbound queue passes ``MAX_OUTBOUND_PACKETS`` is dropped.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import socketio
from engineio import packet as eio_packet
from socketio import packet

from services.observability.log_throttle import ThrottledLog
from services.observability.traffic import traffic
from services.transport import json_input
from services.transport.engine_sessions import EngineSessions, compact_environ
from services.transport.engine_socket import EngineWebSocket
from services.transport.frames import CLOSE_UNSUPPORTED_DATA
from services.transport.packets import ack_text, orjson_text, plain_event
from services.transport.rate_limits import limiter

log = logging.getLogger(__name__)

MAX_PROTOCOL_ERRORS = 5
PROTOCOL_ERROR_LOG_INTERVAL = 10.0
# Socket.IO v5 refuses a CONNECT with an object; python-socketio sends v4's bare string,
# in which socket.io-client 4 finds no ``message`` to show.
UNKNOWN_NAMESPACE = {"message": "Invalid namespace", "data": {"code": "invalid_namespace"}}
# The first character of a Socket.IO packet: its type.
EVENT_PACKET = str(packet.EVENT)
BINARY_PACKETS = (str(packet.BINARY_EVENT), str(packet.BINARY_ACK))
DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)


class EventDispatcher(Protocol):
    def dispatch_event(self, sid: str, *, event: str, args: list[Any],
                       wants_ack: bool) -> Any: ...

    def session_ready(self, sid: str) -> None: ...

    def refuse_event(self, sid: str, *, event: str, wants_ack: bool) -> Any: ...

    def refuse_binary(self, sid: str, *, event: str, wants_ack: bool) -> Any: ...


class HubServer(socketio.Server):
    """python-socketio's server with the hub's dispatch and protocol-error handling."""

    def _hub_init(self, max_outbound_packets: int, engine_sessions: EngineSessions) -> None:
        self.protocol_errors: dict[str, int] = {}
        self._packet_size = 0
        self.max_outbound_packets = max_outbound_packets
        self.engine_sessions = engine_sessions
        self._deadline_task: Any = None
        self._protocol_log = ThrottledLog(log, PROTOCOL_ERROR_LOG_INTERVAL)

    def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        sock = self._writable_socket(eio_sid)
        if sock is None:
            return
        encoded = pkt.encode()
        for part in encoded if isinstance(encoded, list) else (encoded,):
            sock.send(eio_packet.Packet(eio_packet.MESSAGE, data=part))

    def _send_eio_packet(self, eio_sid: str, eio_pkt: Any) -> None:
        sock = self._writable_socket(eio_sid)
        if sock is not None:
            sock.send(eio_pkt)

    def _writable_socket(self, eio_sid: str) -> Any:
        """The live Engine.IO socket to write to, or None.

        A direct WebSocket bounds its own backlog. python-engineio's socket
        queues without bound: a client that stops reading is dropped here
        once its queue is full, before it grows the server's memory.
        """
        sock = self.eio.sockets.get(eio_sid)
        if sock is None or sock.closed:
            return None
        queue = sock.queue
        if queue is None or queue.qsize() < self.max_outbound_packets:
            return sock
        log.warning("dropping %s: %d packets unread (slow consumer)", eio_sid, queue.qsize())
        self.eio.sockets.pop(eio_sid, None)
        sock.close(wait=False, abort=True, reason=self.reason.SERVER_DISCONNECT)
        return None

    def _dispatcher(self, namespace: str) -> EventDispatcher | None:
        return self.namespace_handlers.get(namespace)

    def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        namespace = namespace or "/"
        if not self._serves(namespace):
            self._send_packet(eio_sid, self.packet_class(
                packet.CONNECT_ERROR, namespace=namespace, data=UNKNOWN_NAMESPACE))
            return
        super()._handle_connect(eio_sid, namespace, data)
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        dispatcher = self._dispatcher(namespace)
        if sid and dispatcher is not None and self.manager.is_connected(sid, namespace):
            self.engine_sessions.authenticated(eio_sid)
            dispatcher.session_ready(sid)

    def _serves(self, namespace: str) -> bool:
        """python-socketio's own test of a namespace it can connect."""
        return (namespace in self.handlers or namespace in self.namespace_handlers
                or self.namespaces == "*" or namespace in self.namespaces)

    def _handle_disconnect(self, eio_sid: str, namespace: str | None,
                           reason: Any = None) -> None:
        super()._handle_disconnect(eio_sid, namespace, reason)
        self._await_connect_again(eio_sid)

    def disconnect(self, sid: str, namespace: str | None = None,
                   ignore_queue: bool = False) -> None:
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace or "/")
        super().disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        if eio_sid is not None:
            self._await_connect_again(eio_sid)

    def _await_connect_again(self, eio_sid: str) -> None:
        """A live session left without a connection has ``CONNECT_TIMEOUT`` to connect again."""
        if eio_sid in self.engine_sessions.clients and \
                self.manager.sid_from_eio_sid(eio_sid, "/") is None:
            self.engine_sessions.await_connect(eio_sid)

    def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None,
                      data: Any) -> None:
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            self._protocol_error(eio_sid, "event before connect")
            return
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            self._protocol_error(eio_sid, "event without a name")
            return
        dispatcher = self.namespace_handlers.get(namespace)
        if dispatcher is None:
            return
        traffic.events_in += 1
        if limiter.allow_event(sid, self._packet_size):
            result = dispatcher.dispatch_event(sid, event=data[0], args=data[1:],
                                               wants_ack=id is not None)
        else:
            result = dispatcher.refuse_event(sid, event=data[0], wants_ack=id is not None)
            if limiter.is_flooding(sid):
                log.warning("disconnecting %s: event flood", sid)
                self.disconnect(sid, namespace=namespace)
        if id is not None:
            self._send_ack(eio_sid, namespace, id, result)

    def _send_ack(self, eio_sid: str, namespace: str, ack_id: int, result: Any) -> None:
        """The ack written as text straight away; a packet object for anything else.

        What orjson refuses (bytes, integers past 64 bits) takes python-socketio's
        packet, which sends bytes as a binary ack and the rest as its JSON does.
        """
        try:
            encoded = orjson_text([result])
        except TypeError:
            self._send_packet(eio_sid, self.packet_class(
                packet.ACK, namespace=namespace, id=ack_id, data=[result]))
            return
        sock = self._writable_socket(eio_sid)
        if sock is None:
            return
        text = ack_text(namespace, ack_id, encoded)
        if isinstance(sock, EngineWebSocket):
            sock.send_message(text)
        else:
            sock.send(eio_packet.Packet(eio_packet.MESSAGE, data=text))

    def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> bool:
        """Count the new session against its address and give it ``CONNECT_TIMEOUT``.

        The hub's request handler refuses a session over the cap with 429
        before it exists; this refusal (401) is for servers without it.
        python-socketio keeps the environ as long as the session: only its
        compact copy.
        """
        if not self.engine_sessions.open(eio_sid, environ):
            return False
        if self._deadline_task is None:
            self._deadline_task = self.eio.start_background_task(self._close_unauthenticated)
        super()._handle_eio_connect(eio_sid, compact_environ(environ))
        return True

    def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        sock = self.eio.sockets.get(eio_sid)
        if sock is None or sock.closing or sock.closed:
            return  # the rest of a long-polling payload whose session has just been closed
        self._packet_size = len(data) if isinstance(data, str | bytes) else 0
        try:
            if not isinstance(data, str) or data[:1] in BINARY_PACKETS:
                self._refuse_binary(eio_sid, data)
            elif data[:1] == EVENT_PACKET:
                self._handle_event_packet(eio_sid, data)
            elif self._charge_packet(eio_sid):
                super()._handle_eio_message(eio_sid, data)
        except DECODE_ERRORS as exc:
            self._protocol_error(eio_sid, f"{type(exc).__name__}: {exc}"[:200])

    def _handle_event_packet(self, eio_sid: str, data: str) -> None:
        """A plain event goes from its text to ``_handle_event`` without a packet object;
        any other EVENT through python-socketio's decoder."""
        event = plain_event(data)
        if event is None:
            super()._handle_eio_message(eio_sid, data)
            return
        ack_id, arguments = event
        self._handle_event(eio_sid, "/", ack_id, json_input.decode(arguments))

    def _charge_packet(self, eio_sid: str) -> bool:
        """Charge a packet that is not an event to its socket's budget; False: dropped.

        Events are charged when they are handled (an event over budget is
        still answered, ``rate_limited``). Any other packet of a connected
        socket (acknowledgements nobody asked for, repeated CONNECTs) costs
        as much to receive, so it costs the same: one event and its size.
        """
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is None or limiter.allow_event(sid, self._packet_size):
            return True
        if limiter.is_flooding(sid):
            log.warning("disconnecting %s: packet flood", sid)
            self.disconnect(sid, namespace="/")
        return False

    def _refuse_binary(self, eio_sid: str, data: str | bytes) -> None:
        """No client event takes binary data: answer the event, then close the session.

        python-socketio keeps a binary packet's header and every binary
        message after it until the announced number of attachments (up to
        9,999,999,999) has arrived, charged to no limit. Here the header, or
        a binary message without one, closes the session at once.
        """
        self._log_protocol_error(eio_sid, "binary packet")
        if isinstance(data, str):
            self._answer_binary_event(eio_sid, data)
        self._close_engine_session(eio_sid, CLOSE_UNSUPPORTED_DATA, "binary data is not accepted")

    def _answer_binary_event(self, eio_sid: str, header: str) -> None:
        """``invalid_payload`` for a binary event of a connected socket, as its ack or an error."""
        try:
            pkt = self.packet_class(encoded_packet=header)
        except (*DECODE_ERRORS, RecursionError):
            return
        namespace = pkt.namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        dispatcher = self._dispatcher(namespace)
        if pkt.packet_type != packet.BINARY_EVENT or sid is None or dispatcher is None \
                or not self.manager.is_connected(sid, namespace):
            return
        data = pkt.data if isinstance(pkt.data, list) else []
        event = data[0] if data and isinstance(data[0], str) else ""
        result = dispatcher.refuse_binary(sid, event=event, wants_ack=pkt.id is not None)
        if pkt.id is not None:
            self._send_packet(eio_sid, self.packet_class(
                packet.ACK, namespace=namespace, id=pkt.id, data=[result]))

    def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self.protocol_errors.pop(eio_sid, None)
        self.engine_sessions.close(eio_sid)
        super()._handle_eio_disconnect(eio_sid, reason)

    def _close_engine_session(self, eio_sid: str, code: int | None = None,
                              reason: str = "") -> None:
        """End an Engine.IO session now, whatever its transport, without waiting for a poll.

        python-engineio's ``disconnect`` waits until a long-polling GET has
        taken the close packet: with none pending, the caller (often the POST
        that broke the rules) would wait forever. ``code`` is the WebSocket
        close code, for a session on the hub's own WebSocket.
        """
        sock = self.eio.sockets.pop(eio_sid, None)
        if sock is None or sock.closed:
            return
        if code is not None and isinstance(sock, EngineWebSocket):
            sock.send_close(code, reason)
        sock.close(wait=False, abort=False, reason=self.reason.SERVER_DISCONNECT)

    def _close_unauthenticated(self) -> None:
        """Close each session that has gone ``CONNECT_TIMEOUT`` without a connection.

        One task for every session of the process: deadlines are kept in the
        order they expire, so each round looks only at the expired ones.
        """
        sessions = self.engine_sessions
        while True:
            overdue = sessions.overdue(time.monotonic())
            for eio_sid in overdue:
                try:
                    self._close_engine_session(eio_sid)
                except Exception:
                    log.exception("could not close an unauthenticated session")
            if overdue:
                log.info("closed %d sessions that did not connect within %ss", len(overdue),
                         sessions.connect_timeout)
            self.eio.sleep(max(0.05, sessions.seconds_to_next_deadline(time.monotonic())))

    def _protocol_error(self, eio_sid: str, what: str) -> None:
        """Count a malformed packet; past a few, close the connection. Logs are rate limited."""
        count = self.protocol_errors.get(eio_sid, 0) + 1
        self.protocol_errors[eio_sid] = count
        self._log_protocol_error(eio_sid, what)
        if count >= MAX_PROTOCOL_ERRORS:
            self.protocol_errors.pop(eio_sid, None)
            self._close_engine_session(eio_sid)

    def _log_protocol_error(self, eio_sid: str, what: str) -> None:
        self._protocol_log.warning("protocol error from %s (%s)", eio_sid, what)
