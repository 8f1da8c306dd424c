"""The delivery pipeline: claim recipients, send them, record outcomes and receipts.

The recipients table is the queue. Each node's dispatcher claims a batch of
``PENDING`` recipients (and ``SENDING`` ones whose claim went stale, which is
how a crashed node's work is picked up), on PostgreSQL with
``FOR UPDATE SKIP LOCKED`` so nodes never claim the same row. It sends with
bounded concurrency, each send carrying the recipient id as idempotency key,
and records every outcome of the batch in one statement that only moves rows
this node still holds. Events go out after each commit; ``message_update`` is
coalesced to a few per second per message, and the final one always goes out.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import gevent
from flask import Flask, current_app
from gevent.event import Event
from gevent.pool import Pool
from sqlalchemy import and_, case, func, or_, select, update

from extensions import db
from models import Message, Recipient
from models.message import (
    MESSAGE_FAILED,
    MESSAGE_SENDING,
    MESSAGE_SENT,
    RECIPIENT_DELIVERED,
    RECIPIENT_FAILED,
    RECIPIENT_PENDING,
    RECIPIENT_SENDING,
    RECIPIENT_SENT,
)
from services import analytics, messages, metrics, notifications, realtime, rooms
from services.providers import DeliveryReceipt, SendResult, SimulatedProvider, SmsProvider
from services.sms_encoding import segment_cost

log = logging.getLogger(__name__)

_RECIPIENT_EVENT_COLUMNS = (Recipient.id, Recipient.message_id, Recipient.phone,
                            Recipient.status, Recipient.version, Recipient.error_code,
                            Recipient.error_message, Recipient.cost,
                            Recipient.provider_message_id)
# A receipt may move a recipient only forwards: from these states to its own.
_RECEIPT_FROM = {
    RECIPIENT_DELIVERED: (RECIPIENT_SENT,),
    RECIPIENT_FAILED: (RECIPIENT_SENT,),
}

RECEIPT_RETRY_INTERVAL = 0.5
RECEIPT_RETRY_WINDOW = 60.0

_dispatcher: Dispatcher | None = None


def build_provider(app: Flask, on_receipt) -> SmsProvider:
    name = app.config["SMS_PROVIDER"]
    if name == "simulated":
        return SimulatedProvider(
            latency=app.config["SIMULATED_SMS_LATENCY"],
            receipt_delay=app.config["SIMULATED_RECEIPT_DELAY"],
            on_receipt=on_receipt,
            send_log=app.config["SIMULATED_SMS_SEND_LOG"],
        )
    raise RuntimeError(f"unknown SMS_PROVIDER {name!r}")


def wake_dispatcher() -> None:
    """New work was committed: let this node's dispatcher claim it now, not at its next poll."""
    if _dispatcher is not None:
        _dispatcher.wake.set()


def _now() -> datetime:
    return datetime.now(UTC)


