"""The simulated provider: one courier for receipts, and a test number for every outcome."""

import json
import time

import gevent

from services.messaging.providers import Outcome, OutgoingSms, SimulatedProvider
from services.messaging.providers.simulated import (
    INVALID_NUMBER,
    OPTED_OUT_NUMBER,
    TEMPORARY_FAILURE_NUMBER,
    THROTTLED_NUMBER,
    UNDELIVERED_NUMBER,
    UNKNOWN_NUMBER,
    UNROUTABLE_NUMBER,
)


def _sms(recipient_id: int, phone: str) -> OutgoingSms:
    return OutgoingSms(recipient_id, phone, "x")


def test_receipts_arrive_after_the_delay_in_send_order():
    received = []
    provider = SimulatedProvider(receipt_delay=0.2)
    provider.start(lambda receipt: received.append(
        (time.monotonic(), receipt.provider_message_id, receipt.status)), lambda _: None)
    sent_at, ids = [], []
    for i in range(3):
        sent_at.append(time.monotonic())
        ids.append(provider.submit(_sms(i, f"+1555800{i:04d}")).provider_message_id)
        gevent.sleep(0.05)
    assert provider.submit(_sms(99, INVALID_NUMBER)).outcome == Outcome.REJECTED
    assert provider.submit(_sms(0, "+15558000000")).provider_message_id == ids[0]
    assert received == []
    gevent.sleep(0.35)
    assert [(pid, status) for _, pid, status in received] == [(pid, "DELIVERED") for pid in ids]
    assert all(at - sent >= 0.2 for (at, _, _), sent in zip(received, sent_at, strict=True))
    provider.submit(_sms(100, "+15558000009"))
    gevent.sleep(0.25)
    assert len(received) == 4


def test_each_test_number_gives_its_outcome(tmp_path):
    received = []
    log = tmp_path / "sends.jsonl"
    provider = SimulatedProvider(receipt_delay=0.0, send_log=str(log))
    provider.start(received.append, lambda _: None)
    outcomes = {phone: provider.submit(_sms(n, phone)) for n, phone in enumerate((
        INVALID_NUMBER, UNROUTABLE_NUMBER, OPTED_OUT_NUMBER, TEMPORARY_FAILURE_NUMBER,
        THROTTLED_NUMBER, UNKNOWN_NUMBER, UNDELIVERED_NUMBER))}
    assert {phone: (r.outcome, r.provider_error_code, r.retryable)
            for phone, r in outcomes.items()} == {
        INVALID_NUMBER: (Outcome.REJECTED, "21211", False),
        UNROUTABLE_NUMBER: (Outcome.REJECTED, "21612", False),
        OPTED_OUT_NUMBER: (Outcome.OPTED_OUT, "21610", False),
        TEMPORARY_FAILURE_NUMBER: (Outcome.REJECTED, "30001", True),
        THROTTLED_NUMBER: (Outcome.THROTTLED, "20429", False),
        UNKNOWN_NUMBER: (Outcome.UNKNOWN, None, False),
        UNDELIVERED_NUMBER: (Outcome.ACCEPTED, None, False),
    }
    assert outcomes[THROTTLED_NUMBER].retry_after == 1.0
    # Throttled once per recipient, then taken.
    assert provider.submit(_sms(4, THROTTLED_NUMBER)).outcome == Outcome.ACCEPTED
    gevent.sleep(0.05)
    assert [(r.status, r.provider_status, r.provider_error_code) for r in received] == [
        ("FAILED", "undelivered", "30003"), ("DELIVERED", "delivered", None)]
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["phone"], e["outcome"]) for e in logged] == [
        (UNKNOWN_NUMBER, "unknown"), (UNDELIVERED_NUMBER, "accepted"),
        (THROTTLED_NUMBER, "accepted")]


def test_without_idempotency_a_repeat_is_a_second_submission(tmp_path):
    log = tmp_path / "sends.jsonl"
    provider = SimulatedProvider(receipt_delay=3600, send_log=str(log), idempotent=False)
    assert provider.exactly_once is False
    first = provider.submit(_sms(1, "+15558000001")).provider_message_id
    assert provider.submit(_sms(1, "+15558000001")).provider_message_id != first
    assert len(log.read_text().splitlines()) == 2
