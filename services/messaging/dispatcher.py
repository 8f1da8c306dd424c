"""This node's sender: background loops that claim, send, record and announce.

One loop claims batches from the send queue (``services.messaging.queue``)
and submits each with bounded concurrency through the SMS provider, within
the sender's pace (``services.messaging.pace``), acting on the five
outcomes the same way whatever the provider; one applies the provider's
delivery receipts, gathered into batches; one sends the coalesced
``message_update`` events a few times a second; one expires what waited
past its validity and gives up on receipts that never came. New work wakes
the sender at once (``wake_dispatcher``) rather than at its next poll.

A receipt often overtakes the record of its own send (an SMSC answers a
``submit_sm`` and reports delivery within milliseconds, while the batch is
recorded once all of it was submitted). One for a submission of the batch
this node is sending waits here, in memory, until that batch is recorded;
one for a send not recorded yet elsewhere goes round again after
``RECEIPT_RETRY_INTERVAL`` or this node's next record, not with every new
receipt.

A provider that keeps a receipt until the hub holds it (SMPP) hands it over
with an ``acknowledge``, called once the receipt is committed: applied, found
to change nothing, or shown as a word of progress. One held here (parked, or
early and going round) is acknowledged when it is finally applied, or when it
is given up on after ``RECEIPT_RETRY_WINDOW``; one whose batch failed to
commit is refused at once, and the provider sends it again. Until then the
provider has it: a node that dies holding receipts loses none.

With a provider that does not deduplicate (every real one), each submission
is marked in the database, committed, before the provider is called
(``SubmitMarks``), so that no node ever submits a recipient that may
already have reached the provider.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from flask import Flask, current_app
from gevent.event import AsyncResult, Event

from extensions import db
from services.messaging import announcements, provider_statuses, queue, suppressions
from services.messaging.pace import Pace, pace_for
from services.messaging.providers import (
    InboundHandler,
    Outcome,
    OutgoingSms,
    ProviderReceipt,
    SmsProvider,
    SubmitResult,
    build_provider,
)

log = logging.getLogger(__name__)

RECEIPT_RETRY_INTERVAL = 0.5
RECEIPT_RETRY_WINDOW = 60.0
# A receipt waits this long for the ones behind it, so they are applied in one batch: each
# batch costs a few statements and a commit however many receipts it holds.
RECEIPT_GATHER_SECONDS = 0.05
SWEEP_INTERVAL = 1.0
# A paced claim holds about this share of the claim timeout's worth of submissions, so
# that it is submitted long before another node may take it over.
PACED_CLAIM_SHARE = 0.25

_dispatcher: Dispatcher | None = None


def send_reply(phone: str, *, body: str, reply_id: int) -> SubmitResult | None:
    """A keyword's reply through this node's provider, outside the queue and the suppression
    list; ``None`` without a dispatcher. ``reply_id`` is negative (no recipient has it), so
    the simulator's deduplication by recipient id keeps replies apart from recipients."""
    if _dispatcher is None:
        return None
    return _dispatcher.provider.submit(OutgoingSms(reply_id, phone, body))


def sender_in_use() -> str:
    """The sender this node's provider sends from, as the suppression list keys it."""
    if _dispatcher is not None:
        return _dispatcher.sender
    return suppressions.normalise_sender(build_provider(current_app).sender)


def wake_dispatcher() -> None:
    """New work was committed: let this node's dispatcher claim it now, not at its next poll."""
    if _dispatcher is not None:
        _dispatcher.wake.set()


