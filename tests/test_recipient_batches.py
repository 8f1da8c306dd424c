"""Batched tracking: ``recipient_updates`` batches, and resuming with ``sinceVersion``."""

import time

import pytest

from tests.support import RecordingClient, eventually, register_user

PHONES = [f"+1555333{i:04d}" for i in range(300)] + ["+15005550001", "+15005550009"]


def _send(server, user, phones):
    response = server.api.post("/api/messages", user.token,
                               json={"body": "batched", "recipients": phones})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _settled(server, user, message_id):
    """The message once every recipient is DELIVERED or FAILED, as REST has it."""
    def done():
        message = server.api.get(f"/api/messages/{message_id}", user.token).json()
        return message if message["status"] != "SENDING" and \
            message["deliveredCount"] + message["failedCount"] == message["recipientCount"] \
            else None
    return eventually(done, timeout=60)


def _latest(states):
    best = {}
    for state in states:
        known = best.get(state["recipientId"])
        if known is None or state["version"] > known["version"]:
            best[state["recipientId"]] = state
    return best


def _batched_states(client):
    return [state for batch in client.received("recipient_updates")
            for state in batch["updates"]]


def _final_view(states):
    return {rid: (s["status"], s["version"], s.get("errorCode")) for rid, s in
            _latest(states).items()}


def _settled_in(client, count):
    def check():
        latest = _latest(_batched_states(client))
        return len(latest) == count and all(s["status"] in ("DELIVERED", "FAILED")
                                            for s in latest.values())
    eventually(check, timeout=30)


def _client(server, user):
    client = RecordingClient(server.url)
    client.connect(token=user.token)
    return client


def test_a_batched_tracker_ends_with_what_a_per_recipient_tracker_sees(hub, make_user, connect):
    user = make_user()
    message_id = _send(hub, user, PHONES)
    each, batched = connect(user.token), connect(user.token)
    assert each.call("track_message", message_id)["ok"] is True
    ack = batched.call("track_message", {"messageId": message_id, "batch": True})
    assert ack["ok"] is True and ack["resumed"] is False
    assert ack["snapshotRecipients"] == len(PHONES)
    _settled(hub, user, message_id)
    _settled_in(batched, len(PHONES))
    eventually(lambda: len(_latest(each.received("recipient_update"))) == len(PHONES) and all(
        u["status"] in ("DELIVERED", "FAILED")
        for u in _latest(each.received("recipient_update")).values()), timeout=30)

    assert _final_view(_batched_states(batched)) == _final_view(each.received("recipient_update"))
    assert not batched.received("recipient_update")
    batches = batched.received("recipient_updates")
    assert all(b["messageId"] == message_id for b in batches)
    for batch in batches:
        ids = [state["recipientId"] for state in batch["updates"]]
        assert len(ids) == len(set(ids)), "a recipient twice in one batch"
    live = [b["version"] for b in batches if b["version"] != ack["version"]]
    assert live == sorted(live) and len(set(live)) == len(live), "batch versions must rise"
    statuses: dict[tuple[str, int], str] = {}
    for state in _batched_states(batched):
        key = (state["recipientId"], state["version"])
        assert statuses.setdefault(key, state["status"]) == state["status"], \
            f"version {key} with two statuses"
    assert len(batches) * 10 < len(each.received("recipient_update"))
    assert batched.received("message_update")[-1]["status"] == "SENT"


def test_batches_are_an_interval_apart_and_the_first_change_goes_at_once(hub_factory):
    server = hub_factory(env={"RECIPIENT_BATCH_INTERVAL": "2.0",
                              "SIMULATED_RECEIPT_DELAY": "5.0"})
    user = register_user(server)
    message_id = _send(server, user, PHONES)
    tracker = _client(server, user)
    try:
        ack = tracker.call("track_message", {"messageId": message_id, "batch": True})
        _settled(server, user, message_id)
        _settled_in(tracker, len(PHONES))
    finally:
        tracker.close()
    live = [b["version"] for b in tracker.received("recipient_updates")
            if b["version"] != ack["version"]]
    assert len(live) >= 2
    assert all(later - earlier >= 1990 for earlier, later in zip(live, live[1:], strict=False))
    # The receipts come 5 s after the sends, when no batch went out for over an interval:
    # the first of them is sent as it is recorded, not an interval (2 s) later.
    page = server.api.get(f"/api/messages/{message_id}/recipients?status=DELIVERED&limit=100",
                          user.token).json()["recipients"]
    first_delivery = min(_millis(r["deliveredAt"]) for r in page)
    first_delivered_batch = min(b["version"] for b in tracker.received("recipient_updates")
                                if any(s["status"] == "DELIVERED" for s in b["updates"]))
    assert 0 <= first_delivered_batch - first_delivery < 1000


def _millis(iso):
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.fixture
def resumable(hub_factory):
    """A hub whose receipts come 5 s after the sends and whose resumes overlap by 0.5 s."""
    return hub_factory(env={"SIMULATED_RECEIPT_DELAY": "5.0", "RECIPIENT_RESUME_OVERLAP": "0.5"})


