"""The Socket.IO server class: python-socketio's, with the hub's packet handling.

Flask-SocketIO builds a plain ``socketio.Server``; ``install`` swaps in this
subclass once, so that:

- an event knows whether the client asked for an acknowledgement (failures
  without one are sent as an ``error`` event, as the API promises);
- client events never reach the reserved ``connect``/``disconnect`` handlers;
- a socket is put in its rooms only after the CONNECT reply has gone out;
- malformed packets are counted per connection, logged at a bounded rate, and
  a connection that keeps sending them is closed;
- every event is charged to its socket's rate limits (events and bytes), and
  a socket that keeps flooding is disconnected;
- a client whose outbound queue passes ``MAX_OUTBOUND_PACKETS`` is dropped.

``install`` also gives the client manager an index of each sid's rooms (see
``RoomIndex``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import orjson
import socketio
from engineio import json as engineio_json
from engineio import packet as eio_packet
from socketio import packet

from services.rate_limits import limiter
from services.traffic import traffic

log = logging.getLogger(__name__)

MAX_PROTOCOL_ERRORS = 5
PROTOCOL_ERROR_LOG_INTERVAL = 10.0


class EventDispatcher(Protocol):
    def dispatch_event(self, sid: str, event: str, args: list[Any], wants_ack: bool) -> Any: ...

    def session_ready(self, sid: str) -> None: ...

    def refuse_event(self, sid: str, event: str, wants_ack: bool) -> Any: ...


class PacketJson:
    """JSON for Socket.IO packets: orjson, falling back to the standard module.

    orjson is several times faster both ways. What it refuses (integers past
    64 bits, NaN literals from a client) goes to python-engineio's own JSON,
    so nothing decodes or encodes differently from before, only faster.
    """

    @staticmethod
    def dumps(data: Any, **_options: Any) -> str:
        try:
            return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            return engineio_json.dumps(data, separators=(",", ":"))

    @staticmethod
    def loads(text: str | bytes) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return engineio_json.loads(text)


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


class HubServer(socketio.Server):
    """python-socketio's server with the hub's dispatch and protocol-error handling."""

    def _hub_init(self, max_outbound_packets: int) -> None:
        self.protocol_errors: dict[str, int] = {}
        self._packet_size = 0
        self.max_outbound_packets = max_outbound_packets
        self._last_protocol_log = 0.0
        self._suppressed_protocol_logs = 0

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
        super()._handle_connect(eio_sid, namespace, data)
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        dispatcher = self._dispatcher(namespace)
        if sid and dispatcher is not None and self.manager.is_connected(sid, namespace):
            dispatcher.session_ready(sid)

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
        dispatcher = self._dispatcher(namespace)
        if dispatcher is None:
            return
        traffic.events_in += 1
        if limiter.allow_event(sid, self._packet_size):
            result = dispatcher.dispatch_event(sid, data[0], data[1:], id is not None)
        else:
            result = dispatcher.refuse_event(sid, data[0], id is not None)
            if limiter.is_flooding(sid):
                log.warning("disconnecting %s: event flood", sid)
                self.disconnect(sid, namespace=namespace)
        if id is not None:
            self._send_packet(eio_sid, self.packet_class(
                packet.ACK, namespace=namespace, id=id, data=[result]))

    def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        self._packet_size = len(data) if isinstance(data, str | bytes) else 0
        try:
            super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            self._protocol_error(eio_sid, f"{type(exc).__name__}: {exc}"[:200])

    def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self.protocol_errors.pop(eio_sid, None)
        super()._handle_eio_disconnect(eio_sid, reason)

    def _protocol_error(self, eio_sid: str, what: str) -> None:
        """Count a malformed packet; past a few, close the connection. Logs are rate limited."""
        count = self.protocol_errors.get(eio_sid, 0) + 1
        self.protocol_errors[eio_sid] = count
        now = time.monotonic()
        if now - self._last_protocol_log >= PROTOCOL_ERROR_LOG_INTERVAL:
            log.warning("protocol error from %s (%s); %d similar lines suppressed",
                        eio_sid, what, self._suppressed_protocol_logs)
            self._last_protocol_log = now
            self._suppressed_protocol_logs = 0
        else:
            self._suppressed_protocol_logs += 1
        if count >= MAX_PROTOCOL_ERRORS:
            self.protocol_errors.pop(eio_sid, None)
            self.eio.disconnect(eio_sid)


class RoomIndex:
    """Mixed into python-socketio's client manager: each sid's rooms, kept as they change.

    The manager's ``basic_disconnect`` copies the table of every room in the
    namespace and probes each one for the departing sid, and every socket has
    a room of its own: one disconnect costs O(connections), a deploy that
    drops them all O(connections²). With this index a disconnect touches only
    the sid's own rooms.
    """

    sid_rooms: dict[tuple[str, str], set[Any]]

    def basic_enter_room(self, sid: str, namespace: str, room: Any,
                         eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self.sid_rooms.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        joined = self.sid_rooms.get((namespace, sid))
        if joined is not None:
            joined.discard(room)
            if not joined:
                del self.sid_rooms[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        for room in tuple(self.sid_rooms.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [room for room in self.sid_rooms.get((namespace, sid), ()) if room is not None]


def _index_rooms(manager: Any) -> None:
    """Give a fresh client manager (in-memory or Redis) the ``RoomIndex``."""
    base = type(manager)
    manager.__class__ = type(f"Indexed{base.__name__}", (RoomIndex, base), {})
    manager.sid_rooms = {}


def install(server: socketio.Server, max_outbound_packets: int) -> HubServer:
    """Turn the server Flask-SocketIO built into a ``HubServer``, keeping its state."""
    server.__class__ = HubServer
    _index_rooms(server.manager)
    hub = server  # type: ignore[assignment]
    hub._hub_init(max_outbound_packets)
    hub.packet_class = HubPacket
    # Handle each socket's packets in its own reader greenlet, in order, rather than
    # spawning a greenlet per packet (python-socketio's handlers are already inline).
    hub.eio.async_handlers = False
    # Engine.IO holds bound methods taken when the server was built: bind them again.
    hub.eio.on("connect", hub._handle_eio_connect)
    hub.eio.on("message", hub._handle_eio_message)
    hub.eio.on("disconnect", hub._handle_eio_disconnect)
    return hub
