"""Room emits on per-room channels: a node hears only the rooms it holds sockets in.

Three nodes on one PostgreSQL database and one Redis. What each node hears
is read from its ``/metrics`` (messages received, decoded and dropped, by
channel) and from Redis itself (``PUBSUB SHARDNUMSUB``).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import defaultdict

import gevent
import pytest
import redis
import requests
import socketio

from services.transport.client_manager import build_client_manager
from tests.support import (
    REDIS_URL,
    CuttableProxy,
    RecordingClient,
    app_on,
    eventually,
    redis_reachable,
    register_user,
    require_service,
)

NOTIFICATIONS = 2_000
POSTERS = 8
RECIPIENTS = 5_000
# A join acknowledged before its SUBSCRIBE completes misses about 20 ticks (one a
# millisecond, Redis 20 ms away): every such join fails, so a few dozen make the case.
JOINS = 50


@pytest.fixture(scope="module")
def three_nodes(module_hub_factory):
    """Sends take 1 s, so a message tracked at once has had no send completed yet."""
    return module_hub_factory.nodes(3, {"SIMULATED_SMS_LATENCY": "1.0",
                                        "DISPATCH_CONCURRENCY": "200"}, name="rooms")


def _metric(node, name: str, channel: str) -> float:
    text = requests.get(node.url + "/metrics", timeout=5).text
    prefix = f'{name}_total{{channel="{channel}"}} '
    return next((float(line[len(prefix):]) for line in text.splitlines()
                 if line.startswith(prefix)), 0.0)


def _connect(node, token, **kwargs) -> RecordingClient:
    client = RecordingClient(node.url)
    client.connect(token=token, **kwargs)
    return client


def _room_subscribers(node, room: str) -> int:
    channel = f"{node.channel}:room:/:{room}"
    return redis.Redis.from_url(REDIS_URL).execute_command("PUBSUB", "SHARDNUMSUB", channel)[1]


@pytest.mark.timeout(300)
def test_everything_posted_on_b_for_a_user_on_a_reaches_a_in_order_and_c_decodes_none(
        three_nodes):
    a, b, c = three_nodes
    user, admin = register_user(a), register_user(b, admin=True)
    bystander = _connect(c, register_user(c).token)  # C holds sockets, none of this user's
    on_a = [_connect(a, user.token) for _ in range(2)]
    decoded_by_c = _metric(c, "hub_queue_messages_decoded", "room")
    received_by_c = _metric(c, "hub_queue_messages_received", "room")

    phones = [f"+1555{index:07d}" for index in range(RECIPIENTS)]
    posted = b.api.post("/api/messages", user.token, json={"body": "hello", "recipients": phones})
    assert posted.status_code == 202, posted.text
    message_id = posted.json()["id"]
    tracked = on_a[1].call("track_message", message_id)
    assert tracked["ok"], tracked
    live_from = len(on_a[1].events)  # everything before the ack may be the snapshot
    posters = [threading.Thread(target=_post_notifications, args=(b, admin, user, poster))
               for poster in range(POSTERS)]
    for poster in posters:
        poster.start()
    for poster in posters:
        poster.join()

    # Each poster's notifications, POSTed one after the other, arrive in that order.
    for client in on_a:
        with contextlib.suppress(AssertionError):
            eventually(lambda client=client: len(_titles(client)) >= NOTIFICATIONS, timeout=60)
        titles = _titles(client)
        assert len(titles) == NOTIFICATIONS
        for poster in range(POSTERS):
            assert [t for t in titles if t.startswith(f"p{poster}-")] == \
                [f"p{poster}-{index}" for index in range(NOTIFICATIONS // POSTERS)]
    final = on_a[1].wait_for("message_update", lambda u: u["status"] == "SENT", timeout=90)
    assert final["successCount"] == RECIPIENTS
    # A message_update goes to the owner's room and the message's, two channels that A
    # both hears: the tracker, in both rooms, still gets each one once.
    on_a[0].wait_for("message_update", lambda u: u["status"] == "SENT")
    tracked_updates = [u for name, u in on_a[1].events[live_from:] if name == "message_update"]
    assert 0 < len(tracked_updates) <= len(on_a[0].received("message_update"))
    # What A last heard of each recipient is what the database holds once sending settles.
    # Receipts still arrive after the message is SENT: the database is read again each time.
    with contextlib.suppress(AssertionError):
        eventually(lambda: _last_heard(on_a[1]) == _stored_recipients(b, user, message_id),
                   timeout=60)
    assert _last_heard(on_a[1]) == (stored := _stored_recipients(b, user, message_id))
    assert len(stored) == RECIPIENTS
    versions: dict[str, list[int]] = defaultdict(list)
    for name, update in on_a[1].events[live_from:]:
        if name == "recipient_update":
            versions[update["recipientId"]].append(update["version"])
    # Each recipient update reaches the tracker once, though A hears two channels. Their
    # order is not promised: the claim, the send and the receipt may be published by
    # different nodes, and the API tells clients to keep the highest version.
    assert versions
    assert {recipient: seen for recipient, seen in versions.items()
            if len(seen) != len(set(seen))} == {}

    assert _metric(c, "hub_queue_messages_decoded", "room") == decoded_by_c
    assert _metric(c, "hub_queue_messages_received", "room") == received_by_c
    assert _metric(a, "hub_queue_messages_decoded", "room") >= NOTIFICATIONS
    for client in (*on_a, bystander):
        client.close()


def _post_notifications(node, admin, user, poster: int) -> None:
    session = requests.Session()
    for index in range(NOTIFICATIONS // POSTERS):
        response = session.post(f"{node.url}/api/socket/notify/{user.id}",
                                headers={"Authorization": f"Bearer {admin.token}"},
                                json={"title": f"p{poster}-{index}", "message": "m"}, timeout=30)
        assert response.status_code == 201, response.text


def _titles(client: RecordingClient) -> list[str]:
    return [n["title"] for n in client.received("notification") if n["title"].startswith("p")]


def _last_heard(client: RecordingClient) -> dict[str, tuple[str, int]]:
    """Each recipient's status and version in the newest update the client received for it:
    updates published by different greenlets or nodes may arrive out of order, and the API
    tells clients to keep the highest version."""
    newest: dict[str, tuple[str, int]] = {}
    for update in client.received("recipient_update"):
        known = newest.get(update["recipientId"])
        if known is None or update["version"] > known[1]:
            newest[update["recipientId"]] = (update["status"], update["version"])
    return newest


def _stored_recipients(node, user, message_id: str) -> dict[str, tuple[str, int]]:
    """Each recipient's status and version as the database holds them, once none is pending
    or being sent and a second has passed for the last receipts."""
    def page_all() -> dict[str, tuple[str, int]]:
        rows, after = {}, None
        while True:
            page = node.api.get(f"/api/messages/{message_id}/recipients", user.token,
                                params={"limit": 1000, **({"after": after} if after else {})})
            body = page.json()
            rows |= {r["recipientId"]: (r["status"], r["version"]) for r in body["recipients"]}
            if not (after := body.get("nextCursor")):
                return rows
    eventually(lambda: not {"PENDING", "SENDING"} & {s for s, _ in page_all().values()},
               timeout=60, interval=0.5)
    time.sleep(1.0)
    return page_all()


@pytest.mark.timeout(300)
def test_a_join_acknowledged_misses_no_update_published_after_it(three_nodes, hub_factory):
    """Each join is the room's first on its node: the ack must wait for Redis's SUBSCRIBE.

    The joining node reaches Redis 20 ms away; a process without sockets
    emits numbered ticks to the room being joined through the hub's own
    services, as ``flask notify`` and workers do, straight to Redis.
    """
    from services.messaging import messages
    from services.realtime import emitter

    a, b, _ = three_nodes
    distant_redis = CuttableProxy("127.0.0.1", redis.Redis.from_url(REDIS_URL).connection_pool
                                  .connection_kwargs["port"], delay=0.02)
    distant_redis.start()
    hub_factory.callback(distant_redis.cut)
    distant = hub_factory({"SOCKETIO_MESSAGE_QUEUE": f"redis://127.0.0.1:{distant_redis.port}/0",
                           "SOCKETIO_CHANNEL": a.channel, "NODE_ID": "rooms-distant"},
                          database_url=a.database_url, name="rooms-distant")
    admin, owner = register_user(b, admin=True), register_user(b)
    client = _connect(distant, admin.token)
    with app_on(a.database_url, SOCKETIO_MESSAGE_QUEUE=REDIS_URL,
                SOCKETIO_CHANNEL=a.channel) as app:
        created = [messages.create(owner.id, body="m",
                                   recipients=messages.read_recipients(["+15551230000"]))
                   for _ in range(JOINS)]
        rooms = [f"message:{message['id']}" for message in created]
        ticks = _Ticks(app, emitter)
        ticks.start()
        try:
            for room in rooms:
                assert _room_subscribers(a, room) == 0
                ticks.room = room
                assert client.call("join_room", room)["ok"]
                after = ticks.started
                expected = set(range(after + 1, after + 6))

                def missing(expected=expected) -> set[int]:
                    return expected - {tick["seq"] for tick in client.received("tick")}
                # The client library hands each event to a thread of its own, so events may
                # be recorded out of order: wait for them all rather than for the last.
                with contextlib.suppress(AssertionError):
                    eventually(lambda: not missing(), timeout=10, interval=0.02)
                assert missing() == set(), (room, after)
                assert client.call("leave_room", room)["ok"]
        finally:
            ticks.stop()
    client.close()


class _Ticks(threading.Thread):
    """Emits ``tick`` with a growing ``seq`` to ``room``; ``started``: the last one begun."""

    def __init__(self, app, emitter) -> None:
        super().__init__(daemon=True)
        self.app, self.emitter = app, emitter
        self.room = ""
        self.started = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        with self.app.app_context():
            while not self.stopped.is_set():
                self.started += 1
                self.emitter.emit_to_room(self.room, event="tick", payload={"seq": self.started})
                time.sleep(0.001)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def test_a_room_is_subscribed_while_it_has_local_members(three_nodes):
    a, _, _ = three_nodes
    user = register_user(a)
    first, second = _connect(a, user.token), _connect(a, user.token)
    room = "room:subscribed-while-held"
    assert _room_subscribers(a, room) == 0
    assert first.call("join_room", room)["ok"] and second.call("join_room", room)["ok"]
    assert _room_subscribers(a, room) == 1
    first.call("leave_room", room)
    time.sleep(1.5)  # past the linger: still one member
    assert _room_subscribers(a, room) == 1
    second.close()
    eventually(lambda: _room_subscribers(a, room) == 0, timeout=5)
    first.close()


def test_the_per_user_cap_holds_across_nodes(three_nodes):
    a, b, _ = three_nodes
    user = register_user(a)
    held = [_connect(node, user.token) for node in (a, b) for _ in range(10)]
    for node in (a, b):
        refused = RecordingClient(node.url)
        with pytest.raises(socketio.exceptions.ConnectionError):
            refused.connect(token=user.token)
        assert refused.connect_error["data"]["code"] == "too_many_connections"
    held.pop(0).close()
    eventually(lambda: _try_connect(b, user.token, held), timeout=5)
    for client in held:
        client.close()


def _try_connect(node, token, held) -> bool:
    client = RecordingClient(node.url)
    try:
        client.connect(token=token)
    except socketio.exceptions.ConnectionError:
        return False
    held.append(client)
    return True


def test_kill_9_of_a_rooms_only_node_leaves_the_others_working(hub_factory):
    a, b = hub_factory.nodes(2, name="killed")
    user, admin = register_user(a), register_user(b, admin=True)
    on_a = [_connect(a, user.token) for _ in range(20)]
    assert on_a[0].call("join_room", "room:only-on-a")["ok"]
    assert _room_subscribers(a, "room:only-on-a") == 1
    assert _room_subscribers(a, f"user:{user.id}") == 1
    a.kill()
    eventually(lambda: _room_subscribers(a, "room:only-on-a") == 0, timeout=5)
    assert _room_subscribers(a, f"user:{user.id}") == 0
    # A's sockets stop counting against the cap once A misses its heartbeats (NODE_TTL).
    on_b: list[RecordingClient] = []
    eventually(lambda: _try_connect(b, user.token, on_b), timeout=15)
    on_b += [_connect(b, user.token) for _ in range(19)]
    assert b.api.post(f"/api/socket/notify/{user.id}", admin.token,
                      json={"title": "after the kill", "message": "m"}).status_code == 201
    for client in on_b:
        assert client.wait_for("notification")["title"] == "after the kill"
        client.close()
    for client in on_a:
        client.close()


@pytest.fixture
def publisher():
    """The hub's Redis client manager on a channel of its own, and a listener on a room's
    channel and the shared one, for publishing without a node."""
    require_service("Redis", redis_reachable())
    manager = build_client_manager(REDIS_URL, f"hub-test-{uuid.uuid4().hex[:8]}")
    listener = redis.Redis.from_url(REDIS_URL).pubsub()
    listener.ssubscribe(manager.room_channel("/", "message:1"))
    listener.subscribe(manager.channel)
    for _ in range(2):
        assert listener.get_sharded_message(timeout=2) or listener.get_message(timeout=2)
    yield manager, listener
    listener.close()


def _heard(listener, wait: float) -> list[tuple[str, object]]:
    """The emits the listener has, each as (event, its one argument), in the order published."""
    heard = []
    while (message := listener.get_sharded_message(timeout=wait)
           or listener.get_message(timeout=wait)) is not None:
        if message["type"] in ("smessage", "message"):
            emit = json.loads(message["data"])
            heard.append((emit["event"], *emit["data"]))
    return heard


def test_room_publishes_made_together_go_out_at_the_end_in_order(publisher):
    """A batch's emits are one pipelined round trip: none is sent before the batch ends,
    and then all are, in order."""
    manager, listener = publisher
    with manager.publishing_together():
        for index in range(250):
            manager.emit("recipient_update", {"index": index}, room="message:1")
        assert _heard(listener, 0.3) == []
    assert _heard(listener, 0.5) == [("recipient_update", {"index": index})
                                     for index in range(250)]


def test_a_shared_channel_publish_sends_what_was_gathered_before_it(publisher):
    manager, listener = publisher
    with manager.publishing_together():
        manager.emit("recipient_update", {"index": 0}, room="message:1")
        manager.emit("notice", {"to": "everyone"})  # the whole namespace: the shared channel
        manager.emit("recipient_update", {"index": 1}, room="message:1")
    assert _heard(listener, 0.5) == [("recipient_update", {"index": 0}),
                                     ("notice", {"to": "everyone"}),
                                     ("recipient_update", {"index": 1})]


def test_another_greenlets_publish_is_not_held_by_a_batch(publisher):
    manager, listener = publisher
    with manager.publishing_together():
        manager.emit("recipient_update", {"by": "batch"}, room="message:1")
        gevent.spawn(manager.emit, "recipient_update", {"by": "other"}, room="message:1").join()
        assert _heard(listener, 0.3) == [("recipient_update", {"by": "other"})]
    assert _heard(listener, 0.5) == [("recipient_update", {"by": "batch"})]
