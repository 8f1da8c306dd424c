"""The one place that emits to sockets and moves sockets between rooms.

Services call these after their transaction has committed. With
``SOCKETIO_MESSAGE_QUEUE`` set, Flask-SocketIO carries each emit to the
processes holding its room (with Redis, on the room's own channel), so the
same call reaches sockets wherever they are connected; processes that serve
no sockets (``flask notify``, workers) emit through these functions too.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Any

from socketio import PubSubManager

from extensions import socketio
from services.observability import metrics
from services.observability.traffic import traffic
from services.realtime import rooms
from services.realtime.connections import registry
from services.transport import room_channels
from services.turns import let_others_run

NAMESPACE = "/"


def _count(event: str) -> None:
    traffic.events_out += 1
    metrics.events_out.inc(event)


def emit_to_room(room: str, *, event: str, payload: Any, skip_sid: str | None = None) -> None:
    _count(event)
    started = time.perf_counter()
    socketio.emit(event, payload, to=room, namespace=NAMESPACE, skip_sid=skip_sid)
    metrics.emit_seconds.observe(time.perf_counter() - started)


def emit_to_local_room(room: str | list[str], *, event: str, payload: Any) -> None:
    """Only to this process's sockets in ``room`` (or in any of a list, each socket once),
    not through the message queue.

    For figures every node computes for its own subscribers, which would
    otherwise arrive once per node, and for what the queue lost on its way here.
    """
    _count(event)
    socketio.server.manager.emit(event, payload, namespace=NAMESPACE, room=room,
                                 ignore_queue=True)


def emit_to_rooms(room_list: list[str], *, event: str, payload: Any) -> None:
    """One packet to the union of several rooms: a socket in two of them gets it once."""
    _count(event)
    started = time.perf_counter()
    socketio.emit(event, payload, to=room_list, namespace=NAMESPACE)
    metrics.emit_seconds.observe(time.perf_counter() - started)


EMITS_BETWEEN_YIELDS = 200


def emit_each(targets_and_payloads, event: str, *, local: bool = False) -> None:
    """Many emits in a row (a snapshot, a batch of recipients), yielding now and then;
    ``local``: to this process's sockets only (``emit_to_local_room``).

    Yielding every few hundred emits lets the sockets' readers and any
    flushing writers run, so a long burst neither starves other clients nor
    makes a reader look like one that stopped reading. Through Redis, the
    emits between two yields are published in one round trip.
    """
    emit = emit_to_local_room if local else emit_to_room
    remaining = iter(targets_and_payloads)
    while chunk := list(itertools.islice(remaining, EMITS_BETWEEN_YIELDS)):
        with _publishing_together(local):
            for room, payload in chunk:
                emit(room, event=event, payload=payload)
        if len(chunk) == EMITS_BETWEEN_YIELDS:
            let_others_run()


def _publishing_together(local: bool) -> contextlib.AbstractContextManager:
    manager = socketio.server.manager
    if local or not isinstance(manager, room_channels.RoomChannels):
        return contextlib.nullcontext()
    return manager.publishing_together()


def local_rooms() -> list[str]:
    """The rooms this process's sockets are in (python-socketio's ``None``, all of them, left
    out)."""
    return [room for room in socketio.server.manager.rooms.get(NAMESPACE, {})
            if room is not None]


def has_listeners(room: str) -> bool:
    """Whether an emit to ``room`` could reach a socket, so work for an empty room is skipped.

    With a message queue the other nodes' rooms are unknown here: always yes.
    """
    manager = socketio.server.manager
    if isinstance(manager, PubSubManager):
        return True
    return bool(manager.rooms.get(NAMESPACE, {}).get(room))


def emit_to_user(user_id: int, *, event: str, payload: Any, skip_sid: str | None = None) -> None:
    emit_to_room(rooms.user_room(user_id), event=event, payload=payload, skip_sid=skip_sid)


def emit_to_sid(sid: str, *, event: str, payload: Any) -> None:
    emit_to_room(sid, event=event, payload=payload)


def emit_to_authenticated(event: str, payload: Any) -> None:
    """Every authenticated socket on every node; never the bare namespace."""
    emit_to_room(rooms.AUTHENTICATED_ROOM, event=event, payload=payload)


def enter_room(sid: str, room: str) -> None:
    """Put a local socket in a room and remember it for ``get_rooms``.

    Returns once emits to the room from any process reach this one, so that
    a join acknowledged is a join that misses nothing published after it.
    """
    if registry.get(sid) is None:
        return
    prepare_rooms([room])
    conn = registry.get(sid)
    if conn is None:
        return  # gone while the subscription was confirmed
    socketio.server.enter_room(sid, room, namespace=NAMESPACE)
    conn.rooms.add(room)


def prepare_rooms(room_list: list[str]) -> None:
    """Return once emits to these rooms, from any process, reach this one's sockets.

    With Redis each room has a channel, which a process hears only while it
    holds the room (``services.transport.room_channels``); a connect waits
    for its rooms before it is answered.
    """
    room_channels.ensure_subscribed(socketio.server.manager, NAMESPACE, room_list)


def leave_room(sid: str, room: str) -> None:
    conn = registry.get(sid)
    if conn is None or room not in conn.rooms:
        return
    socketio.server.leave_room(sid, room, namespace=NAMESPACE)
    conn.rooms.discard(room)


def disconnect_sid(sid: str) -> None:
    socketio.server.disconnect(sid, namespace=NAMESPACE)


def close_transports() -> int:
    """Close every socket of this process at the Engine.IO level, for a node that stops.

    No Socket.IO DISCONNECT packet is sent: the official clients take one as
    the server ending the session and stay away, while a lost transport makes
    them reconnect, through the load balancer, to another node. The
    disconnect handlers run before this returns.
    """
    engine = socketio.server.eio
    sockets = list(engine.sockets.items())
    for sid, sock in sockets:
        sock.close(wait=False, abort=True, reason=engine.reason.SERVER_DISCONNECT)
        engine.sockets.pop(sid, None)
    return len(sockets)

