"""The messaging core end to end: send, watch recipient by recipient, receipts, tracking."""

import hashlib
import hmac
import json
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import WEBHOOK_SECRET, eventually, sent_phones, sql_scalar

PRICE = 0.0075
THREE = ["+15551230001", "+15005550001", "+1 555 123 0002"]


def _send(api, user, recipients=THREE, body="Hello there", headers=None):
    return api.post("/api/messages", user.token, json={"body": body, "recipients": recipients},
                    headers=headers)


def _final_message(api, user, message_id):
    def done():
        message = api.get(f"/api/messages/{message_id}", user.token).json()
        return message if message["status"] != "SENDING" else None
    return eventually(done, timeout=10)


def _hmac_sha256(raw, secret=WEBHOOK_SECRET):
    """The spec's signature, computed here rather than by the hub's own code."""
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def _webhook(api, payload, secret=WEBHOOK_SECRET, signature=None):
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json",
               "X-Signature": signature if signature is not None else _hmac_sha256(raw, secret)}
    return api.post("/api/webhooks/delivery", data=raw, headers=headers)


def _latest_by_recipient(updates):
    """Each recipient's ``recipient_update`` with the highest version."""
    best = {}
    for update in updates:
        known = best.get(update["recipientId"])
        if known is None or update["version"] > known["version"]:
            best[update["recipientId"]] = update
    return best


def test_message_to_three_numbers_is_watched_recipient_by_recipient(api, user, connect):
    owner_socket = connect(user.token)
    response = _send(api, user)
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "SENDING" and accepted["recipientCount"] == 3
    assert accepted["segments"] == 1 and accepted["encoding"] == "GSM-7"
    message_id = accepted["id"]
    tracker = connect(user.token)
    assert tracker.call("track_message", message_id)["ok"] is True

    final = owner_socket.wait_for("message_update", lambda m: m["status"] != "SENDING")
    assert final == {"messageId": message_id, "status": "SENT", "successCount": 2,
                     "failedCount": 1, "deliveredCount": final["deliveredCount"],
                     "recipientCount": 3, "cost": pytest.approx(2 * PRICE),
                     "statusCounts": final["statusCounts"], "version": final["version"]}
    counts = final["statusCounts"]
    assert counts["FAILED"] == 1 and counts.get("SENT", 0) + counts.get("DELIVERED", 0) == 2

    def final_states():
        best = _latest_by_recipient(tracker.received("recipient_update"))
        return len(best) == 3 and all(
            u["status"] in ("DELIVERED", "FAILED") for u in best.values()) and best
    states = eventually(final_states, timeout=10)
    by_phone = {u["phone"]: u for u in states.values()}
    assert by_phone["+15551230001"]["status"] == "DELIVERED"
    assert by_phone["+15551230002"]["status"] == "DELIVERED"
    failed = by_phone["+15005550001"]
    assert failed["status"] == "FAILED" and failed["errorCode"] == "invalid_number"
    assert failed["errorMessage"] == "Invalid phone number"

    note = owner_socket.wait_for("notification", lambda n: n["type"] == "message_sent")
    assert note["data"]["messageId"] == message_id
    stored = _final_message(api, user, message_id)
    assert stored["cost"] == pytest.approx(2 * PRICE) and stored["completedAt"].endswith("Z")
    owner_socket.call("get_rooms")  # round trip: anything in flight has arrived
    assert owner_socket.received("recipient_update") == [], "only trackers get recipients"


def test_all_refused_message_ends_failed_and_costs_nothing(api, user, connect):
    client = connect(user.token)
    message_id = _send(api, user, ["+15005550001", "+15005550009"]).json()["id"]
    final = _final_message(api, user, message_id)
    assert final["status"] == "FAILED" and final["failedCount"] == 2 and final["cost"] == 0
    update = client.wait_for("message_update", lambda m: m["status"] != "SENDING")
    assert update == {"messageId": message_id, "status": "FAILED", "successCount": 0,
                      "failedCount": 2, "deliveredCount": 0, "recipientCount": 2, "cost": 0,
                      "statusCounts": {"FAILED": 2}, "version": final["version"]}
    note = client.wait_for("notification", lambda n: n["type"] == "message_failed")
    assert note["data"]["messageId"] == message_id
    recipients = api.get(f"/api/messages/{message_id}/recipients", user.token).json()
    codes = {r["phone"]: r["errorCode"] for r in recipients["recipients"]}
    assert codes == {"+15005550001": "invalid_number", "+15005550009": "unroutable"}


