"""The send queue in SQL: claim recipients, record their outcomes, apply delivery receipts.

The recipients table is the queue. Each node's dispatcher
(``services.messaging.dispatcher``) claims a batch of ``PENDING``
recipients (and ``SENDING`` ones whose claim went stale, which is how a
crashed node's work is picked up), on PostgreSQL with
``FOR UPDATE SKIP LOCKED`` so nodes never claim the same row, and records
every outcome of the batch in one statement that only moves rows this node
still holds. Each function commits, then hands what changed to
``services.messaging.announcements``.

At most once: with a provider that does not deduplicate, each recipient's
``submit_started_at`` is committed before it is submitted
(``mark_submitting``). A stale claim with that mark may have reached the
provider, so it is never claimed again: it becomes ``UNKNOWN``
(``ambiguous_submit``) until a receipt or an explicit ``retry`` says more.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict, namedtuple
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from flask import current_app
from sqlalchemy import (
    Integer,
    Select,
    Update,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)

from extensions import db
from models import Message, Recipient, RecipientPart
from models.message import UNFINISHED_MESSAGE_STATUSES, MessageStatus, RecipientStatus
from services import analytics_marks
from services.messaging import announcements, quiet_hours
from services.messaging.json_rows import among, json_rows, json_rows_value, json_table
from services.messaging.providers import Outcome, ProviderReceipt, SubmitResult
from services.messaging.sms_encoding import segment_cost
from services.messaging.status_counts import status_counts
from services.messaging.suppressions import ANY_SENDER, ON_LIST, SuppressionReason, add_opt_outs
from services.observability import metrics

log = logging.getLogger(__name__)

_recipients = Recipient.__table__
_messages = Message.__table__
_parts = RecipientPart.__table__
# What a ``recipient_update`` is made of; Core statements on the table return them
# without the ORM's bookkeeping.
_EVENT_COLUMNS = tuple(_recipients.c[name] for name in (
    "id", "message_id", "phone", "status", "version", "error_code", "error_message", "cost",
    "provider_message_id", "provider_status", "provider_error_code", "parts", "retryable",
    "price_per_segment"))
_RESULT_COLUMNS = {name: _recipients.c[name].type for name in (
    "id", "status", "provider_message_id", "error_code", "error_message", "cost",
    "provider_status", "provider_error_code", "parts", "retryable")}
_RECEIPT_COLUMNS = {name: _recipients.c[name].type for name in (
    "id", "version", "status", "provider_message_id", "error_code", "error_message", "cost",
    "provider_status", "provider_error_code", "parts")}
_PART_COLUMNS = {name: _parts.c[name].type for name in (
    "provider_message_id", "recipient_id", "part_number", "status", "provider_status",
    "provider_error_code")}

# What each outcome makes of the recipient (a throttled one goes back to PENDING).
_OUTCOME_STATUS = {
    Outcome.ACCEPTED: RecipientStatus.SENT,
    Outcome.REJECTED: RecipientStatus.FAILED,
    Outcome.OPTED_OUT: RecipientStatus.SUPPRESSED,
    Outcome.UNKNOWN: RecipientStatus.UNKNOWN,
}
_OUTCOME_ERRORS = {
    Outcome.REJECTED: ("rejected", "The provider refused the message"),
    Outcome.OPTED_OUT: ("opted_out", "The number opted out of messages from this sender"),
    Outcome.UNKNOWN: ("ambiguous_submit", "The provider may or may not have taken the message"),
}
AMBIGUOUS = ("ambiguous_submit", "The send was interrupted after it may have reached the provider")
# A receipt moves a recipient from one of these only.
_RECEIPT_FROM = (RecipientStatus.SENT, RecipientStatus.UNKNOWN)
_RECEIPT_STATUSES = (RecipientStatus.SENT, RecipientStatus.DELIVERED, RecipientStatus.FAILED,
                     RecipientStatus.UNKNOWN)
# Back to the queue on request (``retry``): may not have been sent, or failed for a while.
_RETRIED = (RecipientStatus.UNKNOWN, RecipientStatus.EXPIRED)
THROTTLE_BACKOFF_MAX = 60.0

RELEASED_CLAIM = datetime(2000, 1, 1, tzinfo=UTC)
# Messages whose recipients may be claimed; ``HELD_MESSAGE_STATUSES`` (and final ones) not.
SENDABLE_MESSAGE_STATUSES = (MessageStatus.SCHEDULED, MessageStatus.SENDING)
# Where this process's rotation between owners stands (``_owners_in_turn``).
_turn = 0
# What the dispatcher records for a claimed recipient of a message paused or canceled since
# its claim: not submitted, back to the queue at once as a throttled one with no delay
# (``cancel_queued`` then cancels it if its message was canceled).
HELD = SubmitResult(Outcome.THROTTLED, retry_after=0.0)
# A message may be paused from ``SENDABLE_MESSAGE_STATUSES``, resumed from ``PAUSED``,
# canceled from any of them.
CANCELABLE = UNFINISHED_MESSAGE_STATUSES


def _in_index(name: str, *statuses: RecipientStatus) -> Any:
    """``status IN (...)`` (or ``=``) with the values written out, as a partial index's own.

    SQLite uses a partial index only when the query repeats its condition, values
    and all; without it the queue's sweeps would read every recipient ever stored.
    """
    if len(statuses) == 1:
        return _recipients.c.status == bindparam(name, statuses[0], literal_execute=True)
    return _recipients.c.status.in_(bindparam(name, statuses, expanding=True,
                                              literal_execute=True))


def _now() -> datetime:
    return datetime.now(UTC)


# The ``now`` parameter of the statements built once below.
_NOW = bindparam("now", type_=_recipients.c.updated_at.type)


@lru_cache(maxsize=8)
def _tuple_class(fields: tuple[str, ...]) -> type:
    return namedtuple("Recipient", fields)


def _plain(rows: list[Any]) -> list[Any]:
    """A batch's rows as named tuples: a SQLAlchemy ``Row`` finds an attribute only after
    a failed class lookup (about a microsecond), and each claimed or recorded row is read
    a score of times on its way through the dispatcher, the record and the events."""
    if not rows:
        return rows
    make = _tuple_class(rows[0]._fields)._make
    return [make(row) for row in rows]


def validity_seconds(message_validity: int | None) -> int:
    """How long a recipient of a message with this ``validity_seconds`` may wait to be sent:
    its own, else (a message older than the setting, or a new one without one)
    ``SMS_VALIDITY_SECONDS``."""
    if message_validity is not None:
        return message_validity
    return int(current_app.config["SMS_VALIDITY_SECONDS"])


@lru_cache(maxsize=4)
def _claim_statement(dialect: str, exactly_once: bool) -> Update:
    """One owner's share of a claim (``claim_batch``), built once per database and kind of
    provider: built anew for each batch, its construction and cache key cost more
    Python than the statement took to run."""
    recipients, messages = _recipients.c, _messages.c
    now = bindparam("now", type_=recipients.updated_at.type)
    taken_over = and_(recipients.status == RecipientStatus.SENDING,
                      recipients.claimed_at < bindparam("stale", type_=recipients.claimed_at.type))
    if not exactly_once:
        taken_over = and_(taken_over, recipients.submit_started_at.is_(None))
    # The first condition repeats the queue index's own, values written out: without
    # it SQLite does not see that the partial index applies and walks every recipient
    # ever stored.
    claimable = and_(
        _in_index("queued", RecipientStatus.PENDING, RecipientStatus.SENDING),
        or_(and_(recipients.status == RecipientStatus.PENDING,
                 or_(recipients.not_before.is_(None), recipients.not_before <= now),
                 or_(recipients.expires_at.is_(None), recipients.expires_at > now)),
            taken_over))
    # Only the owner's scheduled and sending messages: a paused or canceled one's
    # recipients stay where they are.
    candidates = (
        select(recipients.id)
        .where(claimable, recipients.message_id.in_(
            select(messages.id).where(messages.user_id == bindparam("owner"),
                                      messages.status.in_(SENDABLE_MESSAGE_STATUSES))))
        .order_by(recipients.id)
        .limit(bindparam("share", type_=Integer))
    )
    if dialect == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    return (
        update(_recipients)
        .where(recipients.id.in_(candidates.scalar_subquery()))
        .values(status=RecipientStatus.SENDING, claimed_by=bindparam("node"), claimed_at=now,
                attempts=recipients.attempts + 1, version=recipients.version + 1, updated_at=now)
        .returning(*_EVENT_COLUMNS, recipients.attempts)
    )


def claim_batch(node_id: str, limit: int, *, exactly_once: bool = True,
                now: datetime | None = None) -> list[Any]:
    """Claim up to ``limit`` recipients for this node; returns their event columns.

    A stale claim is taken over only when it was certainly not submitted (no
    mark), unless the provider deduplicates (``exactly_once``); the marked
    ones become ``UNKNOWN`` first. A throttled recipient waits for its
    ``not_before``; one past its ``expires_at`` is left for ``expire``; a paused or
    canceled message's are left where they are.

    Fair sharing: the batch is split between the owners with messages to send,
    each getting an equal share of it from their oldest recipients, so one
    user's small message goes out in the next batch however many recipients
    another user has queued. With more owners than recipients in a batch, the
    owners take turns (``_owners_in_turn``).
    """
    now = now or _now()
    config = current_app.config
    stale = now - timedelta(seconds=config["DISPATCH_CLAIM_TIMEOUT"])
    if not exactly_once:
        _settle_ambiguous(_SETTLE_STALE_SUBMITTED, now, stale=stale)
    owners = _owners_in_turn()
    share = max(1, limit // len(owners)) if owners else 0
    statement = _claim_statement(db.engine.dialect.name, exactly_once)
    claimed: list[Any] = []
    for owner in owners[:limit]:
        claimed += db.session.execute(statement, {
            "owner": owner, "share": share, "node": node_id, "now": now, "stale": stale}).all()
    claimed = _hold_back_quiet(_plain(claimed), now)
    message_ids = {row.message_id for row in claimed}
    # A scheduled message whose time came is sending from its first claim on.
    if message_ids:
        db.session.execute(_scheduled_statement(db.engine.dialect.name),
                           {"ids": list(message_ids)})
    # Their messages' statusCounts changed: a new version for each.
    _count_into_messages({message_id: _Totals() for message_id in message_ids}, now)
    db.session.commit()
    return sorted(claimed, key=lambda row: row.id)


@lru_cache(maxsize=2)
def _scheduled_statement(dialect: str) -> Update:
    """Scheduled messages among ``ids`` become sending; built once, as ``_claim_statement``."""
    return (update(_messages)
            .where(among(dialect, _messages.c.id, "ids"),
                   _messages.c.status == MessageStatus.SCHEDULED)
            .values(status=MessageStatus.SENDING))


def _hold_back_quiet(claimed: list[Any], now: datetime) -> list[Any]:
    """Those of ``claimed`` whose message keeps quiet hours and who are inside them now go
    back to ``PENDING`` until the window ends for them; the rest are returned.

    Each recipient's release was computed when its message was created, but a
    backlog (a slow pace, a long pause) can bring its turn after the window
    has opened again. The wait does not count against its validity: its
    ``expires_at`` moves by as much. Nothing is announced: the recipient is
    as it was, and its next update carries a higher version anyway.
    """
    window = current_app.config["QUIET_HOURS"]
    if window is None or not claimed:
        return claimed
    quiet_messages = set(db.session.scalars(select(Message.id).where(
        Message.id.in_({row.message_id for row in claimed}), Message.quiet_hours.is_(True))))
    if not quiet_messages:
        return claimed
    releases: dict[tuple[str, ...], datetime] = {}
    release_of: dict[int, datetime] = {}
    for row in claimed:
        if row.message_id in quiet_messages:
            zones = quiet_hours.zones_of(row.phone)
            if zones not in releases:
                releases[zones] = quiet_hours.release_at(zones, window, now)
            if releases[zones] > now:
                release_of[row.id] = releases[zones]
    if not release_of:
        return claimed
    # One statement per release and former expiry: a message's recipients share both
    # but for their time zones.
    waits: dict[tuple[datetime, datetime], list[int]] = defaultdict(list)
    for recipient_id, expires_at in db.session.execute(
            select(_recipients.c.id, _recipients.c.expires_at)
            .where(_recipients.c.id.in_(release_of))):
        waits[release_of[recipient_id], expires_at].append(recipient_id)
    for (release, expires_at), ids in waits.items():
        db.session.execute(
            update(_recipients).where(_recipients.c.id.in_(ids))
            .values(status=RecipientStatus.PENDING, claimed_by=None, claimed_at=None,
                    not_before=release, attempts=_recipients.c.attempts - 1,
                    expires_at=None if expires_at is None else expires_at + (release - now)))
    return [row for row in claimed if row.id not in release_of]


# Built once, as ``_claim_statement``: a claim asks it for every batch.
_OWNERS_SENDING = (select(_messages.c.user_id)
                   .where(_messages.c.status.in_(SENDABLE_MESSAGE_STATUSES))
                   .distinct().order_by(_messages.c.user_id))


def _owners_in_turn() -> list[int]:
    """The owners of scheduled or sending messages, starting one further on at each call,
    so that when a batch cannot give each of them a recipient every one still gets turns."""
    global _turn
    owners = list(db.session.scalars(_OWNERS_SENDING))
    if not owners:
        return owners
    _turn = (_turn + 1) % len(owners)
    return owners[_turn:] + owners[:_turn]


_BACKLOG = (select(func.count()).select_from(_recipients)
            .where(_in_index("queued", RecipientStatus.PENDING, RecipientStatus.SENDING)))


def backlog() -> int:
    """Recipients not yet sent, on every node."""
    return db.session.scalar(_BACKLOG) or 0


def release_own_claims(node_id: str, *, exactly_once: bool = True) -> int:
    """At start: what a previous run of this node claimed but never recorded is offered again.

    The recipients stay ``SENDING`` (a status never moves backwards, and no
    event is owed), with a claim dated so long ago that the next claim, here
    or on any node, takes them at once and announces them with a new version.
    Those the previous run may have submitted become ``UNKNOWN`` instead,
    unless the provider deduplicates.
    """
    own = and_(_recipients.c.status == RecipientStatus.SENDING,
               _recipients.c.claimed_by == node_id)
    if not exactly_once:
        submitted = and_(own, _recipients.c.submit_started_at.is_not(None))
        _settle_ambiguous(_settle_statement(submitted), _now())
    released = db.session.execute(
        update(Recipient)
        .where(Recipient.status == RecipientStatus.SENDING, Recipient.claimed_by == node_id)
        .values(claimed_by=None, claimed_at=RELEASED_CLAIM)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return released or 0


def _settle_statement(where: Any) -> Update:
    """The claims ``where`` picks become ``UNKNOWN`` as of the ``now`` parameter."""
    return (update(_recipients).where(where)
            .values(status=RecipientStatus.UNKNOWN, error_code=AMBIGUOUS[0],
                    error_message=AMBIGUOUS[1], claimed_by=None, updated_at=_NOW,
                    version=_recipients.c.version + 1)
            .returning(*_EVENT_COLUMNS))


# Claims older than the ``stale`` parameter that may have reached the provider: built
# once, as every claim runs it, idle or not (see ``_EXPIRE``).
_SETTLE_STALE_SUBMITTED = _settle_statement(and_(
    _in_index("queued", RecipientStatus.PENDING, RecipientStatus.SENDING),
    _recipients.c.status == RecipientStatus.SENDING,
    _recipients.c.claimed_at < bindparam("stale", type_=_recipients.c.claimed_at.type),
    _recipients.c.submit_started_at.is_not(None)))


def _settle_ambiguous(statement: Update, now: datetime, **parameters: Any) -> None:
    """Claims that may have reached the provider become ``UNKNOWN``, never submitted again."""
    settled = db.session.execute(statement, {"now": now, **parameters}).all()
    if settled:
        log.warning("%d recipients may have been submitted by a node that stopped: UNKNOWN",
                    len(settled))
        _settle_into_messages(settled, now)


@lru_cache(maxsize=2)
def _mark_statement(dialect: str) -> Update:
    """Built once per database: the mark runs for every few submissions, and building the
    statement (its ``IN`` list coerced value by value, its cache key) cost more than
    running it."""
    return (
        update(_recipients)
        .where(among(dialect, _recipients.c.id, "ids"),
               _recipients.c.status == RecipientStatus.SENDING,
               _recipients.c.claimed_by == bindparam("node"),
               _recipients.c.submit_started_at.is_(None))
        .values(submit_started_at=bindparam("now", type_=_recipients.c.submit_started_at.type))
        .returning(_recipients.c.id)
    )


def mark_submitting(node_id: str, recipient_ids: list[int],
                    now: datetime | None = None) -> set[int]:
    """Mark these claims as about to be submitted, and commit; returns those still this node's.

    One statement for every submission about to start on this node (the
    dispatcher gathers them), so the mark costs a share of one ``UPDATE`` and
    one commit. A recipient not returned was taken over elsewhere: it must not
    be submitted here.
    """
    marked = db.session.scalars(_mark_statement(db.engine.dialect.name),
                                {"ids": recipient_ids, "node": node_id,
                                 "now": now or _now()}).all()
    db.session.commit()
    return set(marked)


@dataclass
class _Totals:
    """What a batch adds to one message's counters."""

    accepted: int = 0
    failed: int = 0
    delivered: int = 0
    settled: int = 0
    cost: Decimal = field(default_factory=lambda: Decimal("0"))


