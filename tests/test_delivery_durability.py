"""The pipeline survives crashes and shares work: nothing lost, nothing sent twice."""

import json
from pathlib import Path

from services.messaging.webhook_signing import sign_webhook_body
from tests.fakes.eventlog import read_log
from tests.support import (
    WEBHOOK_SECRET,
    RecordingClient,
    eventually,
    register_user,
)


def _sent_keys(log_path):
    return [entry["key"] for entry in read_log(log_path)]


def _wait_final(server, token, message_id, timeout=60):
    def final():
        message = server.api.get(f"/api/messages/{message_id}", token).json()
        return message if message["status"] != "SENDING" else None
    return eventually(final, timeout=timeout, interval=0.2)


def test_server_killed_mid_send_finishes_with_each_recipient_sent_once(hub_factory):
    server = hub_factory({"SIMULATED_SMS_LATENCY": "0.02", "DISPATCH_CONCURRENCY": "4",
                          "DISPATCH_BATCH_SIZE": "20", "NODE_ID": "crash-node"},
                         name="crash", send_log=True)
    send_log = Path(server.send_log)
    token = register_user(server, admin=True).token
    phones = [f"+1555222{i:04d}" for i in range(400)]
    response = server.api.post("/api/messages", token,
                               json={"body": "durable", "recipients": phones})
    assert response.status_code == 202
    message_id = response.json()["id"]
    eventually(lambda: send_log.exists() and len(_sent_keys(send_log)) >= 50, timeout=20)
    server.kill()
    sent_before_crash = len(_sent_keys(send_log))
    assert sent_before_crash < 400, "the crash came too late to test anything"
    server.start()
    final = _wait_final(server, token, message_id)
    assert final["status"] == "SENT" and final["successCount"] == 400
    keys = _sent_keys(send_log)
    assert len(keys) == len(set(keys)) == 400


def test_failure_receipt_moves_a_sent_recipient_forward_only(hub_factory):
    server = hub_factory({"SIMULATED_RECEIPT_DELAY": "3600"}, name="receipts")
    token = register_user(server, admin=True).token
    message_id = server.api.post("/api/messages", token, json={
        "body": "x", "recipients": ["+15551230101", "+15551230102"]}).json()["id"]
    _wait_final(server, token, message_id)
    recipients = server.api.get(f"/api/messages/{message_id}/recipients",
                                token).json()["recipients"]
    assert {r["status"] for r in recipients} == {"SENT"}
    first, second = recipients

    def post(payload):
        raw = json.dumps(payload).encode()
        return server.api.post("/api/webhooks/delivery", data=raw, headers={
            "Content-Type": "application/json",
            "X-Signature": sign_webhook_body(raw, WEBHOOK_SECRET)})

    failed = post({"providerMessageId": first["providerMessageId"], "status": "FAILED",
                   "errorCode": "carrier_rejected", "errorMessage": "Carrier rejected"})
    assert failed.json() == {"received": 1, "applied": 1, "unknown": 0}
    delivered = post([{"providerMessageId": second["providerMessageId"],
                       "status": "DELIVERED"}])
    assert delivered.json()["applied"] == 1
    assert post({"providerMessageId": first["providerMessageId"],
                 "status": "DELIVERED"}).json()["applied"] == 0
    after = {r["id"]: r for r in server.api.get(
        f"/api/messages/{message_id}/recipients", token).json()["recipients"]}
    assert after[first["id"]]["status"] == "FAILED"
    assert after[first["id"]]["errorCode"] == "carrier_rejected"
    assert after[second["id"]]["status"] == "DELIVERED"
    message = server.api.get(f"/api/messages/{message_id}", token).json()
    assert message["deliveredCount"] == 1 and message["successCount"] == 2


def test_two_nodes_on_postgresql_and_redis_send_each_recipient_exactly_once(hub_factory,
                                                                           tmp_path):
    """Two nodes share one 5,000-recipient message; the owner tracks it from the other node."""
    send_log = tmp_path / "sent.jsonl"
    first, second = hub_factory.nodes(2, {"SIMULATED_SMS_LATENCY": "0.005",
                                          "DISPATCH_BATCH_SIZE": "50",
                                          "SIMULATED_SMS_SEND_LOG": str(send_log)})
    tracker = RecordingClient(second.url)
    try:
        token = register_user(first, admin=True).token
        tracker.connect(token=token)
        phones = [f"+1555333{i:04d}" for i in range(5000)]
        message_id = first.api.post("/api/messages", token, json={
            "body": "shared", "recipients": phones}).json()["id"]
        assert tracker.call("track_message", message_id)["ok"] is True
        second.api.post("/api/messages", token, json={"body": "poke",
                                                      "recipients": ["+15551230000"]})
        final = _wait_final(first, token, message_id, timeout=120)
        assert final["successCount"] == 5000, final
        # The one-recipient poke may still be on its way when the large message is final.
        keys = eventually(lambda: len(found := _sent_keys(send_log)) >= 5001 and found,
                          timeout=30)
        assert len(keys) == len(set(keys)), "a recipient was sent twice"
        assert len(keys) == 5001
        import psycopg

        with psycopg.connect(first.database_url) as conn:
            per_node = dict(conn.execute(
                "SELECT claimed_by, count(*) FROM recipients WHERE message_id = %s "
                "GROUP BY claimed_by", (int(message_id),)).fetchall())
        assert set(per_node) == {"node-a", "node-b"}, per_node
        tracker.wait_for("message_update", lambda update: update["messageId"] == message_id
                         and update["status"] == "SENT" and update["successCount"] == 5000,
                         timeout=20)
    finally:
        tracker.close()