def test_late_tracker_gets_the_final_state(api, user, connect):
    message_id = _send(api, user).json()["id"]
    final = _final_message(api, user, message_id)
    eventually(lambda: api.get(f"/api/messages/{message_id}", user.token).json()
               ["deliveredCount"] == 2)
    tracker = connect(user.token)
    ack = tracker.call("track_message", message_id)
    assert ack == {"ok": True, "messageId": message_id, "status": final["status"],
                   "recipientCount": 3, "snapshotRecipients": 3, "truncated": False,
                   "nextCursor": None}
    update = tracker.wait_for("message_update")
    assert update["status"] == "SENT" and update["deliveredCount"] == 2
    tracker.call("get_rooms")
    statuses = sorted(u["status"] for u in tracker.received("recipient_update"))
    assert statuses == ["DELIVERED", "DELIVERED", "FAILED"]
    assert f"message:{message_id}" in tracker.call("get_rooms")
    assert tracker.call("untrack_message", message_id) == {"ok": True, "messageId": message_id}
    assert f"message:{message_id}" not in tracker.call("get_rooms")


def test_another_user_cannot_track_or_read_a_message(api, make_user, admin, connect):
    owner, other = make_user(), make_user()
    message_id = _send(api, owner).json()["id"]
    other_socket = connect(other.token)
    expected = {"ok": False, "error": {"code": "not_found", "message": "Message not found"}}
    assert other_socket.call("track_message", message_id) == expected
    assert other_socket.call("track_message", "987654321") == expected
    assert other_socket.call("join_room", f"message:{message_id}")["error"]["code"] == \
        "forbidden"
    for path in (f"/api/messages/{message_id}", f"/api/messages/{message_id}/recipients"):
        hidden = api.get(path, other.token)
        assert hidden.status_code == 404
        assert hidden.json() == {"error": {"code": "not_found", "message": "Message not found"}}
    other_socket.call("get_rooms")
    assert other_socket.received("recipient_update") == []
    admin_socket = connect(admin.token)
    assert admin_socket.call("track_message", message_id)["ok"] is True
    owner_socket = connect(owner.token)
    assert owner_socket.call("join_room", f"message:{message_id}")["ok"] is True


@pytest.mark.parametrize(("body", "field"), [
    ({"body": "hi", "recipients": []}, "recipients"),
    ({"body": "", "recipients": ["+15551234567"]}, "body"),
    ({"body": "hi"}, "recipients"),
    ({"body": "hi", "recipients": "+15551234567"}, "recipients"),
    ({"body": "x" * 1601, "recipients": ["+15551234567"]}, "body"),
    ({"body": "hi", "recipients": ["+15551234567"] * 10001}, "recipients"),
])
def test_invalid_message_bodies_are_400(api, user, body, field):
    response = api.post("/api/messages", user.token, json=body)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_invalid_numbers_are_named_and_nothing_is_stored(api, user):
    before = api.get("/api/messages", user.token).json()["messages"]
    response = _send(api, user, ["+15551234567", "12345", "+1555abc", "+15551234568"])
    assert response.status_code == 400
    details = response.json()["error"]["details"]["recipients"]
    assert [(d["index"], d["value"]) for d in details] == [(1, "12345"), (2, "+1555abc")]
    assert api.get("/api/messages", user.token).json()["messages"] == before


def test_duplicates_are_removed(api, user):
    response = _send(api, user, ["+15551234567", "+1 555 123 4567", "+15551234567"])
    assert response.status_code == 202
    assert response.json()["recipientCount"] == 1 and response.json()["duplicatesRemoved"] == 2


def test_unicode_body_segments_and_cost(api, user):
    body = "Olá 😀 " * 12
    accepted = _send(api, user, ["+15551239999"], body=body).json()
    assert accepted["encoding"] == "UCS-2" and accepted["segments"] == 2
    final = _final_message(api, user, accepted["id"])
    assert final["cost"] == pytest.approx(2 * PRICE)