def record_outcomes(node_id: str, outcomes: list[tuple[Any, SubmitResult]],
                    now: datetime | None = None, *, sender: str = ANY_SENDER) -> list[int]:
    """Store a batch of submission outcomes; returns the ids of messages that just completed.

    Only rows still ``SENDING`` under this node's claim move, so a claim that went
    stale and was taken over elsewhere is never counted twice. The whole batch is
    one ``UPDATE ... FROM`` its results, and ``RETURNING`` says which rows moved;
    throttled ones go back to the queue until their ``not_before``. A number the
    provider reports opted out joins the suppression list for ``sender``.
    """
    if not outcomes:
        return []
    now = now or _now()
    message_ids = {row.message_id for row, _ in outcomes}
    dialect = db.engine.dialect.name
    segments = _of_messages("segments", message_ids)
    throttled = [(row, result) for row, result in outcomes if result.outcome == Outcome.THROTTLED]
    rows = []
    part_ids: dict[int, tuple[str, ...]] = {}
    for row, result in outcomes:
        if result.outcome == Outcome.THROTTLED:
            continue
        accepted = result.outcome == Outcome.ACCEPTED
        parts = result.parts or segments[row.message_id]
        code, message = _OUTCOME_ERRORS.get(result.outcome, (None, None))
        if len(result.part_ids) > 1 and accepted:
            part_ids[row.id] = result.part_ids
        rows.append({
            "id": row.id, "status": _OUTCOME_STATUS[result.outcome],
            "provider_message_id": result.provider_message_id or (result.part_ids or (None,))[0],
            "error_code": None if accepted else (result.error_code or code),
            "error_message": None if accepted else (result.error_message or message),
            "cost": segment_cost(parts, row.price_per_segment) if accepted else Decimal("0"),
            "provider_status": result.provider_status,
            "provider_error_code": result.provider_error_code,
            "parts": parts, "retryable": result.retryable and not accepted,
        })
    recorded: list[Any] = []
    if rows:
        recorded = _plain(db.session.execute(_record_statement(dialect), {
            "result_rows": json_rows_value(dialect, _RESULT_COLUMNS, rows),
            "node": node_id, "now": now}).all())
        _store_parts([row.id for row in recorded if row.id in part_ids], part_ids)
        suppressed = {row.id for row in recorded if row.status == RecipientStatus.SUPPRESSED}
        add_opt_outs([row.phone for row, result in outcomes
                      if row.id in suppressed and result != ON_LIST],
                     sender=sender, reason=SuppressionReason.PROVIDER)
    requeued = _requeue_throttled(node_id, throttled, now)
    if requeued:
        requeued += _cancel_queued({row.message_id for row in requeued}, now)
    completed = _settle_into_messages(recorded, now)
    for status, count in Counter(row.status for row in recorded).items():
        metrics.recipients_sent.labels(status.lower()).inc(count)
    db.session.commit()
    announcements.outcomes_recorded(recorded + requeued, messages_by_id(completed))
    return completed


