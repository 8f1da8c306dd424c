"""The built-in simulator: a provider that sends nothing, with a test number for every outcome.

It answers like a real provider would, so every path of the dispatcher can be
reached without one (``docs/providers.md`` lists the numbers, as Twilio's
test credentials do). It deduplicates by recipient id, so it is exactly-once
and a claim taken over after a crash may be submitted to it again; with
``idempotent=False`` it forgets, like a real provider, which is how the tests
prove the hub's own at-most-once.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import deque

import gevent

from services.messaging.providers.base import (
    InboundHandler,
    Outcome,
    OutgoingSms,
    ProviderReceipt,
    ReceiptHandler,
    SubmitResult,
)

INVALID_NUMBER = "+15005550001"
UNROUTABLE_NUMBER = "+15005550009"
UNDELIVERED_NUMBER = "+15005550003"
OPTED_OUT_NUMBER = "+15005550004"
TEMPORARY_FAILURE_NUMBER = "+15005550005"
THROTTLED_NUMBER = "+15005550007"
UNKNOWN_NUMBER = "+15005550008"

THROTTLE_RETRY_AFTER = 1.0

# The fixed answers, in the words a provider would use (Twilio's codes).
_REFUSALS = {
    INVALID_NUMBER: SubmitResult(Outcome.REJECTED, error_code="invalid_number",
                                 error_message="Invalid phone number",
                                 provider_error_code="21211", provider_status="failed"),
    UNROUTABLE_NUMBER: SubmitResult(Outcome.REJECTED, error_code="unroutable",
                                    error_message="Unroutable destination",
                                    provider_error_code="21612", provider_status="failed"),
    TEMPORARY_FAILURE_NUMBER: SubmitResult(Outcome.REJECTED, error_code="provider_unavailable",
                                           error_message="The provider's queue is full",
                                           provider_error_code="30001",
                                           provider_status="failed", retryable=True),
    OPTED_OUT_NUMBER: SubmitResult(Outcome.OPTED_OUT, error_code="opted_out",
                                   error_message="The number opted out",
                                   provider_error_code="21610", provider_status="failed"),
    UNKNOWN_NUMBER: SubmitResult(Outcome.UNKNOWN, error_code="ambiguous_submit",
                                 error_message="No answer from the provider"),
}


class SimulatedProvider:
    """Sends nothing; behaves like a provider, with test numbers for each outcome.

    Every other number is accepted and, after ``receipt_delay`` seconds,
    reported delivered. Receipts wait in one queue drained by one greenlet (the
    delay is the same for all, so the queue is in due order), not in a
    greenlet and timer each. With ``send_log`` set every submission that
    reached it (accepted or unknown) is appended to that file (one JSON line),
    which also makes the key memory survive a restart, as a real provider's
    would.
    """

    name = "simulated"
    sender = "simulated"

    def __init__(self, *, latency: float = 0.0, receipt_delay: float = 1.0,
                 send_log: str | None = None, idempotent: bool = True,
                 max_in_flight: int = 50) -> None:
        self.latency = latency
        self.receipt_delay = receipt_delay
        self.send_log = send_log
        self.exactly_once = idempotent
        self.max_in_flight = max_in_flight
        self.on_receipt: ReceiptHandler | None = None
        self._accepted_by_key: dict[str, str] = {}
        self._throttled_keys: set[str] = set()
        self._due: deque[tuple[float, ProviderReceipt]] = deque()
        self._courier: gevent.Greenlet | None = None
        self._log_lock = threading.Lock()
        if send_log and idempotent and os.path.exists(send_log):
            with open(send_log) as handle:
                for line in handle:
                    entry = json.loads(line)
                    if entry["outcome"] == Outcome.ACCEPTED:
                        self._accepted_by_key[entry["key"]] = entry["providerMessageId"]

    def start(self, on_receipt: ReceiptHandler, on_inbound: InboundHandler) -> None:
        """Receipts go to ``on_receipt``; the simulator receives no inbound messages."""
        self.on_receipt = on_receipt

    def stop(self) -> None:
        """Receipts still due are dropped, as a provider's would be until the next start."""
        self.on_receipt = None
        if self._courier is not None:
            self._courier.kill(block=False)

    def submit(self, sms: OutgoingSms) -> SubmitResult:
        reached = time.time()
        if self.latency:
            gevent.sleep(self.latency)
        key = str(sms.recipient_id)
        if sms.phone == THROTTLED_NUMBER and key not in self._throttled_keys:
            self._throttled_keys.add(key)
            return SubmitResult(Outcome.THROTTLED, error_code="throttled",
                                provider_error_code="20429", retry_after=THROTTLE_RETRY_AFTER)
        refusal = _REFUSALS.get(sms.phone)
        if refusal is not None:
            if refusal.outcome == Outcome.UNKNOWN:
                self._log(key, sms.phone, None, Outcome.UNKNOWN, reached)
            return refusal
        known = self._accepted_by_key.get(key) if self.exactly_once else None
        if known is not None:
            return SubmitResult(Outcome.ACCEPTED, provider_message_id=known,
                                provider_status="queued")
        provider_id = "sim_" + uuid.uuid4().hex
        if self.exactly_once:
            self._accepted_by_key[key] = provider_id
        self._log(key, sms.phone, provider_id, Outcome.ACCEPTED, reached)
        self._due.append((time.monotonic() + self.receipt_delay,
                          self._receipt_for(sms, provider_id)))
        if self._courier is None or self._courier.dead:
            self._courier = gevent.spawn(self._deliver_receipts)
        return SubmitResult(Outcome.ACCEPTED, provider_message_id=provider_id,
                            provider_status="queued")

    @staticmethod
    def _receipt_for(sms: OutgoingSms, provider_id: str) -> ProviderReceipt:
        if sms.phone == UNDELIVERED_NUMBER:
            return ProviderReceipt(provider_id, "FAILED", provider_status="undelivered",
                                   provider_error_code="30003", error_code="delivery_failed",
                                   error_message="The handset was unreachable")
        return ProviderReceipt(provider_id, "DELIVERED", provider_status="delivered")

    def _log(self, key: str, phone: str, provider_id: str | None, outcome: Outcome,
             reached: float) -> None:
        """One line per submission that reached the provider; ``at`` is when it did."""
        if self.send_log:
            with self._log_lock, open(self.send_log, "a") as handle:
                handle.write(json.dumps({"key": key, "phone": phone, "outcome": outcome,
                                         "providerMessageId": provider_id,
                                         "at": reached}) + "\n")

    def _deliver_receipts(self) -> None:
        while self._due and self.on_receipt is not None:
            due, receipt = self._due[0]
            wait = due - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
                continue
            self._due.popleft()
            self.on_receipt(receipt)