def test_messages_list_and_recipients_are_paged(api, user):
    ids = [_send(api, user, [f"+1555000{i:04d}" for i in range(5)]).json()["id"]
           for _ in range(3)]
    page = api.get("/api/messages?limit=2", user.token).json()
    assert [m["id"] for m in page["messages"]] == [ids[2], ids[1]]
    rest = api.get(f"/api/messages?limit=2&before={page['nextCursor']}", user.token).json()
    assert [m["id"] for m in rest["messages"]] == [ids[0]]
    first = api.get(f"/api/messages/{ids[0]}/recipients?limit=3", user.token).json()
    second = api.get(f"/api/messages/{ids[0]}/recipients?limit=3&after={first['nextCursor']}",
                     user.token).json()
    phones = [r["phone"] for r in first["recipients"] + second["recipients"]]
    assert phones == [f"+1555000{i:04d}" for i in range(5)]
    assert api.get("/api/messages?limit=0", user.token).status_code == 400


def test_idempotency_key_sends_a_message_once(api, user):
    headers = {"Idempotency-Key": f"msg-{user.id}"}
    first = _send(api, user, headers=headers)
    second = _send(api, user, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert len(api.get("/api/messages", user.token).json()["messages"]) == 1


def test_twenty_concurrent_retries_with_one_key_store_and_send_one_message(hub, api, user):
    """Every retry lands at once; the key's first request owns it, the others replay it."""
    tag = uuid.uuid4().int % 10_000_000
    phones = [f"+1556{tag:07d}", f"+1557{tag:07d}"]
    headers = {"Authorization": f"Bearer {user.token}", "Idempotency-Key": f"race-{tag}"}
    start = threading.Barrier(20)

    def retry(_):
        with requests.Session() as session:
            start.wait()
            return session.post(hub.url + "/api/messages", headers=headers, timeout=30,
                                json={"body": "only once", "recipients": phones})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(retry, range(20)))
    assert Counter(a.status_code for a in answers) == {202: 20}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    stored = sql_scalar(hub.database_url, "SELECT count(*) FROM messages WHERE user_id = :u",
                        u=user.id)
    assert stored == 1
    _final_message(api, user, answers[0].json()["id"])
    assert sorted(p for p in sent_phones(hub.send_log) if p in phones) == sorted(phones)


def test_owner_gets_coalesced_message_updates_and_the_final_one(api, user, connect):
    client = connect(user.token)
    phones = [f"+1555111{i:04d}" for i in range(300)]
    message_id = _send(api, user, phones).json()["id"]
    final = client.wait_for("message_update",
                            lambda m: m["messageId"] == message_id and m["status"] == "SENT",
                            timeout=20)
    assert final["successCount"] == 300 and final["cost"] == pytest.approx(300 * PRICE)
    updates = [m for m in client.received("message_update") if m["messageId"] == message_id]
    assert len(updates) <= 30, f"{len(updates)} message_update events for one message"
    versions = [m["version"] for m in updates]
    assert max(versions) == final["version"]


def test_signed_receipts_are_applied_once_and_never_backwards(api, user, connect):
    message_id = _send(api, user, ["+15551237777"]).json()["id"]
    eventually(lambda: api.get(f"/api/messages/{message_id}", user.token).json()
               ["deliveredCount"] == 1)
    recipient = api.get(f"/api/messages/{message_id}/recipients", user.token).json()[
        "recipients"][0]
    tracker = connect(user.token)
    tracker.call("track_message", message_id)
    receipt = {"providerMessageId": recipient["providerMessageId"], "status": "DELIVERED"}
    repeated = _webhook(api, receipt)
    assert repeated.status_code == 200
    assert repeated.json() == {"received": 1, "applied": 0, "unknown": 0}
    backwards = _webhook(api, {**receipt, "status": "SENT"})
    assert backwards.json()["applied"] == 0
    late_failure = _webhook(api, {**receipt, "status": "FAILED", "errorCode": "x"})
    assert late_failure.json()["applied"] == 0
    after = api.get(f"/api/messages/{message_id}/recipients", user.token).json()["recipients"]
    assert after[0]["status"] == "DELIVERED" and after[0]["version"] == recipient["version"]