@lru_cache(maxsize=2)
def _record_statement(dialect: str) -> Update:
    """``record_outcomes``'s update from the batch's results (``result_rows``), built once."""
    results = json_table(dialect, "result", _RESULT_COLUMNS)
    recipients = _recipients.c
    now = bindparam("now", type_=recipients.updated_at.type)
    return (
        update(_recipients)
        .where(recipients.id == results.c.id,
               recipients.status == RecipientStatus.SENDING,
               recipients.claimed_by == bindparam("node"))
        .values(status=results.c.status, provider_message_id=results.c.provider_message_id,
                error_code=results.c.error_code, error_message=results.c.error_message,
                cost=results.c.cost, provider_status=results.c.provider_status,
                provider_error_code=results.c.provider_error_code, parts=results.c.parts,
                retryable=results.c.retryable, sent_at=now, updated_at=now,
                version=recipients.version + 1)
        .returning(*_EVENT_COLUMNS)
    )


def _store_parts(recipient_ids: list[int], part_ids: dict[int, tuple[str, ...]]) -> None:
    """The provider id of each part of the recipients sent in several."""
    if not recipient_ids:
        return
    batch = json_rows("part", columns=_PART_COLUMNS, rows=[
        {"provider_message_id": part_id, "recipient_id": recipient_id, "part_number": number,
         "status": None, "provider_status": None, "provider_error_code": None}
        for recipient_id in recipient_ids
        for number, part_id in enumerate(part_ids[recipient_id], start=1)])
    db.session.execute(insert(_parts).from_select(list(_PART_COLUMNS), select(
        *(batch.c[name] for name in _PART_COLUMNS))))


