"""Batched trackers of one message sharing its snapshot (``services.messaging.shared_snapshots``).

In process on a real database (both backends), the recipients moved by the
send queue's own statements and by erasure between two snapshots; each
snapshot's batches are encoded as the hub sends them (``PacketJson``) and
read back as a client would, keeping each recipient's highest version.
End to end, two batched trackers of a live hub end with the database's
picture of the message, and so do trackers whose node lost its message-queue
listener for a while (``tracking.catch_up``).
"""

import orjson
import pytest
import redis
from sqlalchemy import select

from extensions import db
from models import Recipient
from services.messaging import erasure, messages, payloads, queue, shared_snapshots
from services.messaging.providers import Outcome, ProviderReceipt, SubmitResult
from services.transport.packets import PacketJson
from tests.support import (
    REDIS_URL,
    RecordingClient,
    eventually,
    register_user,
)

ADMIN_ID = 1
PHONES = [f"+1555710{i:04d}" for i in range(2_500)]


@pytest.fixture(autouse=True)
def nothing_kept():
    shared_snapshots._kept.clear()
    yield
    shared_snapshots._kept.clear()


@pytest.fixture
def built_rows(monkeypatch):
    """How many recipient states ``snapshot_states`` built, call by call."""
    counts: list[int] = []
    build = payloads.snapshot_states

    def counting(rows):
        states = build(rows)
        counts.append(len(states))
        return states

    monkeypatch.setattr(shared_snapshots, "snapshot_states", counting)
    return counts


def _create(phones: list[str]) -> int:
    return int(messages.create(ADMIN_ID, body="shared",
                               recipients=messages.read_recipients(phones))["id"])


def _wire(batches: list[dict]) -> list[dict]:
    """The batches as a client decodes them."""
    return [orjson.loads(PacketJson.dumps(batch)) for batch in batches]


def _picture(batches: list[dict]) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for batch in _wire(batches):
        for state in batch["updates"]:
            known = best.get(state["recipientId"])
            if known is None or state["version"] > known["version"]:
                best[state["recipientId"]] = state
    return best


def _stored(message_id: int) -> dict[str, dict]:
    db.session.expire_all()
    rows = db.session.execute(
        select(*(Recipient.__table__.c[name] for name in payloads.SNAPSHOT_FIELDS))
        .where(Recipient.message_id == message_id)).all()
    return {state["recipientId"]: state for state in payloads.snapshot_states(rows)}


def _accepted(row) -> tuple:
    return row, SubmitResult(Outcome.ACCEPTED, provider_message_id=f"sim-{row.id}")


def test_a_second_snapshot_shares_the_first_and_ends_with_the_database(queue_app, built_rows):
    message_id = _create(PHONES)
    first, covered = shared_snapshots.full_snapshot(message_id, version=1_000)
    assert covered == len(PHONES) and built_rows == [1000, 1000, 500]
    assert _picture(first) == _stored(message_id)

    claimed = queue.claim_batch("node-a", 300)
    queue.record_outcomes("node-a", [_accepted(row) for row in claimed[:200]])
    queue.apply_receipts([ProviderReceipt(f"sim-{row.id}", "DELIVERED") for row in claimed[:50]])
    built_rows.clear()

    second, covered = shared_snapshots.full_snapshot(message_id, version=2_000)
    assert covered == len(PHONES)
    assert built_rows == [300], "only the changed recipients are built again"
    assert all(shared is kept for shared, kept in zip(second, first, strict=False))
    assert [b["version"] for b in _wire(second)] == [1_000] * 3 + [2_000]
    assert _picture(second) == _stored(message_id)
    assert {s["status"] for s in _picture(second).values()} == {
        "PENDING", "SENDING", "SENT", "DELIVERED"}


