"""The client manager python-socketio is built with: the library's, with the hub's additions.

python-socketio keeps rooms, and with a message queue carries emits between
processes, in its client manager, which it takes as a constructor argument
(``client_manager=``). ``build_client_manager`` picks the library's class for
``SOCKETIO_MESSAGE_QUEUE`` as Flask-SocketIO would, and mixes in:

- ``RoomIndex``: each sid's rooms, so a disconnect costs O(its rooms);
- with a queue, ``LocalSidEmits`` (``services.transport.local_emits``):
  emits to this process's own sockets stay off the queue;
- with a queue, ``QueueObserver``: what the listener hears is shown to an
  observer first (the queue canary, ``services.node.queue_canary``);
- with Redis, ``RoomChannels`` (``services.transport.room_channels``): room
  emits on per-room channels, which a process hears only while it has
  sockets in the room. Other queues carry every emit to every process.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import socketio

from services.transport.local_emits import LocalSidEmits
from services.transport.room_channels import RoomChannels


class RoomIndex:
    """Mixed into python-socketio's client manager: each sid's rooms, kept as they change.

    The manager's ``basic_disconnect`` copies the table of every room in the
    namespace and probes each one for the departing sid, and every socket has
    a room of its own: one disconnect costs O(connections), a deploy that
    drops them all O(connections²). With this index a disconnect touches only
    the sid's own rooms.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sid_rooms: dict[tuple[str, str], set[Any]] = {}

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


class QueueObserver:
    """Mixed in ahead of a pub/sub manager's class: ``queue_observer`` sees every message heard.

    The observer is set once the node starts; python-socketio's listener
    then reads the queue through this, as before.
    """

    queue_observer: Callable[[Any], None] | None = None

    def _listen(self) -> Iterator[Any]:
        for message in super()._listen():  # type: ignore[misc]
            observer = self.queue_observer
            if observer is not None:
                observer(message)
            yield message


def queue_manager_class(url: str) -> type[socketio.PubSubManager]:
    """python-socketio's manager for a message queue URL, chosen as Flask-SocketIO chooses it."""
    if url.startswith(("redis://", "rediss://")):
        return socketio.RedisManager
    if url.startswith("kafka://"):
        return socketio.KafkaManager
    if url.startswith("zmq"):
        return socketio.ZmqManager
    return socketio.KombuManager


def build_client_manager(message_queue: str | None, channel: str | None,
                         node_id: str | None = None) -> socketio.Manager:
    """The manager for ``client_manager=``: in memory, or on ``message_queue``'s ``channel``.

    On Redis its connections carry a client name (``queue_client_name``),
    so that ``CLIENT LIST`` tells an operator whose they are.
    """
    if not message_queue:
        return _combined(socketio.Manager, RoomIndex)()
    base = queue_manager_class(message_queue)
    if not issubclass(base, socketio.RedisManager):
        manager_class = _combined(base, RoomIndex, LocalSidEmits, QueueObserver)
        return manager_class(message_queue, channel=channel, write_only=False)
    manager_class = _combined(base, RoomIndex, LocalSidEmits, QueueObserver, RoomChannels)
    return manager_class(message_queue, channel=channel, write_only=False, redis_options={
        "client_name": queue_client_name(channel or "socketio", node_id)})


def queue_client_name(channel: str, node_id: str | None) -> str:
    """``hub:CHANNEL:NODE_ID`` (the host's name without a ``NODE_ID``); Redis refuses a name
    with spaces, so any become ``_``."""
    return "".join(c if c.isprintable() and not c.isspace() else "_"
                   for c in f"hub:{channel}:{node_id or socket.gethostname()}")


def _combined(base: type, *mixins: type) -> type:
    return type(f"Hub{base.__name__}", (*mixins, base), {})
