"""This node's sender: background loops that claim, send, record and announce.

One loop claims batches from the send queue (``services.messaging.queue``)
and sends each with bounded concurrency through the SMS provider, the
recipient id as idempotency key; one applies the provider's delivery
receipts, retrying those that overtook their send's commit; one sends the
coalesced ``message_update`` events a few times a second. New work wakes
the sender at once (``wake_dispatcher``) rather than at its next poll.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from flask import Flask
from gevent.event import Event

from extensions import db
from services.messaging import announcements, queue, suppressions
from services.messaging.providers import DeliveryReceipt, SendResult, build_provider

log = logging.getLogger(__name__)

RECEIPT_RETRY_INTERVAL = 0.5
RECEIPT_RETRY_WINDOW = 60.0

_dispatcher: Dispatcher | None = None


def send_reply(phone: str, *, body: str, key: str) -> bool:
    """A keyword's reply through this node's provider, outside the queue and its
    suppression check; whether the provider accepted it (False without a dispatcher)."""
    if _dispatcher is None:
        return False
    return _dispatcher.provider.send(phone, body=body, idempotency_key=key).accepted


def wake_dispatcher() -> None:
    """New work was committed: let this node's dispatcher claim it now, not at its next poll."""
    if _dispatcher is not None:
        _dispatcher.wake.set()


class Dispatcher:
    """This node's sender: claims, sends concurrently, records; plus receipts and updates."""

    def __init__(self, app: Flask, node_id: str) -> None:
        self.app = app
        self.node_id = node_id
        self.wake = Event()
        self.running = False
        config = app.config
        self.batch_size = config["DISPATCH_BATCH_SIZE"]
        self.concurrency = config["DISPATCH_CONCURRENCY"]
        self.poll_interval = config["DISPATCH_POLL_INTERVAL"]
        self.update_interval = config["MESSAGE_UPDATE_INTERVAL"]
        self._receipts: list[DeliveryReceipt] = []
        self._receipts_ready = Event()
        self._early_since: dict[str, float] = {}
        self.provider = build_provider(app, self._queue_receipt)

    def start(self) -> None:
        global _dispatcher
        _dispatcher = self
        self.running = True
        announcements.message_updates.start()
        with self.app.app_context():
            released = queue.release_own_claims(self.node_id)
        if released:
            log.warning("re-queued %d recipients a previous run of %s had claimed",
                        released, self.node_id)
        for loop in (self._dispatch_loop, self._receipt_loop, self._update_loop):
            gevent.spawn(self._forever, loop)

    def stop(self) -> None:
        self.running = False
        self.wake.set()
        self._receipts_ready.set()

    def _queue_receipt(self, receipt: DeliveryReceipt) -> None:
        self._receipts.append(receipt)
        self._receipts_ready.set()

    def _forever(self, loop) -> None:
        """Run a loop until stopped; a failure (database down) is logged and retried."""
        while self.running:
            try:
                with self.app.app_context():
                    loop()
            except Exception:
                log.exception("%s failed; retrying", loop.__name__)
                with self.app.app_context():
                    db.session.rollback()
                gevent.sleep(1.0)

    def _dispatch_loop(self) -> None:
        while self.running:
            claimed = queue.claim_batch(self.node_id, self.batch_size)
            if not claimed:
                db.session.close()
                self.wake.wait(self.poll_interval)
                self.wake.clear()
                continue
            bodies = queue.message_bodies({row.message_id for row in claimed})
            gate = suppressions.SendGate((row.phone for row in claimed),
                                         sender=suppressions.outgoing_sender(), engine=db.engine)
            db.session.close()
            announcements.emit_recipient_updates(claimed)
            queue.record_outcomes(self.node_id, self._send_all(claimed, bodies, gate))
            db.session.close()

    def _send_all(self, claimed: list[Any], bodies: dict[int, str],
                  gate: suppressions.SendGate) -> list[tuple[Any, SendResult]]:
        """Send a batch with at most ``concurrency`` sends in flight.

        A fixed set of workers takes the rows in turn, rather than a greenlet
        spawned per recipient.
        """
        rows = iter(claimed)
        outcomes: list[tuple[Any, SendResult]] = []

        def work() -> None:
            for row in rows:
                outcomes.append((row, self._send(row, bodies[row.message_id], gate)))

        gevent.joinall([gevent.spawn(work) for _ in range(min(self.concurrency, len(claimed)))],
                       raise_error=True)
        return outcomes

    def _send(self, row: Any, body: str, gate: suppressions.SendGate) -> SendResult:
        if gate.blocks(row.phone):
            return SendResult(False, error_code=queue.OPTED_OUT,
                              error_message="The number opted out")
        try:
            return self.provider.send(row.phone, body=body, idempotency_key=str(row.id))
        except Exception as exc:
            log.warning("provider error for recipient %s: %s", row.id, type(exc).__name__)
            return SendResult(False, error_code="provider_error",
                              error_message="The SMS provider failed")

    def _receipt_loop(self) -> None:
        while self.running:
            self._receipts_ready.wait(RECEIPT_RETRY_INTERVAL)
            self._receipts_ready.clear()
            batch, self._receipts = self._receipts, []
            if not batch:
                continue
            try:
                _, early = queue.apply_receipts(batch)
            except Exception:
                self._receipts = batch + self._receipts
                raise
            finally:
                db.session.close()
            self._retry_early(batch, early)

    def _retry_early(self, batch: list[DeliveryReceipt], early: set[str]) -> None:
        """Receipts that overtook their send's commit go round again, for a while."""
        now = time.monotonic()
        for receipt in batch:
            if receipt.provider_message_id not in early:
                self._early_since.pop(receipt.provider_message_id, None)
                continue
            first_seen = self._early_since.setdefault(receipt.provider_message_id, now)
            if now - first_seen < RECEIPT_RETRY_WINDOW:
                self._receipts.append(receipt)
            else:
                del self._early_since[receipt.provider_message_id]
                log.warning("dropping a receipt for unknown provider id %s",
                            receipt.provider_message_id)

    def _update_loop(self) -> None:
        while self.running:
            started = time.monotonic()
            changed = announcements.message_updates.take()
            if changed:
                for message in queue.messages_by_id(changed):
                    announcements.emit_message_update(message)
                db.session.close()
            gevent.sleep(max(0.0, self.update_interval - (time.monotonic() - started)))