def throttle_delay(result: SubmitResult, attempts: int) -> float:
    """How long a throttled recipient waits: the provider's ``Retry-After``, else a backoff."""
    if result.retry_after is not None:
        return max(0.0, result.retry_after)
    return min(THROTTLE_BACKOFF_MAX, 2.0 ** max(0, min(attempts - 1, 6)))


def _requeue_throttled(node_id: str, throttled: list[tuple[Any, SubmitResult]],
                       now: datetime) -> list[Any]:
    """Throttled recipients go back to ``PENDING`` until their delay has passed.

    Rare enough (a burst of them slows the whole pace down) to take a statement
    per distinct delay.
    """
    by_delay: dict[float, list[int]] = defaultdict(list)
    for row, result in throttled:
        by_delay[throttle_delay(result, getattr(row, "attempts", 1))].append(row.id)
    requeued: list[Any] = []
    for delay, ids in by_delay.items():
        requeued += db.session.execute(
            update(_recipients)
            .where(_recipients.c.id.in_(ids), _recipients.c.status == RecipientStatus.SENDING,
                   _recipients.c.claimed_by == node_id)
            .values(status=RecipientStatus.PENDING, claimed_by=None, claimed_at=None,
                    submit_started_at=None, not_before=now + timedelta(seconds=delay),
                    updated_at=now, version=_recipients.c.version + 1)
            .returning(*_EVENT_COLUMNS)
        ).all()
    return requeued


