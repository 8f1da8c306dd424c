"""Two processes sharing PostgreSQL and Redis: emits, state and failures across nodes."""

import json
import time
import uuid

import redis

from services.transport.client_manager import queue_client_name
from tests.support import (
    REDIS_URL,
    RecordingClient,
    eventually,
    redis_reachable,
    register_user,
    require_service,
    run_flask,
)


def _client(server, token):
    client = RecordingClient(server.url)
    client.connect(token=token)
    return client


def test_notification_posted_to_b_reaches_a_socket_on_a(cluster):
    a, b = cluster
    user, admin = register_user(a), register_user(b, admin=True)
    on_a = _client(a, user.token)
    # Connection rows are written behind, within one flush interval: wait until B sees it.
    eventually(lambda: b.api.get(f"/api/socket/user/{user.id}/online",
                                 admin.token).json()["online"])
    response = b.api.post(f"/api/socket/notify/{user.id}", admin.token,
                          json={"title": "cross-node", "message": "via redis"})
    assert response.status_code == 201 and response.json()["delivered"] == 1
    assert on_a.wait_for("notification")["title"] == "cross-node"
    on_a.close()


def test_broadcast_and_ping_reach_clients_on_both_nodes(cluster):
    a, b = cluster
    admin = register_user(a, admin=True)
    clients = [_client(a, register_user(a).token), _client(b, register_user(b).token)]
    note = a.api.post("/api/socket/broadcast", admin.token,
                      json={"title": "everyone", "message": "m"}).json()["notification"]
    for client in clients:
        assert client.wait_for("notification", lambda n: n["id"] == note["id"])
    # ``sent`` counts connection rows, which each node writes within a flush interval.
    eventually(lambda: b.api.get("/api/socket/online-count", admin.token).json()["count"] >= 2)
    ping = b.api.post("/api/socket/ping", admin.token).json()
    assert ping["sent"] >= 2
    for client in clients:
        assert client.wait_for("ping")["timestamp"] == ping["timestamp"]
        client.close()


def test_online_and_stats_agree_across_nodes(cluster):
    a, b = cluster
    user, admin = register_user(a), register_user(a, admin=True)
    on_a = _client(a, user.token)
    online = eventually(lambda: (r := b.api.get(f"/api/socket/user/{user.id}/online",
                                                admin.token).json())["online"] and r)
    assert online["connections"] == 1
    stats = b.api.get("/api/socket/stats", admin.token).json()
    assert {node["id"] for node in stats["nodes"]} >= {"node-a", "node-b"}
    by_node = {node["id"]: node["connections"] for node in stats["nodes"]}
    assert by_node["node-a"] >= 1
    assert stats["totalConnections"] == sum(by_node.values())
    on_a.close()
    eventually(lambda: not b.api.get(f"/api/socket/user/{user.id}/online",
                                     admin.token).json()["online"])


def test_logout_on_b_drops_the_socket_on_a(cluster):
    a, b = cluster
    user = register_user(a)
    on_a = _client(a, user.token)
    assert b.api.post("/api/auth/logout", user.token).status_code == 200
    assert on_a.disconnected.wait(5)


def test_flask_notify_cli_reaches_a_socket(cluster):
    a, _ = cluster
    user = register_user(a)
    on_a = _client(a, user.token)
    run = run_flask(a.database_url, "notify", str(user.id), "--title", "from cron",
                    "--message", "hello", "--data", '{"k": 1}',
                    env={"SOCKETIO_MESSAGE_QUEUE": REDIS_URL, "SOCKETIO_CHANNEL": a.channel})
    assert run.returncode == 0, run.stderr
    note = on_a.wait_for("notification")
    assert note["title"] == "from cron" and note["data"] == {"k": 1}
    on_a.close()


def test_readyz_checks_database_and_redis(cluster):
    a, _ = cluster
    ready = a.api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["messageQueue"] == "ok"
    assert a.api.get("/healthz").json()["status"] == "ok"


