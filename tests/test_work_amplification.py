"""Events that cost far more than others, sent at the allowed rate, cannot slow anyone else.

``track_message`` answers with up to a thousand ``recipient_update`` events and
``subscribe_analytics`` computes every figure: at 20 events a second one socket
took most of a core and pushed another client's ack p99 to 458 ms, and four
sockets of one user made it wait seconds. Each attack here keeps to the
socket's event rate; another client's acks must stay as quick as before
(``bench/expensive_events.py`` measures their p99 over longer runs).
"""

import json
import threading
import time

import pytest
import websocket

from tests.support import (
    AckProbe,
    RecordingClient,
    assert_acks_stay_flat,
    eventually,
    register_user,
    rss_kb,
)

# The production defaults: 20 events a second per socket, a snapshot budget per user.
LIMITS = {"EVENT_RATE": "20", "EVENT_BURST": "40", "SNAPSHOT_RATE": "500",
          "SNAPSHOT_BURST": "1000"}
HAMMER_SECONDS = 4.0
# The bystander's acks, one every ACK_INTERVAL: well inside its own event rate.
ACK_INTERVAL = 0.08


@pytest.fixture(scope="module")
def metered_hub(module_hub_factory):
    return module_hub_factory(LIMITS, name="metered")


def _message_of_a_thousand(hub, user) -> str:
    """A message with a thousand recipients, sent and its receipts in, so nothing else runs."""
    phones = [f"+1555{i:07d}" for i in range(1000)]
    created = hub.api.post("/api/messages", user.token, json={"body": "x", "recipients": phones})
    assert created.status_code == 202, created.text
    message_id = created.json()["id"]
    seen: list[dict] = []

    def settled() -> bool:
        seen.append(hub.api.get(f"/api/messages/{message_id}", user.token).json())
        return len(seen) > 1 and seen[-1]["status"] != "SENDING" and seen[-1] == seen[-2]
    eventually(settled, timeout=60, interval=1.0)
    return message_id


class Hammer:
    """A raw Socket.IO client sending one event at the rate its socket is allowed, never slower.

    It reads everything the server sends without decoding it, as an attacker
    would, and counts the snapshots and refusals it was answered with.
    """

    def __init__(self, hub, token: str, event: str, argument, rate: float) -> None:
        self.ws = websocket.create_connection(
            hub.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=10)
        assert self.ws.recv().startswith("0{")
        self.ws.send("40" + json.dumps({"token": token}))
        assert self.ws.recv().startswith("40{")
        self.event, self.argument, self.rate = event, argument, rate
        self.received = bytearray()
        self.sent = 0

    def run(self, stop: threading.Event) -> None:
        reader = threading.Thread(target=self._drain, daemon=True)
        reader.start()
        started = time.perf_counter()
        args = json.dumps([self.event] if self.argument is None else [self.event, self.argument])
        while not stop.is_set():
            self.sent += 1
            self.ws.send(f"42{self.sent}{args}")
            delay = started + self.sent / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        self.ws.close()
        reader.join(timeout=10)

    def _drain(self) -> None:
        sock = self.ws.sock  # close() sets ws.sock to None; recv on the closed socket ends it
        while True:
            try:
                data = sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            self.received += data

    def count(self, text: str) -> int:
        return self.received.count(text.encode())


@pytest.mark.parametrize("event,sockets", [("track_message", 1), ("track_message", 4),
                                           ("subscribe_analytics", 1),
                                           ("subscribe_analytics", 4)])
def test_expensive_events_at_the_allowed_rate_do_not_slow_other_clients(metered_hub, event,
                                                                         sockets):
    heavy, calm_user = register_user(metered_hub), register_user(metered_hub)
    # The heavy user has sent a thousand recipients today: figures read their hourly series.
    message_id = _message_of_a_thousand(metered_hub, heavy)
    argument = message_id if event == "track_message" else None
    calm = RecordingClient(metered_hub.url)
    calm.connect(token=calm_user.token)
    with AckProbe(calm, interval=ACK_INTERVAL) as baseline:
        eventually(lambda: len(baseline.latencies) >= 30, timeout=30)
    # Slightly under the event rate: the socket's own bucket never refuses, only the budget does.
    hammers = [Hammer(metered_hub, heavy.token, event, argument, rate=19)
               for _ in range(sockets)]
    stop = threading.Event()
    rss_before = rss_kb(metered_hub.process.pid)
    with AckProbe(calm, interval=ACK_INTERVAL) as during:
        threads = [threading.Thread(target=hammer.run, args=(stop,)) for hammer in hammers]
        for thread in threads:
            thread.start()
        time.sleep(HAMMER_SECONDS)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert_acks_stay_flat(baseline, during)
    assert rss_kb(metered_hub.process.pid) - rss_before < 10 * 1024
    assert calm.call("get_rooms") == [f"user:{calm_user.id}"]
    calm.close()
    sent = sum(hammer.sent for hammer in hammers)
    refused = sum(hammer.count('"rate_limited"') for hammer in hammers)
    snapshot = "recipient_update" if event == "track_message" else "analytics_update"
    assert sum(hammer.count(snapshot) for hammer in hammers) > 0, "the user got no snapshot"
    assert refused > sent / 2, f"only {refused} of {sent} expensive events were refused"


def test_a_refused_snapshot_has_the_error_shape_and_the_budget_refills(metered_hub):
    user = register_user(metered_hub)
    message_id = _message_of_a_thousand(metered_hub, user)
    client = RecordingClient(metered_hub.url)
    client.connect(token=user.token)
    started = time.monotonic()
    answers = [client.call("track_message", message_id) for _ in range(5)]
    refilled = (time.monotonic() - started) * int(LIMITS["SNAPSHOT_RATE"])
    accepted = [answer for answer in answers if answer["ok"]]
    # The burst admits snapshots while any of it is left (the second overdraws it),
    # then one more per 1,000 rows refilled while the calls ran.
    assert 1 <= len(accepted) <= 2 + refilled // 1000, answers
    assert accepted[0]["snapshotRecipients"] == 1000
    assert answers[-1] == {"ok": False, "error": {"code": "rate_limited",
                                                  "message": "Too many snapshots: slow down"}}
    assert client.call("subscribe_analytics")["ok"] is False  # one budget for every snapshot
    eventually(lambda: client.call("subscribe_analytics")["ok"], timeout=10, interval=0.5)
    client.close()
