"""Abuse: floods, connection caps, REST limits, oversized bodies, foreign origins."""

import json
import statistics
import threading
import time

import pytest
import requests
import socketio
import websocket

from tests.support import AckProbe, RecordingClient, raw_socketio_connect, register_user

LIMITS = {"EVENT_RATE": "20", "EVENT_BURST": "40", "MAX_CONNECTIONS_PER_USER": "20",
          "MAX_CONNECTIONS_PER_ADDRESS": "1000", "LOGIN_RATE_LIMIT": "5/minute",
          "MAX_CONTENT_LENGTH": "65536",
          "CORS_ALLOWED_ORIGINS": "https://app.example.com,http://localhost:3000"}


@pytest.fixture(scope="module")
def limited_hub(module_hub_factory):
    return module_hub_factory(LIMITS, name="limited")


def _ack_latency(client, count=20):
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        client.call("get_rooms")
        samples.append(time.perf_counter() - started)
        time.sleep(0.05)
    return samples


def test_event_flood_is_rate_limited_and_the_flooder_dropped(limited_hub):
    """The calm user's acks are delayed by the flood in all by less than a second.

    Unlimited, these 3,000 events delay them by about 2.4 s in all (measured
    with ``EVENT_RATE`` and ``EVENT_BURST`` at a million); limited, by 10 to
    50 ms. The total, not a percentile: the flood lands on one or two probes,
    while a busy machine's pauses land anywhere.
    """
    flooder_user, calm_user = register_user(limited_hub), register_user(limited_hub)
    calm = RecordingClient(limited_hub.url)
    calm.connect(token=calm_user.token)
    baseline = statistics.median(_ack_latency(calm))
    flooder = RecordingClient(limited_hub.url)
    flooder.connect(token=flooder_user.token)
    during: list[float] = []
    probe = threading.Thread(target=lambda: during.extend(_ack_latency(calm, 30)))
    probe.start()
    for _ in range(3000):
        if not flooder.sio.connected:
            break
        flooder.emit("get_notifications", {"limit": 1})
    probe.join()
    errors = flooder.received("error")
    assert any(e["code"] == "rate_limited" for e in errors)
    assert len([e for e in errors if e["code"] == "rate_limited"]) <= 3000
    assert flooder.disconnected.wait(10), "a persistent flooder stays connected"
    delay = sum(during) - len(during) * baseline
    assert delay < 1.0, (sorted(during)[-3:], baseline)
    assert calm.sio.connected
    calm.close()


@pytest.fixture(scope="module")
def generous_hub(module_hub_factory):
    """Limits high enough that a burst of thousands of events is all allowed and run."""
    return module_hub_factory({"EVENT_RATE": "1000000", "EVENT_BURST": "1000000"},
                              name="generous")


def test_one_connections_burst_does_not_hold_up_the_others(generous_hub):
    """3,000 events in one write, each a database read, within the sender's limits:
    the node takes turns between them and other sockets, so a bystander's ack waits a
    slice, not the burst.

    Handled in one go, the burst held every other socket until it was over: the
    bystander's longest wait was the burst's whole 5.2 s. Taking turns, it is 10-20 ms
    of a 7-10 s burst (the bystander's thousand acks are served in between). The bound
    is a share of the burst's own duration, not a number of seconds: a busy machine
    stretches both alike, and a single pause of the machine's (0.4-0.8 s, seen in CI
    with three test processes on two cores) lands on any probe.
    """
    sender, bystander_user = register_user(generous_hub), register_user(generous_hub)
    bystander = RecordingClient(generous_hub.url)
    bystander.connect(token=bystander_user.token)
    ws, kind, _ = raw_socketio_connect(generous_hub.url, sender.token)
    assert kind == "40"
    count = 3000
    burst = b"".join(
        websocket.ABNF.create_frame(f'42{ack_id}["get_notifications",{{"limit":1}}]',
                                    websocket.ABNF.OPCODE_TEXT).format()
        for ack_id in range(count))
    with AckProbe(bystander, interval=0.005) as during:
        started = time.perf_counter()
        ws.sock.sendall(burst)
        answered = 0
        while answered < count:
            text = ws.recv()
            if text.startswith("43"):
                assert '"ok":true' in text, text
                answered += 1
            elif text == "2":
                ws.send("3")
        burst_seconds = time.perf_counter() - started
    ws.close()
    assert len(during.latencies) >= 10, len(during.latencies)
    assert max(during.latencies) < burst_seconds / 5, (sorted(during.latencies)[-3:],
                                                       burst_seconds)
    bystander.close()