def test_a_number_erased_after_a_snapshot_is_never_sent_again(queue_app):
    message_id = _create(PHONES[:1500])
    erased = PHONES[1200]
    first, _ = shared_snapshots.full_snapshot(message_id, version=1_000)
    assert erased in PacketJson.dumps(first)

    replacement = erasure.erase_phone(erased)["phone"]

    second, _ = shared_snapshots.full_snapshot(message_id, version=2_000)
    encoded = PacketJson.dumps(second)
    assert erased not in encoded and replacement in encoded
    assert _picture(second) == _stored(message_id)


def test_a_snapshot_is_built_afresh_once_half_the_recipients_changed_or_it_is_old(
        queue_app, built_rows, monkeypatch):
    message_id = _create(PHONES[:1000])
    shared_snapshots.full_snapshot(message_id, version=1_000)
    queue.claim_batch("node-a", 501)
    built_rows.clear()
    second, _ = shared_snapshots.full_snapshot(message_id, version=2_000)
    assert built_rows == [1000] and [b["version"] for b in second] == [2_000]
    assert _picture(second) == _stored(message_id)

    built_rows.clear()
    monkeypatch.setattr(shared_snapshots, "SHARED_SECONDS", 0.0)
    shared_snapshots.full_snapshot(message_id, version=3_000)
    assert built_rows == [1000]


def test_only_the_last_few_messages_are_kept(queue_app):
    ids = [_create([phone]) for phone in PHONES[:shared_snapshots.SHARED_MESSAGES + 1]]
    for message_id in ids:
        shared_snapshots.full_snapshot(message_id, version=1_000)
    assert [message_id for _, message_id in shared_snapshots._kept] == ids[1:]


def _send(server, user, phones):
    response = server.api.post("/api/messages", user.token,
                               json={"body": "shared", "recipients": phones})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _latest(client) -> dict[str, tuple]:
    best: dict[str, dict] = {}
    for batch in client.received("recipient_updates"):
        for state in batch["updates"]:
            known = best.get(state["recipientId"])
            if known is None or state["version"] > known["version"]:
                best[state["recipientId"]] = state
    return {rid: (s["phone"], s["status"], s["version"]) for rid, s in best.items()}


def _listed(server, user, message_id) -> dict[str, tuple]:
    page = server.api.get(f"/api/messages/{message_id}/recipients?limit=1000",
                          user.token).json()["recipients"]
    return {r["recipientId"]: (r["phone"], r["status"], r["version"]) for r in page}


def _seen(client, phone: str) -> bool:
    return any(state["phone"] == phone for batch in client.received("recipient_updates")
               for state in batch["updates"])


def test_trackers_on_two_nodes_end_with_the_database_and_never_see_an_erased_number(
        hub_factory):
    """A's kept snapshot is older than the changes B makes and than B's erasure."""
    a, b = hub_factory.nodes(2, env={"DISPATCH_BATCH_SIZE": "20", "DISPATCH_CONCURRENCY": "5",
                                     "SIMULATED_RECEIPT_DELAY": "1.0"})
    user, admin = register_user(a), register_user(b, admin=True)
    phones = [f"+1555720{i:04d}" for i in range(400)]
    erased = phones[-1]
    message_id = _send(a, user, phones)
    trackers = []
    try:
        for _ in range(3):
            trackers.append(RecordingClient(a.url))
            trackers[-1].connect(token=user.token)
        first, second, third = trackers
        assert first.call("track_message", {"messageId": message_id, "batch": True})["ok"]
        eventually(lambda: sum(s[1] != "PENDING" for s in _latest(first).values()) >= 20,
                   timeout=20)
        assert second.call("track_message", {"messageId": message_id, "batch": True})["ok"]
        response = b.api.request("DELETE", f"/api/phones/{erased}", admin.token)
        assert response.status_code == 200 and response.json()["recipients"] == 1
        ack = third.call("track_message", {"messageId": message_id, "batch": True})
        assert ack["ok"] is True and ack["snapshotRecipients"] == len(phones)
        assert _seen(first, erased) and not _seen(third, erased)

        def settled():
            seen = _latest(third)
            return len(seen) == len(phones) and all(
                s[1] in ("DELIVERED", "FAILED", "SUPPRESSED", "CANCELED")
                for s in seen.values())
        eventually(settled, timeout=60)
        for tracker in (second, third):
            eventually(lambda t=tracker: _latest(t) == _listed(a, user, message_id), timeout=10)
        assert not _seen(third, erased)
    finally:
        for tracker in trackers:
            tracker.close()


