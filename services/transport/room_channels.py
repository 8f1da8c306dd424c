"""Room emits on channels of their own: a node hears only the rooms it has sockets in.

python-socketio's Redis manager publishes every emit on one channel, which
every node reads and decodes before finding, usually, no socket of the room:
140-185 µs of CPU per emit on each node that holds none (BENCHMARKS.md,
"Scale-out"), so queue traffic alone filled a core near 7,000 emits per
second however many nodes were added. Here, as in socket.io's sharded Redis
adapter:

- an emit to rooms goes on one channel per room, named after the deployment's
  channel (``<SOCKETIO_CHANNEL>:room:<namespace>:<room>``), so two deployments
  never cross;
- a node subscribes to a room's channel when the room gets its first local
  member and unsubscribes ``UNSUBSCRIBE_LINGER`` seconds after its last
  left, in batches, on one pub/sub connection that also carries the shared
  channel;
- the shared channel keeps what every node must hear: emits to the whole
  namespace or to one socket (a sid names no room anyone subscribes to),
  disconnects and room changes of remote sids, acknowledgements across
  nodes, the queue canary;
- on Redis 7 the room channels are sharded (``SPUBLISH``/``SSUBSCRIBE``),
  which a Redis Cluster spreads over its shards; older servers get plain
  ``PUBLISH``/``SUBSCRIBE``. Every process asks the server, so they agree.

Redis pub/sub keeps nothing for a connection that is gone: whatever was
published while the listener was away (a Redis restart, a killed or broken
connection) is lost to this process. Once it is back and every held room is
subscribed again, the gap's listeners (``on_gap``) hear since when messages
may be missing, the time of the last message heard before the loss (the
queue canary keeps a message coming every heartbeat), so that what the local
sockets missed can be sent again from the database.

Processes that serve no sockets (``flask notify``, workers) build the same
manager and publish the same way. ``ensure_subscribed`` returns once emits to
some rooms, published from anywhere, reach this process: joins are
acknowledged, and connects answered, only after it.

An emit to several rooms at once goes on each room's channel; a node holding
several of them delivers, through each, to the sockets not in an earlier room
of the list, so every socket gets it once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import gevent
import gevent.event
import redis

from services.observability import metrics
from services.observability.log_throttle import ThrottledLog

log = logging.getLogger(__name__)

# How long a join or a connect waits for Redis to confirm a room's subscription.
SUBSCRIBE_WAIT = 2.0
# A room left by its last local socket stays subscribed this long: a user who reconnects,
# or a page that leaves and joins again, costs no round of UNSUBSCRIBE and SUBSCRIBE.
UNSUBSCRIBE_LINGER = 1.0
# Channels per SUBSCRIBE or UNSUBSCRIBE command.
BATCH = 1000
RECONNECT_MAX_SECONDS = 30.0
# python-engineio's session ids: 15 random bytes in URL-safe base64. Such a room is a
# socket's own, which only its node holds: it travels on the shared channel.
_SID = re.compile(r"[A-Za-z0-9_-]{20}")

SHARED, ROOM = "shared", "room"

# Inside ``RoomChannels.publishing_together``: the room publishes this greenlet has made,
# (channel, payload), not sent yet. Each greenlet has its own context.
_gathered: ContextVar[list[tuple[bytes, bytes | str]] | None] = ContextVar(
    "gathered_publishes", default=None)


def routed_by_room(room: Any) -> bool:
    """Whether an emit to ``room`` travels on the room's own channel."""
    return isinstance(room, str) and _SID.fullmatch(room) is None


def shards_channels(client: redis.Redis) -> bool:
    """Whether this Redis has sharded pub/sub (7.0 and later)."""
    version = str(client.info("server").get("redis_version", "0"))
    return int(version.split(".", 1)[0]) >= 7