def _settle_into_messages(recorded: list[Any], now: datetime) -> list[int]:
    """Recipients that left the queue: add them to their messages' counters."""
    totals: dict[int, _Totals] = defaultdict(_Totals)
    for row in recorded:
        total = totals[row.message_id]
        total.settled += 1
        if row.status == RecipientStatus.SENT:
            total.accepted += 1
            total.cost += row.cost
        elif row.status == RecipientStatus.FAILED:
            total.failed += 1
    return _count_into_messages(totals, now)


def _count_into_messages(totals: dict[int, _Totals], now: datetime) -> list[int]:
    """Add each message's totals to its counters, in (owner, message) order.

    Each message update also updates its owner's row of the day in
    ``message_daily_totals`` (a trigger); taking those row locks in one order
    keeps two nodes recording batches for the same users from deadlocking.
    Returns the messages this made final: sent if any recipient was accepted,
    else failed.
    """
    if not totals:
        return []
    owners = _of_messages("user_id", totals)
    counters, finish = _counter_statements()
    completed = []
    for message_id in sorted(totals, key=lambda key: (owners[key], key)):
        total = totals[message_id]
        counts = db.session.execute(counters, {
            "message": message_id, "accepted": total.accepted, "failed": total.failed,
            "delivered": total.delivered, "settled": total.settled, "cost": total.cost,
            "now": now}).one()
        if counts.settled_count < counts.recipient_count:
            continue
        final = MessageStatus.SENT if counts.success_count else MessageStatus.FAILED
        if counts.status == final:
            continue
        # Final now, or a receipt proved that a FAILED message's recipient was accepted.
        finished = db.session.execute(finish, {"message": message_id, "final": final,
                                               "now": now}).first()
        if finished is not None:
            completed.append(message_id)
    if any(total != _Totals() for total in totals.values()):
        analytics_marks.mark_changed(set(owners.values()))
    return completed


@lru_cache(maxsize=1)
def _counter_statements() -> tuple[Update, Update]:
    """``_count_into_messages``'s two updates, built once: every claim, record and batch of
    receipts runs them for each of its messages."""
    messages = _messages.c
    now = bindparam("now", type_=messages.updated_at.type)
    this_message = messages.id == bindparam("message")
    counters = (
        update(_messages).where(this_message)
        .values(success_count=messages.success_count + bindparam("accepted", type_=Integer),
                failed_count=messages.failed_count + bindparam("failed", type_=Integer),
                delivered_count=messages.delivered_count + bindparam("delivered", type_=Integer),
                settled_count=messages.settled_count + bindparam("settled", type_=Integer),
                cost=messages.cost + bindparam("cost", type_=messages.cost.type),
                version=messages.version + 1, updated_at=now)
        .returning(messages.success_count, messages.settled_count, messages.recipient_count,
                   messages.status))
    finish = (
        update(_messages)
        .where(this_message,
               messages.status.in_((MessageStatus.SENDING, MessageStatus.FAILED)))
        .values(status=bindparam("final", type_=messages.status.type), completed_at=now,
                version=messages.version + 1)
        .returning(messages.id))
    return counters, finish


def apply_receipts(receipts: list[ProviderReceipt],
                   now: datetime | None = None) -> tuple[int, set[str]]:
    """Apply delivery receipts, from a webhook or a provider, in one statement.

    Returns how many recipients changed, and the provider ids of receipts that
    may apply later: a receipt can overtake the commit that records its send.
    Idempotent: a repeated receipt, or one that would move a recipient
    backwards, changes nothing; within a batch they apply as if one by one. A
    recipient sent in parts settles once each part has a final receipt:
    delivered only if every part was.
    """
    now = now or _now()
    receipts = [r for r in receipts if r.status in _RECEIPT_STATUSES]
    of_parts, from_parts = _apply_part_receipts(receipts, now)
    whole = [r for r in receipts if r.provider_message_id not in of_parts] + from_parts
    by_provider_id, by_id = _receipt_candidates(whole)
    states: dict[int, dict[str, Any]] = {}
    early: set[str] = set()
    for receipt in whole:
        row = (by_id.get(receipt.recipient_id) if receipt.recipient_id
               else by_provider_id.get(receipt.provider_message_id))
        if row is None or row.status == RecipientStatus.SENDING:
            early.add(receipt.provider_message_id)
            continue
        state = states.setdefault(row.id, _state_of(row))
        _apply_one(state, receipt)
    moved = [state for state in states.values() if state["receipt_ids"]]
    changed: list[Any] = []
    if moved:
        dialect = db.engine.dialect.name
        changed = _plain(db.session.execute(_receipt_statement(dialect), {
            "receipt_rows": json_rows_value(dialect, _RECEIPT_COLUMNS, moved), "now": now}).all())
    done = {row.id for row in changed}
    totals: dict[int, _Totals] = defaultdict(_Totals)
    for state in moved:
        if state["id"] not in done:
            # Moved by another node since it was read: the receipts go round again.
            early |= state["receipt_ids"]
            continue
        total = totals[state["message_id"]]
        total.delivered += state["status"] == RecipientStatus.DELIVERED
        total.accepted += state["newly_accepted"]
        total.cost += state["cost"] - state["old_cost"]
    _count_into_messages(totals, now)
    db.session.commit()
    metrics.receipts_applied.inc(len(changed))
    announcements.receipts_applied(changed, set(totals))
    return len(changed), early