def test_badly_signed_or_malformed_webhooks_are_refused(api):
    receipt = {"providerMessageId": "sim_x", "status": "DELIVERED"}
    assert _webhook(api, receipt, secret="wrong").status_code == 401
    assert _webhook(api, receipt, signature="").status_code == 401
    unsigned = api.post("/api/webhooks/delivery", json=receipt)
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "unauthenticated"
    bad = _webhook(api, {"providerMessageId": "sim_x", "status": "EXPLODED"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_payload"
    unknown = _webhook(api, receipt)
    assert unknown.status_code == 200
    assert unknown.json() == {"received": 1, "applied": 0, "unknown": 1}


@pytest.mark.parametrize("signature", [b"\xff\xfe", "é".encode(), b"sha256=\xc3\xa9" * 20,
                                       b"\x80" * 64])
def test_webhook_signature_with_non_ascii_bytes_is_401_json(api, signature):
    response = api.post("/api/webhooks/delivery", data=b'{"providerMessageId": "x"}',
                        headers={"Content-Type": "application/json", "X-Signature": signature})
    assert response.status_code == 401
    assert response.json()["error"] == {"code": "unauthenticated",
                                        "message": "Invalid webhook signature"}


@pytest.mark.parametrize("payload", [None, "abc", -1, 0, 1.5, [], {"id": 1}, True])
def test_track_message_rejects_invalid_ids(connect, user, payload):
    client = connect(user.token)
    answer = client.call("track_message", payload)
    assert answer["ok"] is False and answer["error"]["code"] == "invalid_payload"


def test_a_tracker_keeps_up_with_a_large_message(api, user, connect):
    phones = [f"+1555444{i:04d}" for i in range(1500)]
    message_id = _send(api, user, phones).json()["id"]
    tracker = connect(user.token)
    ack = tracker.call("track_message", message_id)
    assert ack["snapshotRecipients"] == 1000 and ack["truncated"] is True
    final = tracker.wait_for("message_update",
                             lambda m: m["status"] == "SENT" and m["deliveredCount"] == 1500,
                             timeout=60)
    assert final["successCount"] == 1500
    assert tracker.sio.connected
    delivered = {u["recipientId"] for u in tracker.received("recipient_update")
                 if u["status"] == "DELIVERED"}
    assert len(delivered) == 1500


def test_unknown_message_id_is_404_json(api, user):
    for path in ("/api/messages/987654321", "/api/messages/987654321/recipients"):
        response = api.get(path, user.token)
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found",
                                             "message": "Message not found"}}


@pytest.mark.parametrize("number", [2**63, 2**64, 10**40])
def test_ids_past_64_bits_in_paths_are_404_json(api, user, admin, number):
    """They once reached the database: 500 on SQLite, 503 on PostgreSQL."""
    calls = [("GET", f"/api/messages/{number}", user),
             ("GET", f"/api/messages/{number}/recipients", user),
             ("POST", f"/api/notifications/{number}/read", user),
             ("GET", f"/api/socket/user/{number}/online", admin),
             ("POST", f"/api/socket/notify/{number}", admin),
             ("GET", f"/api/users/{number}/quota", admin)]
    for method, path, caller in calls:
        response = api.request(method, path, caller.token, json={"title": "t", "message": "m"})
        assert response.status_code == 404, (path, response.status_code)
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("number", [2**31, 2**63 - 1])
def test_user_ids_past_32_bits_are_404_json(api, admin, number):
    """``users.id`` is 32 bits on PostgreSQL: a larger one was a 503 there."""
    for method, path in (("POST", f"/api/socket/notify/{number}"),
                         ("GET", f"/api/socket/user/{number}/online"),
                         ("GET", f"/api/users/{number}/quota")):
        response = api.request(method, path, admin.token, json={"title": "t", "message": "m"})
        assert response.status_code == 404, (path, response.status_code)
        assert response.json()["error"]["code"] == "not_found"