def test_killing_the_listener_connection_is_survived(cluster):
    """Only this cluster's listeners are killed: other tests' hubs share the Redis."""
    a, b = cluster
    client = redis.Redis.from_url(REDIS_URL)
    listeners = [c for c in client.client_list(_type="pubsub")
                 if c["name"] in (f"hub:{a.channel}:node-a", f"hub:{a.channel}:node-b")]
    assert len(listeners) == 2
    for listener in listeners:
        assert client.client_kill_filter(_id=listener["id"]) == 1
    user, admin = register_user(a), register_user(b, admin=True)
    on_a = _client(a, user.token)

    def delivered():
        b.api.post(f"/api/socket/notify/{user.id}", admin.token,
                   json={"title": "after kill", "message": "m"})
        time.sleep(0.3)
        return on_a.received("notification")
    eventually(delivered, timeout=20, interval=0.5)
    eventually(lambda: a.api.get("/readyz").status_code == 200, timeout=20)
    on_a.close()


def test_a_channel_with_spaces_still_names_the_connection_as_redis_accepts():
    require_service("Redis", redis_reachable())
    name = queue_client_name("our deployment\n", "node 1")
    client = redis.Redis.from_url(REDIS_URL, client_name=name)
    assert client.client_getname() == name == "hub:our_deployment_:node_1"
    client.close()


def test_kill_9_node_a_and_b_reports_its_users_offline_then_a_rejoins(cluster):
    a, b = cluster
    user, admin = register_user(a), register_user(b, admin=True)
    sockets = [_client(a, user.token) for _ in range(3)]
    eventually(lambda: b.api.get(f"/api/socket/user/{user.id}/online",
                                 admin.token).json()["connections"] == 3)
    a.kill()
    killed_at = time.monotonic()
    eventually(lambda: not b.api.get(f"/api/socket/user/{user.id}/online",
                                     admin.token).json()["online"], timeout=10)
    assert time.monotonic() - killed_at < 3.0 + 4.0  # NODE_TTL of the testing config + margin
    stats = eventually(lambda: (s := b.api.get("/api/socket/stats", admin.token).json()) and
                       "node-a" not in {n["id"] for n in s["nodes"]} and s, timeout=10)
    assert stats["totalConnections"] == sum(n["connections"] for n in stats["nodes"])
    for client in sockets:
        client.close()
    a.start()
    again = _client(a, user.token)
    online = eventually(lambda: (r := b.api.get(f"/api/socket/user/{user.id}/online",
                                                admin.token).json())["online"] and r)
    assert online["connections"] == 1
    again.close()


def test_emits_to_one_local_socket_stay_off_the_queue(cluster):
    """A sid names one socket of one process: only room emits need the other nodes, and
    those travel on the room's own channel, not the shared one."""
    a, b = cluster
    listener = redis.Redis.from_url(REDIS_URL).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(a.channel)
    listener.get_message(timeout=1)
    user, admin = register_user(a), register_user(b, admin=True)
    room_listener = redis.Redis.from_url(REDIS_URL).pubsub(ignore_subscribe_messages=True)
    room_listener.ssubscribe(f"{a.channel}:room:/:user:{user.id}")
    room_listener.get_sharded_message(timeout=1)
    on_a = _client(a, user.token)
    assert on_a.wait_for("session")["userId"] == str(user.id)
    on_a.emit("no_such_event", {})
    assert on_a.wait_for("error")["code"] == "invalid_payload"
    assert b.api.post(f"/api/socket/notify/{user.id}", admin.token,
                      json={"title": "through the queue", "message": "m"}).status_code == 201
    assert on_a.wait_for("notification")["title"] == "through the queue"
    on_room = room_listener.get_sharded_message(timeout=5)
    room_listener.close()
    assert json.loads(on_room["data"])["event"] == "notification"
    # Read up to a marker of our own (nodes ignore an unknown method): canaries never stop.
    marker = {"method": "test_marker", "id": uuid.uuid4().hex}
    redis.Redis.from_url(REDIS_URL).publish(a.channel, json.dumps(marker))
    published = []
    while (message := listener.get_message(timeout=5)) is not None:
        published.append(json.loads(message["data"]))
        if published[-1] == marker:
            break
    listener.close()
    assert published[-1] == marker
    assert not [m for m in published if m.get("method") == "emit"], published
    on_a.close()