@lru_cache(maxsize=2)
def _receipt_statement(dialect: str) -> Update:
    """``apply_receipts``'s update from the recipients' new states (``receipt_rows``), each
    only where its version is still the one read; built once, as ``_claim_statement``."""
    batch = json_table(dialect, "receipt", _RECEIPT_COLUMNS)
    recipients = _recipients.c
    now = bindparam("now", type_=recipients.updated_at.type)
    return (
        update(_recipients)
        .where(recipients.id == batch.c.id, recipients.version == batch.c.version)
        .values(status=batch.c.status, provider_message_id=batch.c.provider_message_id,
                error_code=batch.c.error_code, error_message=batch.c.error_message,
                cost=batch.c.cost, provider_status=batch.c.provider_status,
                provider_error_code=batch.c.provider_error_code, parts=batch.c.parts,
                delivered_at=case((batch.c.status == RecipientStatus.DELIVERED, now),
                                  else_=recipients.delivered_at),
                updated_at=now, version=recipients.version + 1)
        .returning(*_EVENT_COLUMNS)
    )


@lru_cache(maxsize=2)
def _candidates_statement(dialect: str) -> Select:
    """The recipients receipts name, by provider id or recipient id; built once per
    database, as a batch names hundreds of ids, which a statement built per batch would
    coerce one by one."""
    return select(*_EVENT_COLUMNS, _recipients.c.delivered_at).where(or_(
        among(dialect, _recipients.c.provider_message_id, "provider_ids"),
        among(dialect, _recipients.c.id, "recipient_ids")))


@lru_cache(maxsize=2)
def _parts_statement(dialect: str) -> Select:
    """The parts receipts name, built once per database as ``_candidates_statement``."""
    return select(_parts).where(among(dialect, _parts.c.provider_message_id, "provider_ids"))


def _receipt_candidates(receipts: list[ProviderReceipt]) -> tuple[dict[str, Any], dict[int, Any]]:
    """The recipients these receipts name, by provider id and by recipient id."""
    provider_ids = list({r.provider_message_id for r in receipts if not r.recipient_id})
    recipient_ids = list({r.recipient_id for r in receipts if r.recipient_id})
    if not receipts:
        return {}, {}
    found = _plain(db.session.execute(_candidates_statement(db.engine.dialect.name),
                                      {"provider_ids": provider_ids,
                                       "recipient_ids": recipient_ids}).all())
    return ({row.provider_message_id: row for row in found if row.provider_message_id},
            {row.id: row for row in found})


def _state_of(row: Any) -> dict[str, Any]:
    """A recipient (a ``_plain`` row) as receipts will move it, before any has."""
    state = row._asdict()
    state.update(old_cost=state["cost"], newly_accepted=0, receipt_ids=set())
    return state


def _apply_one(state: dict[str, Any], receipt: ProviderReceipt) -> None:
    """One receipt on a recipient's state: forwards only, and once.

    From ``SENT`` or ``UNKNOWN`` to ``DELIVERED``, ``FAILED`` or ``UNKNOWN``;
    nothing leaves a final status. A recipient not known to be accepted (an
    ambiguous submit) is proved accepted by any receipt, and costs from then
    on; one the provider does not bill (``billable``) costs nothing. A ``SENT``
    receipt (Twilio's ``sent``) only does that proving: it moves an ambiguous
    submit to ``SENT`` and nothing else.
    """
    if state["status"] not in _RECEIPT_FROM or state["status"] == receipt.status:
        return
    if receipt.status == RecipientStatus.SENT and state["provider_message_id"] is not None:
        return
    accepted_before = state["provider_message_id"] is not None
    state["status"] = receipt.status
    state["provider_message_id"] = state["provider_message_id"] or receipt.provider_message_id
    state["parts"] = receipt.parts or state["parts"] or 1
    state["provider_status"] = receipt.provider_status or state["provider_status"]
    state["provider_error_code"] = receipt.provider_error_code or state["provider_error_code"]
    if not receipt.billable:
        state["cost"] = Decimal("0")
    elif not accepted_before:
        state["cost"] = segment_cost(state["parts"], state["price_per_segment"])
        state["newly_accepted"] = 1
    if receipt.status in (RecipientStatus.SENT, RecipientStatus.DELIVERED):
        state["error_code"] = state["error_message"] = None
    elif receipt.status == RecipientStatus.FAILED:
        state["error_code"] = receipt.error_code or "delivery_failed"
        state["error_message"] = receipt.error_message or "Delivery failed"
    else:
        state["error_code"] = receipt.error_code or "delivery_unknown"
        state["error_message"] = receipt.error_message or "The provider does not know the outcome"
    state["receipt_ids"].add(receipt.provider_message_id)