def test_idempotency_key_with_another_body_is_409_and_keys_are_per_caller(api, make_user):
    first_caller, second_caller = make_user(), make_user()
    headers = {"Idempotency-Key": "same-key-for-both"}
    first = _send(api, first_caller, headers=headers)
    assert first.status_code == 202
    conflict = _send(api, first_caller, body="Another body", headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"
    second = _send(api, second_caller, headers=headers)
    assert second.status_code == 202 and second.json()["id"] != first.json()["id"]
    for caller, message in ((first_caller, first), (second_caller, second)):
        listed = api.get("/api/messages", caller.token).json()["messages"]
        assert [m["id"] for m in listed] == [message.json()["id"]]


# Every change of a recipient raises its version by one, from 1 when it is stored.
DELIVERED_CHAIN = {1: "PENDING", 2: "SENDING", 3: "SENT", 4: "DELIVERED"}
REFUSED_CHAIN = {1: "PENDING", 2: "SENDING", 3: "FAILED"}


def test_a_tracker_sees_each_recipient_version_rise_by_one_per_change(api, user, connect):
    tracker = connect(user.token)
    message_id = _send(api, user, ["+15551236001", "+15005550001"]).json()["id"]
    assert tracker.call("track_message", message_id)["ok"] is True

    def settled():
        latest = _latest_by_recipient(tracker.received("recipient_update"))
        return len(latest) == 2 and {u["status"] for u in latest.values()} == {
            "DELIVERED", "FAILED"}
    eventually(settled, timeout=10)

    seen: dict[str, dict[int, str]] = {}
    for update in tracker.received("recipient_update"):
        versions = seen.setdefault(update["phone"], {})
        assert versions.setdefault(update["version"], update["status"]) == update["status"], \
            f"version {update['version']} repeated with another status"
    for phone, chain in (("+15551236001", DELIVERED_CHAIN), ("+15005550001", REFUSED_CHAIN)):
        first = min(seen[phone])
        assert seen[phone] == {v: s for v, s in chain.items() if v >= first}, phone

    updates_by_version: dict[int, dict] = {}
    for update in tracker.received("message_update"):
        assert updates_by_version.setdefault(update["version"], update) == update


def test_untracking_stops_the_updates_of_that_message(api, user, admin, connect):
    phones = [f"+1555222{i:04d}" for i in range(300)]
    message_id = _send(api, user, phones).json()["id"]
    leaving, staying = connect(admin.token), connect(user.token)
    # Receipts follow each send by 0.3 s (testing) and 300 sends take several rounds:
    # the untrack is done well before the last receipt.
    assert leaving.call("track_message", message_id)["ok"] is True
    assert leaving.call("untrack_message", message_id) == {"ok": True, "messageId": message_id}
    assert staying.call("track_message", message_id)["ok"] is True

    def delivered(client):
        return {u["recipientId"] for u in client.received("recipient_update")
                if u["status"] == "DELIVERED"}
    staying.wait_for("message_update", lambda m: m["deliveredCount"] == 300, timeout=30)
    eventually(lambda: len(delivered(staying)) == 300, timeout=10)
    leaving.call("get_rooms")  # round trip: anything in flight has arrived
    assert len(delivered(leaving)) < 300
    assert not [m for m in leaving.received("message_update") if m["deliveredCount"] == 300]


def test_webhook_signature_is_hmac_sha256_of_the_raw_body(api):
    receipt = {"providerMessageId": "sim_unknown_for_signing", "status": "DELIVERED"}
    raw = json.dumps(receipt).encode()

    def post(signature, body=raw):
        return api.post("/api/webhooks/delivery", data=body, headers={
            "Content-Type": "application/json", "X-Signature": signature})

    assert post(_hmac_sha256(raw)).json() == {"received": 1, "applied": 0, "unknown": 1}
    sha1 = hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha1).hexdigest()
    unkeyed = hashlib.sha256(raw).hexdigest()
    respaced = json.dumps(receipt, separators=(",", ":")).encode()
    for refused in (post(sha1), post(unkeyed), post(_hmac_sha256(respaced)),
                    post(_hmac_sha256(raw), body=respaced.replace(b'"sim', b'"sim2'))):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"