class Dispatcher:
    """This node's sender: claims, sends concurrently, records; plus receipts and updates."""

    def __init__(self, app: Flask, node_id: str, *, on_inbound: InboundHandler) -> None:
        self.app = app
        self.node_id = node_id
        self.on_inbound = on_inbound
        self.wake = Event()
        self.running = False
        config = app.config
        self.batch_size = config["DISPATCH_BATCH_SIZE"]
        self.concurrency = config["DISPATCH_CONCURRENCY"]
        self.poll_interval = config["DISPATCH_POLL_INTERVAL"]
        self.update_interval = config["MESSAGE_UPDATE_INTERVAL"]
        self._receipts: list[ProviderReceipt] = []
        self._receipts_ready = Event()
        self._early_since: dict[str, float] = {}
        self._early: list[ProviderReceipt] = []
        self._early_due = 0.0
        # Provider ids of the batch being sent, not recorded yet, and the receipts for them.
        self._unrecorded: set[str] = set()
        self._parked: list[ProviderReceipt] = []
        self.provider: SmsProvider = build_provider(app)
        self.sender = suppressions.normalise_sender(self.provider.sender)
        self.concurrency = min(self.concurrency, self.provider.max_in_flight)
        self.exactly_once = self.provider.exactly_once
        self.pace: Pace | None = pace_for(app, self.provider.sender)
        if self.pace is not None:
            paced = int(self.pace.rate * config["DISPATCH_CLAIM_TIMEOUT"] * PACED_CLAIM_SHARE)
            self.batch_size = max(1, min(self.batch_size, paced))
        self.marks = None if self.exactly_once else SubmitMarks(app, node_id)

    def start(self) -> None:
        global _dispatcher
        _dispatcher = self
        self.running = True
        announcements.message_updates.start()
        with self.app.app_context():
            released = queue.release_own_claims(self.node_id, exactly_once=self.exactly_once)
        if released:
            log.warning("re-queued %d recipients a previous run of %s had claimed",
                        released, self.node_id)
        if self.app.config["ENV_NAME"] == "production" and self.provider.name == "simulated":
            log.warning("SMS_PROVIDER is simulated: no SMS leaves this hub; set SMS_PROVIDER "
                        "to twilio or smpp to send (docs/providers.md)")
        self.provider.start(self._queue_receipt, self.on_inbound)
        loops = [self._dispatch_loop, self._receipt_loop, self._update_loop, self._sweep_loop]
        if self.marks is not None:
            loops.append(self.marks.loop)
        for loop in loops:
            gevent.spawn(self._forever, loop)

    def stop(self) -> None:
        self.running = False
        self.wake.set()
        self._receipts_ready.set()
        if self.marks is not None:
            self.marks.running = False
            self.marks.ready.set()
        self.provider.stop()

    def _queue_receipt(self, receipt: ProviderReceipt) -> None:
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
            claimed = queue.claim_batch(self.node_id, self.batch_size,
                                        exactly_once=self.exactly_once)
            if not claimed:
                db.session.close()
                self.wake.wait(self.poll_interval)
                self.wake.clear()
                continue
            bodies = queue.message_bodies({row.message_id for row in claimed})
            gate = suppressions.SendGate((row.phone for row in claimed), sender=self.sender,
                                         message_ids=bodies)
            db.session.close()
            announcements.claimed(claimed)
            try:
                queue.record_outcomes(self.node_id, self._submit_all(claimed, bodies, gate),
                                      sender=self.sender)
            finally:
                db.session.close()
                self._release_parked()

    def _release_parked(self) -> None:
        """The batch is recorded (or failed to be): its receipts may apply now, and so may
        the early ones, whose send this record may have been."""
        self._unrecorded.clear()
        self._receipts += self._parked
        self._parked = []
        self._early_due = 0.0
        self._receipts_ready.set()

    def _submit_all(self, claimed: list[Any], bodies: dict[int, str],
                    gate: suppressions.SendGate) -> list[tuple[Any, SubmitResult]]:
        """Submit a batch with at most ``concurrency`` submissions in flight.

        A fixed set of workers takes the rows in turn, rather than a greenlet
        spawned per recipient. A row whose mark was refused (its claim went to
        another node) is left out.
        """
        rows = iter(claimed)
        outcomes: list[tuple[Any, SubmitResult]] = []

        def work() -> None:
            for row in rows:
                result = self._submit(row, bodies[row.message_id], gate)
                if result is not None:
                    outcomes.append((row, result))
                    if result.provider_message_id is not None:
                        self._unrecorded.add(result.provider_message_id)
                        self._unrecorded.update(result.part_ids)

        gevent.joinall([gevent.spawn(work) for _ in range(min(self.concurrency, len(claimed)))],
                       raise_error=True)
        return outcomes

    def _submit(self, row: Any, body: str, gate: suppressions.SendGate) -> SubmitResult | None:
        """Wait for the pace, ask whether the message is held and the suppression list,
        mark, submit; ``None`` when it must not be submitted here. The gate is asked after
        the pace, right before the call."""
        if self.pace is not None:
            self.pace.wait()
        if gate.holds(row.message_id):
            return queue.HELD
        if gate.blocks(row.phone):
            return suppressions.ON_LIST
        if self.marks is not None and not self.marks.mark(row.id):
            return None
        try:
            result = self.provider.submit(OutgoingSms(row.id, row.phone, body))
        except Exception as exc:
            log.warning("provider error for recipient %s: %s", row.id, type(exc).__name__)
            result = SubmitResult(Outcome.UNKNOWN, error_code="ambiguous_submit",
                                  error_message="The SMS provider failed")
        if result.outcome == Outcome.THROTTLED and self.pace is not None:
            self.pace.throttled()
        return result

    def _receipt_loop(self) -> None:
        while self.running:
            self._receipts_ready.wait(RECEIPT_RETRY_INTERVAL)
            self._receipts_ready.clear()
            if self._receipts:
                gevent.sleep(RECEIPT_GATHER_SECONDS)
            batch, self._receipts = self._receipts, []
            if self._early and time.monotonic() >= self._early_due:
                batch, self._early = self._early + batch, []
            batch = self._park(batch)
            if not batch:
                continue
            try:
                self._show_progress(batch)
                _, early = queue.apply_receipts(batch)
            except Exception:
                for receipt in batch:
                    _acknowledge(receipt, stored=False)
                self._receipts = [r for r in batch if r.acknowledge is None] + self._receipts
                raise
            finally:
                db.session.close()
            self._retry_early(batch, early)

    @staticmethod
    def _show_progress(batch: list[ProviderReceipt]) -> None:
        """Words of progress become their recipients' ``providerStatus``, as Twilio's do
        (``apply_receipts`` passes over them, and acknowledging waits for its commit), all
        of the batch's in one commit."""
        words = [provider_statuses.Progress(receipt.provider_status, receipt.replaces,
                                            receipt.provider_message_id, receipt.recipient_id)
                 for receipt in batch
                 if receipt.replaces is not None and receipt.provider_status is not None]
        if words:
            provider_statuses.record_progress(words)

    def _park(self, batch: list[ProviderReceipt]) -> list[ProviderReceipt]:
        """Those of ``batch`` for sends of the batch being sent wait for its record; the
        rest are returned."""
        if not self._unrecorded:
            return batch
        applied = []
        for receipt in batch:
            if receipt.provider_message_id in self._unrecorded:
                self._parked.append(receipt)
            else:
                applied.append(receipt)
        return applied

    def _retry_early(self, batch: list[ProviderReceipt], early: set[str]) -> None:
        """Receipts that overtook their send's commit go round again, for a while."""
        now = time.monotonic()
        for receipt in batch:
            if receipt.provider_message_id not in early:
                self._early_since.pop(receipt.provider_message_id, None)
                _acknowledge(receipt, stored=True)
                continue
            first_seen = self._early_since.setdefault(receipt.provider_message_id, now)
            if now - first_seen < RECEIPT_RETRY_WINDOW:
                self._early.append(receipt)
            else:
                del self._early_since[receipt.provider_message_id]
                log.warning("dropping a receipt for unknown provider id %s",
                            receipt.provider_message_id)
                _acknowledge(receipt, stored=True)
        if self._early:
            self._early_due = now + RECEIPT_RETRY_INTERVAL

    def _update_loop(self) -> None:
        while self.running:
            started = time.monotonic()
            changed = announcements.message_updates.take()
            if changed:
                for message, counts in queue.messages_with_counts(changed):
                    announcements.emit_message_update(message, counts)
                db.session.close()
            gevent.sleep(max(0.0, self.update_interval - (time.monotonic() - started)))

    def _sweep_loop(self) -> None:
        """What waited past its validity expires; what waited past its receipt is unknown."""
        while self.running:
            queue.expire()
            queue.time_out_receipts()
            db.session.close()
            gevent.sleep(SWEEP_INTERVAL)