def _latest_each(client) -> dict[str, tuple]:
    """A per-recipient tracker's picture: each recipient's ``recipient_update`` of the highest
    version."""
    best: dict[str, dict] = {}
    for state in client.received("recipient_update"):
        known = best.get(state["recipientId"])
        if known is None or state["version"] > known["version"]:
            best[state["recipientId"]] = state
    return {rid: (s["phone"], s["status"], s["version"]) for rid, s in best.items()}


def _last_update(client) -> dict:
    return max(client.received("message_update"), key=lambda update: update["version"])


def test_trackers_catch_up_on_what_the_queue_lost_while_their_nodes_listener_was_away(
        hub_factory):
    """Node A's queue listener is killed twice during the send (B posts it, both send):
    emits to A's rooms are lost until it is back, a second later each time. Then A sends
    its sockets what changed since the last message it heard, and the notification B made
    in the first gap."""
    a, b = hub_factory.nodes(2, env={"DISPATCH_BATCH_SIZE": "20", "DISPATCH_CONCURRENCY": "5",
                                     "SIMULATED_RECEIPT_DELAY": "1.0"})
    user, admin = register_user(a), register_user(b, admin=True)
    phones = [f"+1555730{i:04d}" for i in range(400)]
    message_id = _send(b, user, phones)
    batched, each, owner = (RecordingClient(a.url) for _ in range(3))
    redis_client = redis.Redis.from_url(REDIS_URL)
    try:
        for client in (batched, each, owner):
            client.connect(token=user.token)
        assert batched.call("track_message", {"messageId": message_id, "batch": True})["ok"]
        assert each.call("track_message", message_id)["ok"]
        for gap in (1, 2):
            eventually(lambda gap=gap: sum(s[1] != "PENDING" for s in _latest(batched).values())
                       >= 20 * gap, timeout=20)
            [listener] = [c for c in redis_client.client_list(_type="pubsub")
                          if c["name"] == f"hub:{a.channel}:node-a"]
            assert redis_client.client_kill_filter(_id=listener["id"]) == 1
            if gap == 1:
                assert b.api.post(f"/api/socket/notify/{user.id}", admin.token, json={
                    "title": "in the gap", "message": "m"}).status_code == 201
            eventually(lambda gap=gap: a.log_text().count("caught up on") == gap, timeout=10)

        def settled():
            message = a.api.get(f"/api/messages/{message_id}", user.token).json()
            return message if message["status"] != "SENDING" and message["deliveredCount"] \
                + message["failedCount"] == message["recipientCount"] else None
        final = eventually(settled, timeout=60)
        listed = _listed(a, user, message_id)
        eventually(lambda: _latest(batched) == listed, timeout=10)
        eventually(lambda: _latest_each(each) == listed, timeout=10)
        for client in (batched, each, owner):
            eventually(lambda client=client: _last_update(client)["version"] == final["version"],
                       timeout=10)
            assert _last_update(client)["statusCounts"] == final["statusCounts"]
        # Sent again after the second gap too: it is within the overlap.
        in_the_gap = [n for n in owner.received("notification") if n["title"] == "in the gap"]
        assert in_the_gap and {n["id"] for n in in_the_gap} == {in_the_gap[0]["id"]}
        assert in_the_gap[0]["read"] is False and in_the_gap[0]["unreadCount"] >= 1
    finally:
        for client in (batched, each, owner):
            client.close()
        redis_client.close()