def test_rate_limited_ack_has_the_error_shape(limited_hub):
    user = register_user(limited_hub)
    client = RecordingClient(limited_hub.url)
    client.connect(token=user.token)
    # Sent without waiting for each ack: 45 round trips one by one can take longer than
    # the five tokens the bucket refills meanwhile (0.25 s) on a busy machine.
    answers: list = []
    all_answered = threading.Event()

    def answered(answer):
        answers.append(answer)
        if len(answers) == 45:
            all_answered.set()

    for _ in range(45):
        client.sio.emit("get_rooms", callback=answered)
    assert all_answered.wait(5)
    limited = [a for a in answers if isinstance(a, dict)]
    assert limited and limited[0] == {"ok": False, "error": {
        "code": "rate_limited", "message": "Too many events: slow down"}}
    time.sleep(0.2)
    assert isinstance(client.call("get_rooms"), list)  # the bucket refills
    client.close()


def test_connections_per_user_are_capped_with_a_clear_error(limited_hub):
    user = register_user(limited_hub)
    clients, refused = [], None
    try:
        for _ in range(200):
            client = RecordingClient(limited_hub.url)
            try:
                client.connect(token=user.token)
                clients.append(client)
            except socketio.exceptions.ConnectionError:
                refused = client.connect_error
                break
        assert len(clients) == 20
        assert refused == {"message": "Too many connections for this user",
                           "data": {"code": "too_many_connections"}}
    finally:
        for client in clients:
            client.close()


def test_login_brute_force_gets_429_json_with_retry_after(limited_hub):
    statuses = []
    for _ in range(8):
        response = limited_hub.api.post("/api/auth/login",
                                        json={"email": "x@example.com", "password": "guess"})
        statuses.append(response.status_code)
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0
    other = register_user(limited_hub)  # another account from the same address still logs in
    assert other.token


def test_oversized_rest_body_is_413_json(limited_hub):
    user = register_user(limited_hub)
    response = limited_hub.api.post("/api/messages", user.token, json={
        "body": "x", "recipients": ["+15551234567"] * 20000})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def _handshake(hub, origin):
    headers = [f"Origin: {origin}"] if origin else []
    ws = websocket.create_connection(
        hub.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
        header=headers, timeout=5, suppress_origin=True)
    try:
        return ws.recv()
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return None
    finally:
        ws.close()


@pytest.mark.parametrize("origin", ["https://evil.example", "https://app.example.com.evil.com",
                                    "https://evil-app.example.com", "null",
                                    "http://app.example.com", "https://app.example.com:8443"])
def test_foreign_origins_are_refused_before_the_upgrade(limited_hub, origin):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _handshake(limited_hub, origin)
    assert refused.value.status_code == 403
    assert json.loads(refused.value.resp_body)["error"]["code"] == "forbidden"


@pytest.mark.parametrize("origin", ["https://app.example.com", "http://localhost:3000", None])
def test_allowed_origins_and_non_browser_clients_connect(limited_hub, origin):
    assert _handshake(limited_hub, origin).startswith("0{")


def test_rest_cors_allows_only_listed_origins(limited_hub):
    allowed = requests.options(limited_hub.url + "/api/auth/login", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}, timeout=5)
    assert allowed.headers.get("Access-Control-Allow-Origin") == "https://app.example.com"
    foreign = requests.options(limited_hub.url + "/api/auth/login", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, timeout=5)
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_without_a_list_only_the_hubs_own_origin_may_open_a_socket(sqlite_hub):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _handshake(sqlite_hub, "https://evil.example")
    assert refused.value.status_code == 403
    assert json.loads(refused.value.resp_body)["error"]["code"] == "forbidden"
    assert _handshake(sqlite_hub, sqlite_hub.url).startswith("0{")


def test_without_a_list_rest_grants_no_foreign_origin(sqlite_hub):
    foreign = {"Origin": "https://evil.example"}
    preflight = requests.options(sqlite_hub.url + "/api/auth/login", timeout=5, headers={
        **foreign, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    answer = requests.get(sqlite_hub.url + "/api/socket/online-count", headers=foreign,
                          timeout=5)
    assert "Access-Control-Allow-Origin" not in answer.headers