def claim_batch(node_id: str, limit: int) -> list[Any]:
    """Claim up to ``limit`` recipients for this node; returns their event columns."""
    now = _now()
    stale = now - timedelta(seconds=current_app.config["DISPATCH_CLAIM_TIMEOUT"])
    candidates = (
        select(Recipient.id)
        .where(or_(Recipient.status == RECIPIENT_PENDING,
                   and_(Recipient.status == RECIPIENT_SENDING, Recipient.claimed_at < stale)))
        .order_by(Recipient.id)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    claimed = db.session.execute(
        update(Recipient)
        .where(Recipient.id.in_(candidates.scalar_subquery()))
        .values(status=RECIPIENT_SENDING, claimed_by=node_id, claimed_at=now,
                attempts=Recipient.attempts + 1, version=Recipient.version + 1, updated_at=now)
        .returning(*_RECIPIENT_EVENT_COLUMNS)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return sorted(claimed, key=lambda row: row.id)


def backlog() -> int:
    """Recipients not yet sent, on every node."""
    return db.session.scalar(
        select(func.count()).select_from(Recipient)
        .where(Recipient.status.in_((RECIPIENT_PENDING, RECIPIENT_SENDING)))
    ) or 0


def release_own_claims(node_id: str) -> int:
    """At start: what a previous run of this node claimed but never recorded goes back."""
    released = db.session.execute(
        update(Recipient)
        .where(Recipient.status == RECIPIENT_SENDING, Recipient.claimed_by == node_id)
        .values(status=RECIPIENT_PENDING, claimed_by=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return released or 0


def record_outcomes(node_id: str, outcomes: list[tuple[Any, SendResult]]) -> list[int]:
    """Store a batch of send results; returns the ids of messages that just completed.

    Only rows still ``SENDING`` under this node's claim move, so a claim that went
    stale and was taken over elsewhere is never counted twice.
    """
    if not outcomes:
        return []
    price = current_app.config["SMS_PRICE_PER_SEGMENT"]
    message_ids = {row.message_id for row, _ in outcomes}
    owners, segments = {}, {}
    for message_id, user_id, count in db.session.execute(
            select(Message.id, Message.user_id, Message.segments)
            .where(Message.id.in_(message_ids))).all():
        owners[message_id], segments[message_id] = user_id, count
    now = _now()
    by_id = {row.id: (row, result) for row, result in outcomes}

    def per_row(value_of) -> Any:
        return case({rid: value_of(row, result) for rid, (row, result) in by_id.items()},
                    value=Recipient.id)

    recorded = db.session.execute(
        update(Recipient)
        .where(Recipient.id.in_(by_id), Recipient.status == RECIPIENT_SENDING,
               Recipient.claimed_by == node_id)
        .values(
            status=per_row(lambda row, r: RECIPIENT_SENT if r.accepted else RECIPIENT_FAILED),
            provider_message_id=per_row(lambda row, r: r.provider_message_id),
            error_code=per_row(lambda row, r: r.error_code),
            error_message=per_row(lambda row, r: r.error_message),
            cost=per_row(lambda row, r: segment_cost(segments[row.message_id], price)
                         if r.accepted else Decimal("0")),
            sent_at=now, updated_at=now, version=Recipient.version + 1,
        )
        .returning(*_RECIPIENT_EVENT_COLUMNS)
        .execution_options(synchronize_session=False)
    ).all()
    completed = _count_into_messages(recorded, now)
    for row in recorded:
        metrics.recipients_sent.labels(row.status.lower()).inc()
    analytics.mark_changed({owners[row.message_id] for row in recorded})
    db.session.commit()
    _announce(recorded, completed)
    return completed


def _count_into_messages(recorded: list[Any], now: datetime) -> list[int]:
    totals: dict[int, list] = defaultdict(lambda: [0, 0, Decimal("0")])
    for row in recorded:
        total = totals[row.message_id]
        if row.status == RECIPIENT_SENT:
            total[0] += 1
            total[2] += row.cost
        else:
            total[1] += 1
    completed = []
    for message_id, (sent, failed, cost) in totals.items():
        counts = db.session.execute(
            update(Message).where(Message.id == message_id)
            .values(success_count=Message.success_count + sent,
                    failed_count=Message.failed_count + failed,
                    cost=Message.cost + cost, version=Message.version + 1, updated_at=now)
            .returning(Message.success_count, Message.failed_count, Message.recipient_count)
            .execution_options(synchronize_session=False)
        ).one()
        if counts.success_count + counts.failed_count >= counts.recipient_count:
            final = MESSAGE_SENT if counts.success_count else MESSAGE_FAILED
            finished = db.session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == MESSAGE_SENDING)
                .values(status=final, completed_at=now, version=Message.version + 1)
                .returning(Message.id)
                .execution_options(synchronize_session=False)
            ).first()
            if finished is not None:
                completed.append(message_id)
    return completed


def emit_recipient_updates(rows: list[Any]) -> None:
    realtime.emit_each(((rooms.message_room(row.message_id),
                         messages.recipient_update_payload(row)) for row in rows),
                       "recipient_update")


def _announce(recorded: list[Any], completed: list[int]) -> None:
    emit_recipient_updates(recorded)
    if _dispatcher is not None:
        _dispatcher.message_changed({row.message_id for row in recorded})
    for message_id in completed:
        _announce_completion(message_id)


def _announce_completion(message_id: int) -> None:
    """The final ``message_update`` at once, then the owner's notification."""
    message = db.session.get(Message, message_id)
    emit_message_update(message)
    if message.status == MESSAGE_SENT:
        title, kind = "Message sent", "message_sent"
        text = f"Sent to {message.success_count} of {message.recipient_count} recipients"
        if message.failed_count:
            text += f"; {message.failed_count} failed"
    else:
        title, kind = "Message failed", "message_failed"
        text = f"None of the {message.recipient_count} recipients could be sent to"
    notifications.notify_user(message.user_id, title, text, kind,
                              {"messageId": str(message.id), "cost": messages.money(message.cost)})


def emit_message_update(message: Message) -> None:
    """To the owner and to the message's trackers; a socket in both rooms gets it once."""
    realtime.emit_to_rooms([rooms.user_room(message.user_id), rooms.message_room(message.id)],
                           "message_update", messages.message_update_payload(message))


def apply_receipts(receipts: list[DeliveryReceipt]) -> tuple[int, set[str]]:
    """Apply delivery receipts, from the webhook or the simulator.

    Returns how many recipients changed, and the provider ids of receipts that
    may apply later: a receipt can overtake the commit that records its send.
    Idempotent: a repeated receipt, or one that would move a recipient
    backwards, changes nothing.
    """
    now = _now()
    changed: list[Any] = []
    by_status: dict[str, list[DeliveryReceipt]] = defaultdict(list)
    for receipt in receipts:
        if receipt.status in _RECEIPT_FROM:
            by_status[receipt.status].append(receipt)
    for status, group in by_status.items():
        errors = {r.provider_message_id: r for r in group}
        values: dict[str, Any] = {"status": status, "updated_at": now,
                                  "version": Recipient.version + 1}
        if status == RECIPIENT_DELIVERED:
            values["delivered_at"] = now
        else:
            values["error_code"] = case(
                {pid: r.error_code or "delivery_failed" for pid, r in errors.items()},
                value=Recipient.provider_message_id)
            values["error_message"] = case(
                {pid: r.error_message or "Delivery failed" for pid, r in errors.items()},
                value=Recipient.provider_message_id)
        changed += db.session.execute(
            update(Recipient)
            .where(Recipient.provider_message_id.in_(errors),
                   Recipient.status.in_(_RECEIPT_FROM[status]))
            .values(**values)
            .returning(*_RECIPIENT_EVENT_COLUMNS)
            .execution_options(synchronize_session=False)
        ).all()
    delivered: dict[int, int] = defaultdict(int)
    for row in changed:
        if row.status == RECIPIENT_DELIVERED:
            delivered[row.message_id] += 1
    for message_id, count in delivered.items():
        db.session.execute(
            update(Message).where(Message.id == message_id)
            .values(delivered_count=Message.delivered_count + count,
                    version=Message.version + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    if changed:
        analytics.mark_changed(set(db.session.scalars(
            select(Message.user_id).where(Message.id.in_({row.message_id for row in changed}))
        )))
    db.session.commit()
    metrics.receipts_applied.inc(len(changed))
    emit_recipient_updates(changed)
    if _dispatcher is not None:
        _dispatcher.message_changed(set(delivered))
    unmatched = {r.provider_message_id for r in receipts} - {
        row.provider_message_id for row in changed}
    # Settled: already DELIVERED or FAILED, so the receipt is a repeat or would go
    # backwards. Anything else (no such id yet, or a send committed after the update
    # above looked) is worth another try.
    settled = set(db.session.scalars(select(Recipient.provider_message_id).where(
        Recipient.provider_message_id.in_(unmatched),
        Recipient.status.in_((RECIPIENT_DELIVERED, RECIPIENT_FAILED))))) if unmatched else set()
    db.session.commit()
    return len(changed), unmatched - settled


class Dispatcher:
    """This node's sender: claims, sends concurrently, records; plus receipts and updates."""

    def __init__(self, app: Flask, node_id: str) -> None:
        self.app = app
        self.node_id = node_id
        self.wake = Event()
        self.running = False
        config = app.config
        self.batch_size = config["DISPATCH_BATCH_SIZE"]
        self.pool = Pool(config["DISPATCH_CONCURRENCY"])
        self.poll_interval = config["DISPATCH_POLL_INTERVAL"]
        self.update_interval = config["MESSAGE_UPDATE_INTERVAL"]
        self._receipts: list[DeliveryReceipt] = []
        self._receipts_ready = Event()
        self._dirty_messages: set[int] = set()
        self._early_since: dict[str, float] = {}
        self.provider = build_provider(app, self._queue_receipt)

    def start(self) -> None:
        global _dispatcher
        _dispatcher = self
        self.running = True
        with self.app.app_context():
            released = release_own_claims(self.node_id)
        if released:
            log.warning("re-queued %d recipients a previous run of %s had claimed",
                        released, self.node_id)
        for loop in (self._dispatch_loop, self._receipt_loop, self._update_loop):
            gevent.spawn(self._forever, loop)

    def stop(self) -> None:
        self.running = False
        self.wake.set()
        self._receipts_ready.set()

    def message_changed(self, message_ids: set[int]) -> None:
        self._dirty_messages |= message_ids

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
            claimed = claim_batch(self.node_id, self.batch_size)
            if not claimed:
                db.session.close()
                self.wake.wait(self.poll_interval)
                self.wake.clear()
                continue
            bodies = dict(db.session.execute(
                select(Message.id, Message.body)
                .where(Message.id.in_({row.message_id for row in claimed}))
            ).all())
            db.session.close()
            emit_recipient_updates(claimed)
            outcomes = list(self.pool.imap_unordered(
                lambda row, bodies=bodies: (row, self._send(row, bodies[row.message_id])),
                claimed))
            record_outcomes(self.node_id, outcomes)
            db.session.close()

    def _send(self, row: Any, body: str) -> SendResult:
        try:
            return self.provider.send(row.phone, body, str(row.id))
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
                _, early = apply_receipts(batch)
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
            dirty, self._dirty_messages = self._dirty_messages, set()
            if dirty:
                for message in db.session.scalars(
                        select(Message).where(Message.id.in_(dirty))):
                    emit_message_update(message)
                db.session.close()
            gevent.sleep(max(0.0, self.update_interval - (time.monotonic() - started)))