class RoomSubscriptions:
    """This process's room channels, held while a room has local sockets, on one connection.

    One greenlet reads the connection (``messages``); another sends the
    batched SUBSCRIBE and UNSUBSCRIBE commands (``_write_loop``). Redis
    confirms each channel of a command in order, so for each channel the
    commands in flight are counted: a channel is subscribed once every
    command sent for it has been confirmed and the last was a subscribe.
    """

    def __init__(self, url: str, shared_channel: str, *, options: dict | None = None) -> None:
        self.url = url
        self.options = options or {}
        self.shared = shared_channel.encode()
        self.sharded = False
        self.connection: Any = None
        self.holds: dict[bytes, int] = {}
        self.targets: dict[bytes, tuple[str, str]] = {}
        self.confirmed: set[bytes] = set()
        self._in_flight: dict[bytes, int] = {}
        self._last_was_subscribe: dict[bytes, bool] = {}
        self._waiting: dict[bytes, gevent.event.Event] = {}
        self._to_subscribe: set[bytes] = set()
        self._to_unsubscribe: dict[bytes, float] = {}
        self._wake = gevent.event.Event()
        self._writer: Any = None
        self._closing = False
        self._log = ThrottledLog(log, 10.0)
        # Wall-clock time of the last reply read; the start of a gap when the connection is lost.
        self.heard_at = 0.0
        self.gap_listeners: list[Callable[[float], None]] = []

    # Holding rooms ----------------------------------------------------------

    def hold(self, channel: bytes, target: tuple[str, str]) -> None:
        """One more reason to stay subscribed to ``channel``; the first subscribes."""
        count = self.holds.get(channel, 0)
        self.holds[channel] = count + 1
        if count:
            return
        self.targets[channel] = target
        if self._to_unsubscribe.pop(channel, None) is not None and self._settled(channel):
            return
        self._to_subscribe.add(channel)
        self._wake.set()

    def release(self, channel: bytes) -> None:
        """One reason less; after the last, the channel is unsubscribed after a linger."""
        count = self.holds.get(channel, 0) - 1
        if count > 0:
            self.holds[channel] = count
            return
        self.holds.pop(channel, None)
        self._to_subscribe.discard(channel)
        if channel in self.confirmed or self._in_flight.get(channel):
            self._to_unsubscribe[channel] = time.monotonic() + UNSUBSCRIBE_LINGER
            self._wake.set()
        else:
            self.targets.pop(channel, None)
            self._wake_waiters(channel)

    def pending(self, channel: bytes) -> gevent.event.Event | None:
        """What to wait on until ``channel`` is subscribed; None when it already is."""
        if self._settled(channel):
            return None
        return self._waiting.setdefault(channel, gevent.event.Event())

    def _settled(self, channel: bytes) -> bool:
        return channel in self.confirmed and not self._in_flight.get(channel)

    # The connection -----------------------------------------------------------

    def start(self) -> None:
        if self._writer is None:
            self._writer = gevent.spawn(self._write_loop)

    def close_connection(self) -> None:
        """Drop the connection: the reader connects again and subscribes everything held."""
        connection = self.connection
        if connection is not None:
            connection.disconnect()

    def messages(self) -> Iterator[tuple[bytes, bytes]]:
        """(channel, data) of every message heard, connecting again as long as it takes."""
        retry = 1.0
        lost_since: float | None = None
        while not self._closing:
            try:
                self._connect()
                retry = 1.0
                if lost_since is not None:
                    gevent.spawn(self._after_gap, lost_since)
                    lost_since = None
                while True:
                    reply = self.connection.read_response()
                    self.heard_at = time.time()
                    kind = reply[0]
                    if kind in (b"smessage", b"message"):
                        yield reply[1], reply[2]
                    elif kind in (b"ssubscribe", b"subscribe"):
                        self._confirmed(reply[1], subscribed=True)
                    elif kind in (b"sunsubscribe", b"unsubscribe"):
                        self._confirmed(reply[1], subscribed=False)
            except Exception as exc:
                if lost_since is None and self.heard_at:
                    lost_since = self.heard_at
                log.error("message queue listener lost its connection (%s); connecting again "
                          "in %.0f s", exc, retry)
                self._disconnected()
                gevent.sleep(retry)
                retry = min(retry * 2, RECONNECT_MAX_SECONDS)

    def _after_gap(self, lost_since: float) -> None:
        """Once every held room is subscribed again, tell the gap's listeners since when
        messages may be missing."""
        waiting = [event for channel in list(self.holds)
                   if (event := self.pending(channel)) is not None]
        if waiting and len(gevent.wait(waiting, timeout=SUBSCRIBE_WAIT)) < len(waiting):
            log.warning("Redis did not confirm every room within %.0f s of the listener's "
                        "return", SUBSCRIBE_WAIT)
        for listener in self.gap_listeners:
            try:
                listener(lost_since)
            except Exception:
                log.exception("could not make up for the message queue's gap")

    def _connect(self) -> None:
        client = redis.Redis.from_url(self.url, **{**self.options, "protocol": 2})
        self.sharded = shards_channels(client)
        connection = client.connection_pool.make_connection()
        connection.connect()
        self.connection = connection
        connection.send_command("SUBSCRIBE", self.shared, check_health=False)
        self._to_unsubscribe.clear()
        self._to_subscribe.clear()
        self._send(True, list(self.holds))

    def _disconnected(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.disconnect()
        self.confirmed.clear()
        self._in_flight.clear()
        self._last_was_subscribe.clear()
        for channel in [c for c in self.targets if c not in self.holds]:
            del self.targets[channel]
        metrics.queue_subscriptions.set(0)

    def _send(self, subscribe: bool, channels: list[bytes]) -> None:
        """SUBSCRIBE or UNSUBSCRIBE ``channels``, counted in flight before the reply can come."""
        if not channels:
            return
        command = ("S" if self.sharded else "") + ("SUBSCRIBE" if subscribe else "UNSUBSCRIBE")
        for channel in channels:
            self._in_flight[channel] = self._in_flight.get(channel, 0) + 1
            self._last_was_subscribe[channel] = subscribe
            if not subscribe:
                self.confirmed.discard(channel)
        for start in range(0, len(channels), BATCH):
            self.connection.send_command(command, *channels[start:start + BATCH],
                                         check_health=False)

    def _confirmed(self, channel: bytes, *, subscribed: bool) -> None:
        if channel == self.shared:
            return
        left = self._in_flight.get(channel, 0) - 1
        if left > 0:
            self._in_flight[channel] = left
            return
        self._in_flight.pop(channel, None)
        if self._last_was_subscribe.pop(channel, subscribed):
            self.confirmed.add(channel)
            self._wake_waiters(channel)
        else:
            self.confirmed.discard(channel)
            if channel not in self.holds:
                self.targets.pop(channel, None)
        metrics.queue_subscriptions.set(len(self.confirmed))

    def _wake_waiters(self, channel: bytes) -> None:
        event = self._waiting.pop(channel, None)
        if event is not None:
            event.set()

    def _write_loop(self) -> None:
        """Send what has changed since the last round: each round is one batch."""
        while not self._closing:
            due = min(self._to_unsubscribe.values(), default=None)
            self._wake.wait(None if due is None else max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self.connection is None:
                continue  # the reader subscribes everything held when it connects
            now = time.monotonic()
            leaving = [channel for channel, at in self._to_unsubscribe.items()
                       if at <= now and channel not in self.holds]
            for channel in leaving:
                del self._to_unsubscribe[channel]
            joining = [channel for channel in self._to_subscribe if channel in self.holds]
            self._to_subscribe.clear()
            try:
                self._send(False, leaving)
                self._send(True, joining)
            except Exception as exc:
                # The reader fails on the same connection and subscribes everything held.
                self._log.warning("could not change the room subscriptions: %s", exc)

    def stop(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.kill()
        self.close_connection()


class RoomChannels:
    """Mixed in ahead of python-socketio's ``RedisManager``: room emits on per-room channels."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.room_prefix = f"{self.channel}:room:"  # type: ignore[attr-defined]
        self.subscriptions = RoomSubscriptions(self.redis_url, self.channel,  # type: ignore[attr-defined]
                                               options=self.redis_options)  # type: ignore[attr-defined]
        self._sharded: bool | None = None

    def room_channel(self, namespace: str, room: str) -> bytes:
        return f"{self.room_prefix}{namespace}:{room}".encode()

    def initialize(self) -> None:
        super().initialize()  # type: ignore[misc]
        self.subscriptions.start()

    def drop_listener(self) -> None:
        """Close the listener's connection; it connects again and subscribes everything held."""
        self.subscriptions.close_connection()

    # Publishing -------------------------------------------------------------

    def _publish(self, data: Any) -> Any:
        room = data.get("room") if isinstance(data, dict) and data.get("method") == "emit" \
            else None
        targets = room if isinstance(room, list) else [room]
        if not targets or not all(routed_by_room(target) for target in targets):
            self._send_gathered()  # what this greenlet gathered goes first, as it came first
            return super()._publish(data)  # type: ignore[misc]
        namespace = data.get("namespace") or "/"
        receivers = 0
        for target in targets:
            message = data if len(targets) == 1 else {**data, "via": target}
            receivers += self._publish_on(self.room_channel(namespace, target), message) or 0
        return receivers

    def _publish_on(self, channel: bytes, data: Any) -> Any:
        """``_publish`` of python-socketio on a room's channel; gathered instead inside
        ``publishing_together``."""
        payload = self.json.dumps(data)  # type: ignore[attr-defined]
        gathered = _gathered.get()
        if gathered is not None:
            gathered.append((channel, payload))
            return None
        return self._to_redis(lambda command: self.redis.execute_command(  # type: ignore[attr-defined]
            command, channel, payload))

    @contextlib.contextmanager
    def publishing_together(self) -> Iterator[None]:
        """This greenlet's room publishes inside go to Redis at the end, in order, in one
        pipelined round trip.

        Published one by one, each emit of a batch (a recipient update per
        recipient) waited for its own reply: on two sending nodes the
        round trips took a quarter of a node's CPU (BENCHMARKS.md, "Recipient
        updates through Redis"). Nested, the outermost sends them.
        """
        if _gathered.get() is not None:
            yield
            return
        token = _gathered.set([])
        try:
            yield
        finally:
            self._send_gathered()
            _gathered.reset(token)

    def _send_gathered(self) -> None:
        gathered = _gathered.get()
        if not gathered:
            return
        publishes = gathered[:]
        gathered.clear()

        def send(command: str) -> int:
            pipeline = self.redis.pipeline(transaction=False)  # type: ignore[attr-defined]
            for channel, payload in publishes:
                pipeline.execute_command(command, channel, payload)
            return sum(pipeline.execute())

        self._to_redis(send)

    def _to_redis(self, publish: Callable[[str], Any]) -> Any:
        """``publish(command)``, the command ``SPUBLISH`` or ``PUBLISH`` as the server has it,
        with python-socketio's one retry on a new connection."""
        for retries_left in (1, 0):
            try:
                if not self.connected:  # type: ignore[has-type]
                    self._redis_connect()  # type: ignore[attr-defined]
                if self._sharded is None:
                    self._sharded = shards_channels(self.redis)  # type: ignore[attr-defined]
                return publish("SPUBLISH" if self._sharded else "PUBLISH")
            except Exception as exc:
                log.error("cannot publish to redis%s: %s",
                          "... retrying" if retries_left else "... giving up", exc)
                self.connected = False
        return None

    # Listening --------------------------------------------------------------

    def _listen(self) -> Iterator[Any]:
        shared = self.subscriptions.shared
        for channel, data in self.subscriptions.messages():
            if channel == shared:
                metrics.queue_received.inc(SHARED)
                metrics.queue_decoded.inc(SHARED)  # python-socketio decodes all it is given
                yield data
            else:
                self._receive_room(channel, data)

    def _receive_room(self, channel: bytes, data: bytes) -> None:
        """Deliver a room channel's message to the local sockets, decoding it only if any."""
        metrics.queue_received.inc(ROOM)
        target = self.subscriptions.targets.get(channel)
        if target is None or target[1] not in self.rooms.get(target[0], ()):  # type: ignore[attr-defined]
            metrics.queue_dropped.inc(ROOM)  # left meanwhile: the unsubscribe is on its way
            return
        try:
            message = self.json.loads(data)  # type: ignore[attr-defined]
        except Exception:
            metrics.queue_dropped.inc(ROOM)
            return
        metrics.queue_decoded.inc(ROOM)
        if not isinstance(message, dict) or message.get("method") != "emit" \
                or message.get("host_id") == self.host_id:  # type: ignore[attr-defined]
            metrics.queue_dropped.inc(ROOM)  # our own, delivered here when it was emitted
            return
        if isinstance(message.get("room"), list):
            message = self._through(message, namespace=target[0], room=target[1])
        try:
            super()._handle_emit(message)  # type: ignore[misc]
        except Exception:
            log.exception("could not deliver a room's message")

    def _through(self, message: dict, *, namespace: str, room: str) -> dict:
        """A several-room emit heard on ``room``'s channel: for the sockets of ``room`` that
        are in no room before it in the list (those hear it through that room's channel)."""
        listed = message["room"]
        earlier = listed[:listed.index(room)] if room in listed else listed
        skip = message.get("skip_sid")
        skipped = list(skip) if isinstance(skip, list) else [skip] if skip else []
        held = self.rooms.get(namespace, {})  # type: ignore[attr-defined]
        for other in earlier:
            skipped.extend(held.get(other, ()))
        return {**message, "room": room, "skip_sid": skipped or None}

    def _handle_emit(self, message: dict) -> None:
        """An emit heard on the shared channel, dropped when no local socket is addressed."""
        if message.get("host_id") != self.host_id and not self._addresses_local(message):  # type: ignore[attr-defined]
            metrics.queue_dropped.inc(SHARED)
            return
        super()._handle_emit(message)  # type: ignore[misc]

    def _addresses_local(self, message: dict) -> bool:
        held = self.rooms.get(message.get("namespace") or "/", {})  # type: ignore[attr-defined]
        room = message.get("room")
        if room is None:
            return bool(held)
        return any(target in held for target in (room if isinstance(room, list) else [room]))

    # Room membership ----------------------------------------------------------

    def basic_enter_room(self, sid: str, namespace: str, room: Any,
                         eio_sid: str | None = None) -> None:
        first = room != sid and routed_by_room(room) and \
            room not in self.rooms.get(namespace, {})  # type: ignore[attr-defined]
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        if first:
            self.subscriptions.hold(self.room_channel(namespace, room), (namespace, room))

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        held = self.rooms.get(namespace, {})  # type: ignore[attr-defined]
        member = room != sid and routed_by_room(room) and sid in held.get(room, ())
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        if member and room not in self.rooms.get(namespace, {}):  # type: ignore[attr-defined]
            self.subscriptions.release(self.room_channel(namespace, room))

    def ensure_subscribed(self, namespace: str, rooms: Iterable[str],
                          timeout: float = SUBSCRIBE_WAIT) -> bool:
        """Return once emits to ``rooms`` from any process reach this one (False: timed out).

        Each room is held while waiting; one that no local socket then enters
        is let go after ``UNSUBSCRIBE_LINGER``.
        """
        channels = [(self.room_channel(namespace, room), (namespace, room))
                    for room in rooms if routed_by_room(room)]
        for channel, target in channels:
            self.subscriptions.hold(channel, target)
        try:
            waiting = [event for channel, _ in channels
                       if (event := self.subscriptions.pending(channel)) is not None]
            done = gevent.wait(waiting, timeout=timeout) if waiting else []
            if len(done) < len(waiting):
                log.warning("Redis did not confirm a room subscription within %.0f s: "
                            "emits from other processes may be missed", timeout)
                return False
            return True
        finally:
            for channel, _ in channels:
                self.subscriptions.release(channel)


def on_gap(manager: Any, listener: Callable[[float], None]) -> None:
    """Call ``listener`` with the wall-clock time since when emits may have been lost, each
    time this process's listener is back after losing its connection (Redis only)."""
    if isinstance(manager, RoomChannels):
        manager.subscriptions.gap_listeners.append(listener)


def ensure_subscribed(manager: Any, namespace: str, rooms: Iterable[str]) -> bool:
    """``RoomChannels.ensure_subscribed`` for a manager that routes by room; True otherwise."""
    if isinstance(manager, RoomChannels):
        return manager.ensure_subscribed(namespace, rooms)
    return True