def test_a_tracker_that_resumes_gets_only_what_changed_since(resumable):
    user = register_user(resumable)
    phones = [f"+1555666{i:04d}" for i in range(40)] + ["+15005550001"]
    message_id = _send(resumable, user, phones)
    first = _client(resumable, user)
    try:
        ack = first.call("track_message", {"messageId": message_id, "batch": True})
        eventually(lambda: all(s["status"] in ("SENT", "FAILED") for s in
                               _latest(_batched_states(first)).values())
                   and len(_latest(_batched_states(first))) == len(phones), timeout=20)
        # Past the overlap: the sends are older than the version resumed from below.
        time.sleep(1.0)
        again = first.call("track_message", {"messageId": message_id, "batch": True,
                                             "sinceVersion": ack["version"]})
        assert again["resumed"] is True
        last_version = again["version"]
    finally:
        first.close()
    _settled(resumable, user, message_id)
    held = _latest(_batched_states(first))

    second = _client(resumable, user)
    try:
        resumed = second.call("track_message", {"messageId": message_id, "batch": True,
                                                "sinceVersion": last_version})
        second.call("get_rooms")
    finally:
        second.close()
    assert resumed["ok"] is True and resumed["resumed"] is True
    caught_up = _batched_states(second)
    assert resumed["snapshotRecipients"] == len(caught_up) == len(phones) - 1
    assert {s["status"] for s in caught_up} == {"DELIVERED"}
    held.update(_latest(caught_up))
    assert sorted(s["status"] for s in held.values()) == ["DELIVERED"] * 40 + ["FAILED"]

    # From a version more than the overlap after the last change: nothing to send.
    time.sleep(1.0)
    third = _client(resumable, user)
    try:
        nothing = third.call("track_message", {"messageId": message_id, "batch": True,
                                               "sinceVersion": resumed["version"] + 600})
        third.call("get_rooms")
    finally:
        third.close()
    assert nothing["resumed"] is True and nothing["snapshotRecipients"] == 0
    assert not third.received("recipient_updates")


@pytest.mark.parametrize("since", [0, 2**53])
def test_a_version_it_cannot_resume_from_gets_the_full_snapshot(hub, make_user, connect, since):
    user = make_user()
    message_id = _send(hub, user, PHONES[:5])
    tracker = connect(user.token)
    ack = tracker.call("track_message", {"messageId": message_id, "batch": True,
                                         "sinceVersion": since})
    assert ack["ok"] is True and ack["resumed"] is False and ack["snapshotRecipients"] == 5
    snapshot = tracker.wait_for("recipient_updates", lambda b: b["version"] == ack["version"])
    assert len(snapshot["updates"]) == 5


@pytest.mark.parametrize("malformed", [{"sinceVersion": 5}, {"batch": "yes"},
                                       {"batch": True, "sinceVersion": -1},
                                       {"batch": True, "sinceVersion": "5"}, {"extra": 1}])
def test_track_message_takes_an_object_and_refuses_a_malformed_one(hub, make_user, connect,
                                                                   malformed):
    user = make_user()
    message_id = _send(hub, user, PHONES[:1])
    client = connect(user.token)
    assert client.call("track_message", {"messageId": message_id, "batch": False})["ok"] is True
    answer = client.call("track_message", {"messageId": message_id, **malformed})
    assert answer["ok"] is False and answer["error"]["code"] == "invalid_payload", answer
    assert client.call("track_message", {"batch": True})["error"]["code"] == "invalid_payload"


def test_a_batched_snapshot_of_ten_thousand_recipients_comes_in_batches_of_a_thousand(
        hub_factory):
    server = hub_factory(env={"SMS_PROVIDER": "simulated", "SIMULATED_SMS_LATENCY": "5"})
    user = register_user(server)
    message_id = _send(server, user, [f"+1555{i:07d}" for i in range(10_000)])
    tracker = _client(server, user)
    try:
        ack = tracker.call("track_message", {"messageId": message_id, "batch": True})
        snapshot = [b for b in tracker.received("recipient_updates")
                    if b["version"] == ack["version"]]
    finally:
        tracker.close()
    assert ack["snapshotRecipients"] == 10_000 and ack["truncated"] is False
    assert [len(b["updates"]) for b in snapshot] == [1000] * 10
    assert len({s["recipientId"] for b in snapshot for s in b["updates"]}) == 10_000


def test_changes_noted_out_of_order_keep_each_recipients_newest(tmp_path, monkeypatch):
    """Greenlets may note their commits out of order: a batch carries each recipient's
    highest version, and changes of a message nobody tracks in batches are not kept."""
    from collections import namedtuple

    from extensions import socketio
    from services.messaging.recipient_batches import RecipientBatches
    from services.realtime import emitter, rooms
    from tests.support import app_on

    row = namedtuple("Row", "id message_id phone status version provider_status "
                            "provider_error_code parts retryable error_message error_code")

    def change(recipient_id, version, status, message_id=7):
        return row(recipient_id, message_id, f"+1555000{recipient_id:04d}", status, version,
                   None, None, 1, False, None, None)

    sent = []
    with app_on(f"sqlite:///{tmp_path / 'hub.db'}"):
        monkeypatch.setattr(emitter, "emit_to_room",
                            lambda room, *, event, payload: sent.append((room, payload)))
        socketio.server.manager.enter_room("tracker", emitter.NAMESPACE,
                                           rooms.recipient_batch_room(7), eio_sid="tracker")
        batches = RecipientBatches(interval=3600)
        batches.note([change(1, 2, "SENDING"), change(2, 2, "SENDING")], {7})
        batches.note([change(1, 4, "DELIVERED"), change(9, 2, "SENDING", message_id=8)], {7, 8})
        batches.note([change(1, 3, "SENT"), change(2, 3, "SENT")], {7})
        batches.last_sent.clear()
        batches.flush(7)

    assert [room for room, _ in sent] == [rooms.recipient_batch_room(7)] * 2
    first, second = (payload["updates"] for _, payload in sent)
    assert [(u["recipientId"], u["version"]) for u in first] == [("1", 2), ("2", 2)]
    assert {u["recipientId"]: (u["status"], u["version"]) for u in second} == {
        "1": ("DELIVERED", 4), "2": ("SENT", 3)}
    assert 8 not in batches.pending
