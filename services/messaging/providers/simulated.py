"""SMS providers: the interface the dispatcher sends through, and the built-in simulator.

A provider takes one SMS with an idempotency key (the recipient's id) and
either accepts it, returning its message id, or refuses it with a reason.
Delivery receipts come back later, from a real provider through the signed
webhook, from the simulator through the same receipt-handling function.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import gevent
from flask import Flask

INVALID_NUMBER = "+15005550001"
UNROUTABLE_NUMBER = "+15005550009"


@dataclass(frozen=True, slots=True)
class SendResult:
    accepted: bool
    provider_message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    provider_message_id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None
    occurred_at: datetime | None = None


class SmsProvider(Protocol):
    name: str

    def send(self, phone: str, *, body: str, idempotency_key: str) -> SendResult: ...


class SimulatedProvider:
    """Sends nothing; behaves like a provider, with test numbers that fail.

    ``+15005550001`` is refused as an invalid number and ``+15005550009`` as
    unroutable; every other number is accepted and, after
    ``receipt_delay`` seconds, reported delivered to ``on_receipt``. Receipts
    wait in one queue drained by one greenlet (the delay is the same for all,
    so the queue is in due order), not in a greenlet and timer each.
    Sends are idempotent by key, and with ``send_log`` set every accepted send
    is appended to that file (one JSON line), which also makes the key memory
    survive a restart, as a real provider's would.
    """

    name = "simulated"

    def __init__(self, *, latency: float = 0.0, receipt_delay: float = 1.0,
                 on_receipt: Callable[[DeliveryReceipt], None] | None = None,
                 send_log: str | None = None) -> None:
        self.latency = latency
        self.receipt_delay = receipt_delay
        self.on_receipt = on_receipt
        self.send_log = send_log
        self._accepted_by_key: dict[str, str] = {}
        self._due: deque[tuple[float, DeliveryReceipt]] = deque()
        self._courier: gevent.Greenlet | None = None
        self._log_lock = threading.Lock()
        if send_log and os.path.exists(send_log):
            with open(send_log) as handle:
                for line in handle:
                    entry = json.loads(line)
                    self._accepted_by_key[entry["key"]] = entry["providerMessageId"]

    def send(self, phone: str, *, body: str, idempotency_key: str) -> SendResult:
        if self.latency:
            gevent.sleep(self.latency)
        if phone == INVALID_NUMBER:
            return SendResult(False, error_code="invalid_number",
                              error_message="Invalid phone number")
        if phone == UNROUTABLE_NUMBER:
            return SendResult(False, error_code="unroutable",
                              error_message="Unroutable destination")
        known = self._accepted_by_key.get(idempotency_key)
        if known is not None:
            return SendResult(True, provider_message_id=known)
        provider_id = "sim_" + uuid.uuid4().hex
        self._accepted_by_key[idempotency_key] = provider_id
        if self.send_log:
            with self._log_lock, open(self.send_log, "a") as handle:
                handle.write(json.dumps({"key": idempotency_key, "phone": phone,
                                         "providerMessageId": provider_id,
                                         "ts": time.time()}) + "\n")
        if self.on_receipt is not None:
            self._due.append((time.monotonic() + self.receipt_delay,
                              DeliveryReceipt(provider_id, "DELIVERED", occurred_at=None)))
            if self._courier is None or self._courier.dead:
                self._courier = gevent.spawn(self._deliver_receipts)
        return SendResult(True, provider_message_id=provider_id)

    def _deliver_receipts(self) -> None:
        while self._due:
            due, receipt = self._due[0]
            wait = due - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
                continue
            self._due.popleft()
            self.on_receipt(receipt)


def build_provider(app: Flask, on_receipt: Callable[[DeliveryReceipt], None]) -> SmsProvider:
    """The provider ``SMS_PROVIDER`` names, reporting its delivery receipts to ``on_receipt``."""
    name = app.config["SMS_PROVIDER"]
    if name == "simulated":
        return SimulatedProvider(
            latency=app.config["SIMULATED_SMS_LATENCY"],
            receipt_delay=app.config["SIMULATED_RECEIPT_DELAY"],
            on_receipt=on_receipt,
            send_log=app.config["SIMULATED_SMS_SEND_LOG"],
        )
    raise RuntimeError(f"unknown SMS_PROVIDER {name!r}")