def _acknowledge(receipt: ProviderReceipt, *, stored: bool) -> None:
    """Tell a provider that keeps its receipts until the hub holds them."""
    if receipt.acknowledge is not None:
        receipt.acknowledge(stored)


class SubmitMarks:
    """Marks submissions as started, all those about to start on this node in one commit.

    Each worker asks for its recipient and waits; one greenlet takes every
    request waiting and marks them in a single ``UPDATE`` (a group commit), so
    with many submissions in flight each costs a share of one statement. A
    recipient refused (taken over elsewhere), or a mark that failed to commit,
    is not submitted: unmarked, it is sent by whoever claims it next.
    """

    def __init__(self, app: Flask, node_id: str) -> None:
        self.app = app
        self.node_id = node_id
        self.ready = Event()
        self.running = True
        self.statements = 0
        self._waiting: list[tuple[int, AsyncResult]] = []

    def mark(self, recipient_id: int) -> bool:
        """Whether ``recipient_id`` is now marked, committed, and still this node's."""
        answer: AsyncResult = AsyncResult()
        self._waiting.append((recipient_id, answer))
        self.ready.set()
        return answer.get()

    def loop(self) -> None:
        """Run inside the dispatcher's ``_forever``: mark what waits, answer, repeat."""
        while self.running:
            self.ready.wait()
            self.ready.clear()
            waiting, self._waiting = self._waiting, []
            if not waiting:
                continue
            self.statements += 1
            try:
                marked = queue.mark_submitting(self.node_id, [rid for rid, _ in waiting])
            except Exception:
                for _, answer in waiting:
                    answer.set(False)
                raise
            finally:
                db.session.close()
            for recipient_id, answer in waiting:
                answer.set(recipient_id in marked)
