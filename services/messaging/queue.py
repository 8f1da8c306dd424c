"""The send queue in SQL: claim recipients, record their outcomes, apply delivery receipts.

The recipients table is the queue. Each node's dispatcher
(``services.messaging.dispatcher``) claims a batch of ``PENDING``
recipients (and ``SENDING`` ones whose claim went stale, which is how a
crashed node's work is picked up), on PostgreSQL with
``FOR UPDATE SKIP LOCKED`` so nodes never claim the same row, and records
every outcome of the batch in one statement that only moves rows this node
still holds. Each function commits, then hands what changed to
``services.messaging.announcements``.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import and_, bindparam, case, func, or_, select, update

from extensions import db
from models import Message, Recipient
from models.message import MessageStatus, RecipientStatus
from services import analytics_marks
from services.messaging import announcements
from services.messaging.json_rows import json_rows
from services.messaging.providers import DeliveryReceipt, SendResult
from services.messaging.sms_encoding import segment_cost
from services.observability import metrics

log = logging.getLogger(__name__)

_recipients = Recipient.__table__
# What a ``recipient_update`` is made of; Core statements on the table return them
# without the ORM's bookkeeping.
_EVENT_COLUMNS = tuple(_recipients.c[name] for name in (
    "id", "message_id", "phone", "status", "version", "error_code", "error_message", "cost",
    "provider_message_id", "price_per_segment"))
_RESULT_COLUMNS = {name: _recipients.c[name].type for name in (
    "id", "status", "provider_message_id", "error_code", "error_message", "cost")}
_RECEIPT_COLUMNS = {name: _recipients.c[name].type for name in (
    "provider_message_id", "status", "error_code", "error_message")}
# A receipt moves a recipient only forwards: from SENT to one of these.
_RECEIPT_STATUSES = (RecipientStatus.DELIVERED, RecipientStatus.FAILED)

RELEASED_CLAIM = datetime(2000, 1, 1, tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def claim_batch(node_id: str, limit: int) -> list[Any]:
    """Claim up to ``limit`` recipients for this node; returns their event columns."""
    now = _now()
    stale = now - timedelta(seconds=current_app.config["DISPATCH_CLAIM_TIMEOUT"])
    # The first condition repeats the queue index's own, values written out: without
    # it SQLite does not see that the partial index applies and walks every recipient
    # ever stored.
    queued = bindparam("queued", (RecipientStatus.PENDING, RecipientStatus.SENDING), expanding=True,
                       literal_execute=True)
    candidates = (
        select(Recipient.id)
        .where(Recipient.status.in_(queued),
               or_(Recipient.status == RecipientStatus.PENDING,
                   and_(Recipient.status == RecipientStatus.SENDING, Recipient.claimed_at < stale)))
        .order_by(Recipient.id)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    claimed = db.session.execute(
        update(_recipients)
        .where(_recipients.c.id.in_(candidates.scalar_subquery()))
        .values(status=RecipientStatus.SENDING, claimed_by=node_id, claimed_at=now,
                attempts=_recipients.c.attempts + 1, version=_recipients.c.version + 1,
                updated_at=now)
        .returning(*_EVENT_COLUMNS)
    ).all()
    db.session.commit()
    return sorted(claimed, key=lambda row: row.id)


def backlog() -> int:
    """Recipients not yet sent, on every node."""
    return db.session.scalar(
        select(func.count()).select_from(Recipient)
        .where(Recipient.status.in_((RecipientStatus.PENDING, RecipientStatus.SENDING)))
    ) or 0


def release_own_claims(node_id: str) -> int:
    """At start: what a previous run of this node claimed but never recorded is offered again.

    The recipients stay ``SENDING`` (a status never moves backwards, and no
    event is owed), with a claim dated so long ago that the next claim, here
    or on any node, takes them at once and announces them with a new version.
    """
    released = db.session.execute(
        update(Recipient)
        .where(Recipient.status == RecipientStatus.SENDING, Recipient.claimed_by == node_id)
        .values(claimed_by=None, claimed_at=RELEASED_CLAIM)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return released or 0


def record_outcomes(node_id: str, outcomes: list[tuple[Any, SendResult]]) -> list[int]:
    """Store a batch of send results; returns the ids of messages that just completed.

    Only rows still ``SENDING`` under this node's claim move, so a claim that went
    stale and was taken over elsewhere is never counted twice. The whole batch is
    one ``UPDATE ... FROM`` its results, and ``RETURNING`` says which rows moved.
    """
    if not outcomes:
        return []
    message_ids = {row.message_id for row, _ in outcomes}
    owners, segments = {}, {}
    for message_id, user_id, count in db.session.execute(
            select(Message.id, Message.user_id, Message.segments)
            .where(Message.id.in_(message_ids))).all():
        owners[message_id], segments[message_id] = user_id, count
    now = _now()
    results = json_rows("result", columns=_RESULT_COLUMNS, rows=[
        {"id": row.id,
         "status": RecipientStatus.SENT if result.accepted else RecipientStatus.FAILED,
         "provider_message_id": result.provider_message_id,
         "error_code": result.error_code, "error_message": result.error_message,
         "cost": segment_cost(segments[row.message_id], row.price_per_segment)
                 if result.accepted else Decimal("0")}
        for row, result in outcomes
    ])
    recorded = db.session.execute(
        update(_recipients)
        .where(_recipients.c.id == results.c.id, _recipients.c.status == RecipientStatus.SENDING,
               _recipients.c.claimed_by == node_id)
        .values(status=results.c.status, provider_message_id=results.c.provider_message_id,
                error_code=results.c.error_code, error_message=results.c.error_message,
                cost=results.c.cost, sent_at=now, updated_at=now, version=_recipients.c.version + 1)
        .returning(*_EVENT_COLUMNS)
    ).all()
    completed = _count_into_messages(recorded, owners, now)
    outcomes_by_status = Counter(row.status for row in recorded)
    for status, count in outcomes_by_status.items():
        metrics.recipients_sent.labels(status.lower()).inc(count)
    analytics_marks.mark_changed({owners[row.message_id] for row in recorded})
    db.session.commit()
    announcements.outcomes_recorded(recorded, messages_by_id(completed))
    return completed


def _count_into_messages(recorded: list[Any], owners: dict[int, int],
                         now: datetime) -> list[int]:
    """Add the batch to its messages' counters, in (owner, message) order.

    Each message update also updates its owner's row of the day in
    ``message_daily_totals`` (a trigger); taking those row locks in one order
    keeps two nodes recording batches for the same users from deadlocking.
    """
    totals: dict[int, list] = defaultdict(lambda: [0, 0, Decimal("0")])
    for row in recorded:
        total = totals[row.message_id]
        if row.status == RecipientStatus.SENT:
            total[0] += 1
            total[2] += row.cost
        else:
            total[1] += 1
    completed = []
    for message_id in sorted(totals, key=lambda key: (owners[key], key)):
        sent, failed, cost = totals[message_id]
        counts = db.session.execute(
            update(Message).where(Message.id == message_id)
            .values(success_count=Message.success_count + sent,
                    failed_count=Message.failed_count + failed,
                    cost=Message.cost + cost, version=Message.version + 1, updated_at=now)
            .returning(Message.success_count, Message.failed_count, Message.recipient_count)
            .execution_options(synchronize_session=False)
        ).one()
        if counts.success_count + counts.failed_count >= counts.recipient_count:
            final = MessageStatus.SENT if counts.success_count else MessageStatus.FAILED
            finished = db.session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == MessageStatus.SENDING)
                .values(status=final, completed_at=now, version=Message.version + 1)
                .returning(Message.id)
                .execution_options(synchronize_session=False)
            ).first()
            if finished is not None:
                completed.append(message_id)
    return completed


def apply_receipts(receipts: list[DeliveryReceipt]) -> tuple[int, set[str]]:
    """Apply delivery receipts, from the webhook or the simulator, in one statement.

    Returns how many recipients changed, and the provider ids of receipts that
    may apply later: a receipt can overtake the commit that records its send.
    Idempotent: a repeated receipt, or one that would move a recipient
    backwards, changes nothing. Within a batch the first receipt for a provider
    id is the one that counts, as if the receipts were applied one by one.
    """
    now = _now()
    first: dict[str, dict[str, Any]] = {}
    for receipt in receipts:
        if receipt.status in _RECEIPT_STATUSES and receipt.provider_message_id not in first:
            failed = receipt.status == RecipientStatus.FAILED
            first[receipt.provider_message_id] = {
                "provider_message_id": receipt.provider_message_id, "status": receipt.status,
                "error_code": (receipt.error_code or "delivery_failed") if failed else None,
                "error_message": (receipt.error_message or "Delivery failed") if failed else None,
            }
    changed: list[Any] = []
    if first:
        batch = json_rows("receipt", columns=_RECEIPT_COLUMNS, rows=list(first.values()))
        changed = db.session.execute(
            update(_recipients)
            .where(_recipients.c.provider_message_id == batch.c.provider_message_id,
                   _recipients.c.status == RecipientStatus.SENT)
            .values(status=batch.c.status,
                    error_code=func.coalesce(batch.c.error_code, _recipients.c.error_code),
                    error_message=func.coalesce(batch.c.error_message, _recipients.c.error_message),
                    delivered_at=case((batch.c.status == RecipientStatus.DELIVERED, now),
                                      else_=_recipients.c.delivered_at),
                    updated_at=now, version=_recipients.c.version + 1)
            .returning(*_EVENT_COLUMNS)
        ).all()
    delivered: dict[int, int] = defaultdict(int)
    for row in changed:
        if row.status == RecipientStatus.DELIVERED:
            delivered[row.message_id] += 1
    owners: dict[int, int] = dict(db.session.execute(
        select(Message.id, Message.user_id)
        .where(Message.id.in_({row.message_id for row in changed}))).all()) if changed else {}
    # In (owner, message) order, like ``_count_into_messages``: each update also
    # locks the owner's row of the day in ``message_daily_totals``.
    for message_id in sorted(delivered, key=lambda key: (owners[key], key)):
        db.session.execute(
            update(Message).where(Message.id == message_id)
            .values(delivered_count=Message.delivered_count + delivered[message_id],
                    version=Message.version + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    analytics_marks.mark_changed(set(owners.values()))
    db.session.commit()
    metrics.receipts_applied.inc(len(changed))
    announcements.receipts_applied(changed, set(delivered))
    unmatched = {r.provider_message_id for r in receipts} - {
        row.provider_message_id for row in changed}
    # Settled: already DELIVERED or FAILED, so the receipt is a repeat or would go
    # backwards. Anything else (no such id yet, or a send committed after the update
    # above looked) is worth another try.
    settled = set(db.session.scalars(select(Recipient.provider_message_id).where(
        Recipient.provider_message_id.in_(unmatched),
        Recipient.status.in_((RecipientStatus.DELIVERED, RecipientStatus.FAILED))))
    ) if unmatched else set()
    db.session.commit()
    return len(changed), unmatched - settled


def message_bodies(message_ids: set[int]) -> dict[int, str]:
    """What each of these messages says, to send it."""
    return dict(db.session.execute(
        select(Message.id, Message.body).where(Message.id.in_(message_ids))).all())


def messages_by_id(message_ids: list[int] | set[int]) -> list[Message]:
    """These messages as stored now, in the order of ``message_ids``, to announce them."""
    if not message_ids:
        return []
    found = {message.id: message for message in db.session.scalars(
        select(Message).where(Message.id.in_(message_ids)))}
    return [found[message_id] for message_id in message_ids if message_id in found]
