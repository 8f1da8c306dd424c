"""The simulated provider's receipts: one courier, each receipt after the delay, in send order."""

import time

import gevent

from services.messaging.providers import INVALID_NUMBER, SimulatedProvider


def test_receipts_arrive_after_the_delay_in_send_order():
    received = []
    provider = SimulatedProvider(receipt_delay=0.2, on_receipt=lambda receipt: received.append(
        (time.monotonic(), receipt.provider_message_id, receipt.status)))
    sent_at, ids = [], []
    for i in range(3):
        sent_at.append(time.monotonic())
        ids.append(provider.send(f"+1555800{i:04d}", body="x",
                                 idempotency_key=str(i)).provider_message_id)
        gevent.sleep(0.05)
    assert provider.send(INVALID_NUMBER, body="x", idempotency_key="refused").accepted is False
    assert provider.send("+15558000000", body="x",
                         idempotency_key="0").provider_message_id == ids[0]
    assert received == []
    gevent.sleep(0.35)
    assert [(pid, status) for _, pid, status in received] == [(pid, "DELIVERED") for pid in ids]
    assert all(at - sent >= 0.2 for (at, _, _), sent in zip(received, sent_at, strict=True))
    provider.send("+15558000009", body="x", idempotency_key="later")
    gevent.sleep(0.25)
    assert len(received) == 4