def _apply_part_receipts(receipts: list[ProviderReceipt], now: datetime
                         ) -> tuple[set[str], list[ProviderReceipt]]:
    """Receipts for parts of recipients sent in several: record each part's outcome.

    Returns the provider ids that were parts, and one receipt per recipient
    whose parts are now all final, naming it by id: ``DELIVERED`` when every
    part was, else ``FAILED`` (or ``UNKNOWN``), with the first failing part's
    provider words. A final part never changes.
    """
    ids = {r.provider_message_id for r in receipts if not r.recipient_id}
    if not ids:
        return set(), []
    parts = {row.provider_message_id: {name: getattr(row, name) for name in _PART_COLUMNS}
             for row in db.session.execute(
                 _parts_statement(db.engine.dialect.name), {"provider_ids": list(ids)}).all()}
    if not parts:
        return set(), []
    moved = {}
    for receipt in receipts:
        part = parts.get(receipt.provider_message_id)
        if part is None or part["status"] in (RecipientStatus.DELIVERED, RecipientStatus.FAILED) \
                or part["status"] == receipt.status:
            continue
        part.update(status=receipt.status, provider_status=receipt.provider_status,
                    provider_error_code=receipt.provider_error_code)
        moved[receipt.provider_message_id] = part
    if moved:
        batch = json_rows("part", columns=_PART_COLUMNS, rows=list(moved.values()))
        db.session.execute(
            update(_parts)
            .where(_parts.c.provider_message_id == batch.c.provider_message_id,
                   or_(_parts.c.status.is_(None), _parts.c.status == RecipientStatus.UNKNOWN))
            .values(status=batch.c.status, provider_status=batch.c.provider_status,
                    provider_error_code=batch.c.provider_error_code))
    recipient_ids = {part["recipient_id"] for part in moved.values()}
    whole: list[ProviderReceipt] = []
    by_recipient: dict[int, list[Any]] = defaultdict(list)
    for row in db.session.execute(select(_parts).where(_parts.c.recipient_id.in_(recipient_ids))
                                  .order_by(_parts.c.recipient_id, _parts.c.part_number)).all():
        by_recipient[row.recipient_id].append(row)
    for recipient_id, rows in by_recipient.items():
        if any(row.status is None for row in rows):
            continue
        worst = next((row for row in rows if row.status == RecipientStatus.FAILED),
                     next((row for row in rows if row.status != RecipientStatus.DELIVERED),
                          rows[-1]))
        whole.append(ProviderReceipt(rows[0].provider_message_id, worst.status,
                                     provider_status=worst.provider_status,
                                     provider_error_code=worst.provider_error_code,
                                     parts=len(rows), recipient_id=recipient_id))
    return set(parts), whole


# The sweeps' statements, built once: they run every second on every node, and one built
# anew left reference cycles behind, which ``runtime.LongLivedCollector`` froze and kept
# until its next reclaim.
_EXPIRE = (
    update(_recipients)
    .where(_in_index("queued", RecipientStatus.PENDING, RecipientStatus.SENDING),
           _recipients.c.status == RecipientStatus.PENDING, _recipients.c.expires_at <= _NOW)
    .values(status=RecipientStatus.EXPIRED, error_code="expired",
            error_message="Not sent within its validity", claimed_by=None,
            updated_at=_NOW, version=_recipients.c.version + 1)
    .returning(*_EVENT_COLUMNS))
_TIME_OUT_RECEIPTS = (
    update(_recipients)
    .where(_in_index("sent", RecipientStatus.SENT),
           _recipients.c.sent_at <= bindparam("cutoff", type_=_recipients.c.sent_at.type))
    .values(status=RecipientStatus.UNKNOWN, error_code="no_receipt",
            error_message="No delivery receipt came in time", updated_at=_NOW,
            version=_recipients.c.version + 1)
    .returning(*_EVENT_COLUMNS))


def expire(now: datetime | None = None) -> int:
    """Recipients not submitted by their ``expires_at`` (their message's validity after they
    could first be sent) become ``EXPIRED``, never sent; a paused message's too: a text
    held for hours past its validity is one its readers no longer expect."""
    now = now or _now()
    expired = db.session.execute(_EXPIRE, {"now": now}).all()
    completed = _settle_into_messages(expired, now) if expired else []
    db.session.commit()
    if expired:
        announcements.outcomes_recorded(expired, messages_by_id(completed))
    return len(expired)


def time_out_receipts(now: datetime | None = None) -> int:
    """``SENT`` recipients without a receipt for ``RECEIPT_TIMEOUT_SECONDS`` become ``UNKNOWN``.

    They stay accepted and keep their cost; a late receipt still settles them.
    """
    now = now or _now()
    cutoff = now - timedelta(seconds=current_app.config["RECEIPT_TIMEOUT_SECONDS"])
    timed_out = db.session.execute(_TIME_OUT_RECEIPTS, {"now": now, "cutoff": cutoff}).all()
    db.session.commit()
    if timed_out:
        announcements.receipts_applied(timed_out, {row.message_id for row in timed_out})
    return len(timed_out)


def retry(message: Message, now: datetime | None = None) -> int:
    """Queue the message's ``UNKNOWN``, ``EXPIRED`` and retryable ``FAILED`` recipients again.

    An explicit new attempt: each goes back to ``PENDING`` with a new
    ``version``, loses its previous outcome (and the cost and acceptance it
    counted), and the message goes back to ``SENDING`` (a paused one stays
    paused). Returns how many.
    """
    now = now or _now()
    retried = or_(_recipients.c.status.in_(_RETRIED),
                  and_(_recipients.c.status == RecipientStatus.FAILED, _recipients.c.retryable))
    chosen = select(_recipients.c.id, _recipients.c.status, _recipients.c.cost,
                    _recipients.c.provider_message_id).where(
        _recipients.c.message_id == message.id, retried)
    if db.engine.dialect.name == "postgresql":
        chosen = chosen.with_for_update()
    rows = db.session.execute(chosen).all()
    if not rows:
        db.session.commit()
        return 0
    queued = db.session.execute(
        update(_recipients)
        .where(_recipients.c.id.in_([row.id for row in rows]), retried)
        .values(status=RecipientStatus.PENDING, claimed_by=None, claimed_at=None,
                submit_started_at=None, not_before=None,
                expires_at=now + timedelta(seconds=validity_seconds(message.validity_seconds)),
                provider_message_id=None, provider_status=None, provider_error_code=None,
                error_code=None, error_message=None, retryable=False, cost=Decimal("0"),
                sent_at=None, updated_at=now, version=_recipients.c.version + 1)
        .returning(*_EVENT_COLUMNS)
    ).all()
    db.session.execute(
        update(Message).where(Message.id == message.id)
        .values(settled_count=Message.settled_count - len(rows),
                failed_count=Message.failed_count
                - sum(row.status == RecipientStatus.FAILED for row in rows),
                success_count=Message.success_count
                - sum(row.provider_message_id is not None for row in rows),
                cost=Message.cost - sum((row.cost for row in rows), Decimal("0")),
                status=case((Message.status == MessageStatus.PAUSED, MessageStatus.PAUSED),
                            else_=MessageStatus.SENDING),
                completed_at=None, version=Message.version + 1,
                updated_at=now)
        .execution_options(synchronize_session=False))
    analytics_marks.mark_changed({message.user_id})
    db.session.commit()
    announcements.outcomes_recorded(queued, [])
    return len(queued)


