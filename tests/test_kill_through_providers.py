"""At most once through the real wire protocols: a node killed mid-send through each fake.

Two nodes (PostgreSQL, Redis) send 2,000 recipients through the fake Twilio or
the fake SMSC, each answering every submission after 50 ms so that one node
always has submissions in flight; that node is killed with ``kill -9``. The
fake's own log, written by a process the kill does not touch, says what
reached the provider. Those the killed node had marked as submit-started
without a recorded outcome are read from the database right after the kill
(nothing moves them before the other node's claim timeout): they, and only
they, must end ``UNKNOWN``; everything else is submitted exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from tests.fakes.eventlog import per_phone
from tests.fakes.smsc import FakeSmsc
from tests.fakes.twilio_api import FakeTwilio
from tests.support import (
    LiveServer,
    all_recipients,
    eventually,
    register_user,
    smpp_hub_env,
    sql_scalar,
    twilio_hub_env,
    wait_until_final,
)

RECIPIENTS = 2000
ANSWER_AFTER = 0.05
# The nodes claim 200 at a time and send at about the same pace: the kill comes when each
# is about halfway through a batch, some of it submitted, some not yet.
KILL_AFTER = 300
# Short enough for the survivor to take the dead node's claims over soon, long enough that
# nothing moves them before they are read.
CLAIM_TIMEOUT = "5"
NODES_ENV = {"DISPATCH_CONCURRENCY": "10", "DISPATCH_BATCH_SIZE": "200",
             "DISPATCH_CLAIM_TIMEOUT": CLAIM_TIMEOUT, "SMS_MAX_PER_SECOND": "1000"}
# Marked as submit-started by the node, no outcome recorded: in flight when it died.
IN_FLIGHT = ("FROM recipients WHERE message_id = :message AND status = 'SENDING' "
             "AND claimed_by = :node AND submit_started_at IS NOT NULL")


def _kill_one_mid_send(nodes: list[LiveServer], prefix: str,
                       submitted: Callable[[], Counter]) -> tuple[str, str, set[str]]:
    """Send from the first node, kill it once the fake has ``KILL_AFTER`` submissions and the
    node has some in flight; returns the token, the message id and the phones it had in
    flight."""
    first, _ = nodes
    token = register_user(first, admin=True).token
    phones = [f"+1555{prefix}{i:04d}" for i in range(RECIPIENTS)]
    answer = first.api.post("/api/messages", token, json={"body": "killed mid-send",
                                                          "recipients": phones})
    assert answer.status_code == 202, answer.text
    message_id = answer.json()["id"]
    where = {"message": int(message_id), "node": first.extra_env["NODE_ID"]}

    def mid_send() -> bool:
        return (sum(submitted().values()) >= KILL_AFTER
                and sql_scalar(first.database_url, f"SELECT count(*) {IN_FLIGHT}", **where) > 0)
    eventually(mid_send, timeout=90, interval=0.1)
    first.kill()
    in_flight = sql_scalar(first.database_url, f"SELECT array_agg(phone) {IN_FLIGHT}", **where)
    return token, message_id, set(in_flight or [])


def _assert_at_most_once(recipients: list[dict], submitted: Counter, in_flight: set[str],
                         settled_statuses: set[str]) -> None:
    assert len(recipients) == RECIPIENTS
    by_status = Counter(r["status"] for r in recipients)
    assert set(by_status) <= settled_statuses | {"UNKNOWN"}, by_status
    assert max(submitted.values()) == 1, [p for p, n in submitted.items() if n > 1][:5]
    unknown = {r["phone"] for r in recipients if r["status"] == "UNKNOWN"}
    # The kill came right after the database showed some in flight: outcomes are recorded
    # a batch at a time, so the node had many submissions marked and unrecorded.
    assert in_flight, "the kill fell where the node had nothing in flight"
    assert unknown == in_flight, (len(unknown), len(in_flight))
    assert {(r["errorCode"], r["cost"]) for r in recipients
            if r["status"] == "UNKNOWN"} == {("ambiguous_submit", 0)}
    settled = {r["phone"] for r in recipients} - unknown
    assert all(submitted[phone] == 1 for phone in settled), "every settled phone sent once"
    assert set(submitted) <= settled | unknown


def test_a_node_killed_mid_send_through_twilio_submits_no_phone_twice(hub_factory,
                                                                      fake_twilio_process):
    fake: FakeTwilio = fake_twilio_process
    fake.settings(auto_callbacks=False)  # SENT stays SENT; a callback could settle an UNKNOWN
    fake.script(*[{"kind": "slow", "delay": ANSWER_AFTER}] * RECIPIENTS)
    nodes = hub_factory.nodes(2, {**twilio_hub_env(fake, TWILIO_TIMEOUT=10,
                                                   TWILIO_MAX_IN_FLIGHT=10), **NODES_ENV},
                              name="twilio-kill")

    def submitted() -> Counter:
        return per_phone(fake.submissions(), "to")

    token, message_id, in_flight = _kill_one_mid_send(nodes, "701", submitted)
    final = wait_until_final(nodes[1], token, message_id, timeout=120)

    recipients = all_recipients(nodes[1], token, message_id)
    _assert_at_most_once(recipients, submitted(), in_flight, {"SENT"})
    assert final["status"] == "SENT"
    assert final["successCount"] == RECIPIENTS - len(in_flight)
    assert final["statusCounts"] == {"SENT": RECIPIENTS - len(in_flight),
                                     "UNKNOWN": len(in_flight)}
    assert all(r["providerMessageId"].startswith("SM") for r in recipients
               if r["status"] == "SENT")


def test_a_node_killed_mid_send_through_the_smsc_submits_no_phone_twice(hub_factory,
                                                                        fake_smsc):
    fake: FakeSmsc = fake_smsc
    fake.script(*[{"kind": "delay", "delay_ms": int(ANSWER_AFTER * 1000)}] * RECIPIENTS)
    nodes = hub_factory.nodes(2, {**smpp_hub_env(fake, SMPP_WINDOW="10"), **NODES_ENV},
                              name="smpp-kill")

    def submitted() -> Counter:
        return Counter("+" + submission["dest"] for submission in fake.submissions())

    token, message_id, in_flight = _kill_one_mid_send(nodes, "702", submitted)
    final = wait_until_final(nodes[1], token, message_id, timeout=120)

    # Every accepted submission's receipt is answered by one of the binds (the SMSC stores
    # and forwards until one does). Those of what the dead node had in flight name ids no
    # recipient holds, which the survivor answers only once it gives up waiting for the id
    # (the dispatcher's RECEIPT_RETRY_WINDOW): the wait is for all the others. Those the
    # dead node answered but had not yet applied are lost with it: their recipients stay
    # SENT, documented, until RECEIPT_TIMEOUT_SECONDS.
    answerable = {submission["message_id"] for submission in fake.submissions()
                  if "+" + submission["dest"] not in in_flight}
    eventually(lambda: answerable <= {receipt["message_id"] for receipt in fake.receipts()},
               timeout=60, interval=0.5)
    closed = {event["session"] for event in fake.events() if event["event"] == "close"}
    lost = {event["message_id"] for event in fake.receipts() if event["session"] in closed}

    def settled() -> list[dict] | None:
        found = all_recipients(nodes[1], token, message_id)
        waiting = [r for r in found if r["status"] == "SENT"
                   and r["providerMessageId"] not in lost]
        return None if waiting else found
    recipients = eventually(settled, timeout=60, interval=0.5)
    _assert_at_most_once(recipients, submitted(), in_flight, {"DELIVERED", "SENT"})
    assert final["status"] == "SENT"
    assert final["successCount"] == RECIPIENTS - len(in_flight)
    assert {r["providerStatus"] for r in recipients if r["status"] == "DELIVERED"} == {"DELIVRD"}