def pause(message: Message, now: datetime | None = None) -> bool:
    """Hold a scheduled or sending message: no node claims its recipients until ``resume``.

    Returns whether it moved (``False``: its status does not allow it). Batches
    already claimed see it through their ``SendGate`` before each submission.
    """
    moved = _move_message(message, SENDABLE_MESSAGE_STATUSES, MessageStatus.PAUSED, now or _now())
    db.session.commit()
    return moved


def resume(message: Message, now: datetime | None = None) -> bool:
    """A paused message sends again (or waits for its ``sendAt`` again, ``SCHEDULED``); one
    whose recipients all settled while paused is final."""
    now = now or _now()
    again = case((Message.send_at > now, MessageStatus.SCHEDULED), else_=MessageStatus.SENDING)
    if not _move_message(message, (MessageStatus.PAUSED,), again, now):
        db.session.commit()
        return False
    completed = _count_into_messages({message.id: _Totals()}, now)
    db.session.commit()
    announcements.outcomes_recorded([], messages_by_id(completed))
    return True


def cancel(message: Message, now: datetime | None = None) -> bool:
    """End a message that is not final: it is ``CANCELED`` and so is every recipient still
    queued, at no cost. One claimed by a node is canceled when that node gives it back."""
    now = now or _now()
    if not _move_message(message, CANCELABLE, MessageStatus.CANCELED, now, completed_at=now):
        db.session.commit()
        return False
    canceled = _cancel_queued({message.id}, now)
    db.session.commit()
    announcements.outcomes_recorded(canceled, [])
    return True


def _move_message(message: Message, allowed: tuple[MessageStatus, ...], status: Any,
                  now: datetime, **values: Any) -> bool:
    """Move the message to ``status`` if it is in one of ``allowed`` now (the caller commits);
    its owner's figures count messages per status, so they changed."""
    moved = db.session.execute(
        update(Message).where(Message.id == message.id, Message.status.in_(allowed))
        .values(status=status, version=Message.version + 1, updated_at=now, **values)
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    ).first()
    if moved is not None:
        analytics_marks.mark_changed({message.user_id})
    return moved is not None


def _cancel_queued(message_ids: set[int], now: datetime) -> list[Any]:
    """The queued recipients of those of these messages that are canceled become ``CANCELED``."""
    canceled = db.session.execute(
        update(_recipients)
        .where(_in_index("queued", RecipientStatus.PENDING, RecipientStatus.SENDING),
               _recipients.c.status == RecipientStatus.PENDING,
               _recipients.c.message_id.in_(
                   select(Message.id).where(Message.id.in_(message_ids),
                                            Message.status == MessageStatus.CANCELED)))
        .values(status=RecipientStatus.CANCELED, error_code="canceled",
                error_message="The message was canceled before this was sent",
                claimed_by=None, not_before=None, updated_at=now,
                version=_recipients.c.version + 1)
        .returning(*_EVENT_COLUMNS)
    ).all()
    if canceled:
        _settle_into_messages(canceled, now)
    return canceled


def message_bodies(message_ids: set[int]) -> dict[int, str]:
    """What each of these messages says, to send it."""
    return _of_messages("body", message_ids)


def _of_messages(column: str, message_ids: Iterable[int]) -> dict[int, Any]:
    """Each of these messages' ``column``, by id."""
    return dict(db.session.execute(_of_messages_statement(db.engine.dialect.name, column),
                                   {"ids": list(message_ids)}).all())


@lru_cache(maxsize=8)
def _of_messages_statement(dialect: str, column: str) -> Select:
    """Built once per database and column, as ``_claim_statement``: every batch asks."""
    return select(_messages.c.id, _messages.c[column]).where(
        among(dialect, _messages.c.id, "ids"))


def messages_with_counts(message_ids: list[int] | set[int]) -> list[tuple[Message, dict[str, int]]]:
    """These messages as stored now, each with its ``statusCounts``, read in one snapshot.

    Under PostgreSQL's default isolation each statement reads its own snapshot: an outcome
    committed between the two reads sent a final ``message_update`` whose ``failedCount``
    was 1 while its ``statusCounts`` had no ``FAILED``. The caller starts from a closed
    session, so the transaction begins here, repeatable-read.
    """
    if db.engine.dialect.name == "postgresql":
        db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    counts = status_counts(message_ids)
    return [(message, counts[message.id]) for message in messages_by_id(message_ids)]


def messages_by_id(message_ids: list[int] | set[int]) -> list[Message]:
    """These messages as stored now, in the order of ``message_ids``, to announce them."""
    if not message_ids:
        return []
    found = {message.id: message for message in db.session.scalars(
        select(Message).where(Message.id.in_(message_ids)))}
    return [found[message_id] for message_id in message_ids if message_id in found]
