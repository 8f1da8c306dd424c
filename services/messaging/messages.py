"""Bulk messages: accept them and show them to their owner (``tracking`` follows them live).

``create`` validates every number, stores the message and all its recipients
in one transaction and returns at once; the delivery dispatcher does the
sending. Another user's message is always ``not_found``, never ``forbidden``,
so ids cannot be probed.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import gevent
from flask import current_app
from gevent.lock import Semaphore
from sqlalchemy import Insert, insert, literal, select

from extensions import db
from models import Message, Recipient
from models.message import MessageStatus, RecipientStatus
from schemas.common import isoformat
from services import analytics_marks
from services.auth import Identity
from services.errors import Conflict, InvalidPayload, NotFound
from services.messaging import (
    announcements,
    dispatcher,
    pricing,
    queue,
    quiet_hours,
    quotas,
    suppressions,
)
from services.messaging.json_rows import json_rows
from services.messaging.payloads import (
    message_payload,
    message_update_payload,
    money,
    recipient_payload,
)
from services.messaging.phones import InvalidPhone, Recipients, normalise_recipients
from services.messaging.sms_encoding import analyse_body, segment_cost
from services.messaging.status_counts import status_counts
from services.realtime import emitter
from services.turns import taking_turns

MAX_RECIPIENTS = 10_000
SEND_AT_MAX_DAYS = 30
SEND_AT_PAST_SECONDS = 5
INVALID_LISTED = 100
REPORT_COLUMNS = ("phone", "status", "providerStatus", "errorCode", "providerErrorCode", "parts",
                  "cost", "sentAt", "deliveredAt")
REPORT_ROW_COLUMNS = (Recipient.id, Recipient.phone, Recipient.status, Recipient.provider_status,
                      Recipient.error_code, Recipient.provider_error_code, Recipient.parts,
                      Recipient.cost, Recipient.sent_at, Recipient.delivered_at)
REPORT_PAGE = 200
SQLITE_CREATES = Semaphore()
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def owner_of(message_id: int) -> int | None:
    """The owner's user id, or None when there is no such message."""
    return db.session.scalar(select(Message.user_id).where(Message.id == message_id))


def read_recipients(raw_recipients: list[Any], *, countries: bool | None = None) -> Recipients:
    """The numbers of a message as entered, parsed a slice at a time.

    10,000 numbers take a few hundred milliseconds to parse; between slices the
    node serves its other clients. Call it before any write of the request: on
    SQLite a write transaction held across those pauses would make another
    greenlet's write wait for the lock in C, stopping the whole process.
    Each number's country, the slowest part, is looked up when ``countries``
    (a preview), by default only when ``SMS_PRICES`` prices countries: with one
    price for all, ``create`` has no use for it.
    """
    if len(raw_recipients) > MAX_RECIPIENTS:
        raise InvalidPayload(f"At most {MAX_RECIPIENTS} recipients per message")
    if countries is None:
        countries = bool(pricing.prices().by_country)
    return normalise_recipients(raw_recipients, pause=taking_turns(), countries=countries)


def read_send_at(text: str | None, now: datetime | None = None) -> datetime | None:
    """``sendAt`` as a time in UTC; ``None`` for at once (absent, or at most
    ``SEND_AT_PAST_SECONDS`` ago). ``InvalidPayload`` for a time without an offset (whose
    would it be?), further in the past, or more than ``SEND_AT_MAX_DAYS`` ahead."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidPayload("sendAt must be an ISO 8601 time, e.g. 2026-12-01T09:00:00Z",
                             details={"sendAt": text}) from None
    if when.tzinfo is None:
        raise InvalidPayload("sendAt needs an offset or Z: a time without one names no moment",
                             details={"sendAt": text})
    now = now or datetime.now(UTC)
    if when < now - timedelta(seconds=SEND_AT_PAST_SECONDS):
        raise InvalidPayload("sendAt is in the past", details={"sendAt": text})
    if when > now + timedelta(days=SEND_AT_MAX_DAYS):
        raise InvalidPayload(f"sendAt is more than {SEND_AT_MAX_DAYS} days ahead",
                             details={"sendAt": text})
    return when.astimezone(UTC) if when > now else None


def create(user_id: int, *, body: str, recipients: Recipients, send_at: datetime | None = None,
           quiet: bool = False, validity_seconds: int | None = None) -> dict[str, Any]:
    """Store a message and its recipients as ``PENDING``; sending starts in the background,
    or at ``send_at`` (``SCHEDULED`` until then: its recipients wait with ``not_before``).
    With ``quiet`` and ``QUIET_HOURS`` set, each recipient waits until it is outside those
    hours in its own time zones (``quiet_hours``). Each recipient not sent within
    ``validity_seconds`` (default ``SMS_VALIDITY_SECONDS``) of its release expires.

    Each recipient is stored with the price of a segment to its country, so the
    bill is what ``preview`` said. ``InvalidPayload`` naming the invalid numbers;
    ``QuotaExceeded`` when the recipients do not fit in the user's daily quota.
    """
    if recipients.invalid:
        raise InvalidPayload(f"{len(recipients.invalid)} invalid phone number(s)",
                             details={"recipients": _invalid_items(recipients.invalid)})
    if not recipients.countries:
        raise InvalidPayload("At least one recipient is required")
    table = pricing.prices()
    rows = [{"phone": phone, "price_per_segment": table.price_for(country)}
            for phone, country in recipients.countries.items()]
    with _one_create_at_a_time():
        message = _store(user_id, body, rows, send_at, quiet, validity_seconds)
    counts = {RecipientStatus.PENDING.value: len(rows)}
    update = message_update_payload(message, counts)
    emitter.emit_to_user(user_id, event="message_update", payload=update)
    dispatcher.wake_dispatcher()
    return {**message_payload(message, counts), "duplicatesRemoved": recipients.duplicates_removed,
            "pricePerSegment": float(table.default)}


def _store(user_id: int, body: str, rows: list[dict[str, Any]], send_at: datetime | None,
           quiet: bool, validity_seconds: int | None) -> Message:
    """Reserve the quota and store the message and its recipients, in one transaction."""
    quotas.reserve(user_id, len(rows))
    shape = analyse_body(body)
    message = Message(user_id=user_id, body=body, encoding=shape.encoding,
                      segments=shape.segments, recipient_count=len(rows), cost=Decimal("0"),
                      version=1, send_at=send_at, quiet_hours=quiet,
                      validity_seconds=validity_seconds or queue.validity_seconds(None),
                      status=MessageStatus.SCHEDULED if send_at else MessageStatus.SENDING)
    db.session.add(message)
    db.session.flush()
    analytics_marks.mark_changed({user_id})
    window = current_app.config["QUIET_HOURS"] if quiet else None
    validity = timedelta(seconds=message.validity_seconds)
    _commit_with([_insert_recipients(message.id, group, message.created_at, release, validity)
                  for release, group in _by_release(rows, send_at or message.created_at,
                                                    window).items()])
    return message


def preview(*, body: str, recipients: Recipients) -> dict[str, Any]:
    """What ``create`` would do with this body, without storing or sending anything.

    The numbers it would refuse (the same items as its 400), the repeats it
    would drop, how the body is encoded and why, and the cost: per recipient
    the segments times its country's price, rounded as the bill rounds it, so
    the total is the final cost when every recipient is accepted. Suppressed
    numbers are counted in ``recipientCount`` but cost nothing.
    """
    shape = analyse_body(body)
    table = pricing.prices()
    suppressed = suppressions.suppressed_phones(recipients.phones,
                                                sender=dispatcher.sender_in_use())
    by_country: dict[str, list] = {}
    for phone, country in recipients.countries.items():
        if phone not in suppressed:
            group = by_country.setdefault(country, [0, Decimal("0")])
            group[0] += 1
            group[1] += segment_cost(shape.segments, table.price_for(country))
    return {
        "recipientCount": len(recipients.countries),
        "invalid": _invalid_items(recipients.invalid),
        "duplicatesRemoved": recipients.duplicates_removed,
        "suppressed": len(suppressed),
        "encoding": shape.encoding,
        "segments": shape.segments,
        "nonGsmCharacters": list(shape.non_gsm_characters),
        "cost": money(sum((cost for _, cost in by_country.values()), Decimal("0"))),
        "byCountry": [{"country": country, "recipients": count,
                       "pricePerSegment": float(table.price_for(country)), "cost": money(cost)}
                      for country, (count, cost) in sorted(by_country.items())],
    }


def _invalid_items(invalid: list[InvalidPhone]) -> list[dict[str, Any]]:
    """The refused entries as the 400 of ``create`` and ``preview`` list them (the first 100)."""
    return [{"index": bad.index, "value": bad.value, "reason": bad.reason}
            for bad in invalid[:INVALID_LISTED]]


def _by_release(rows: list[dict[str, Any]], sendable: datetime,
                window: quiet_hours.Window | None) -> dict[datetime, list[dict[str, Any]]]:
    """The recipients grouped by when each may first be sent: ``sendable``, or later for
    those inside the quiet window then (computed once per set of time zones)."""
    if window is None:
        return {sendable: rows}
    releases: dict[tuple[str, ...], datetime] = {}
    groups: dict[datetime, list[dict[str, Any]]] = {}
    for row in rows:
        zones = quiet_hours.zones_of(row["phone"])
        if zones not in releases:
            releases[zones] = quiet_hours.release_at(zones, window, sendable)
        groups.setdefault(releases[zones], []).append(row)
    return groups


def _insert_recipients(message_id: int, recipients: list[dict[str, Any]], now: datetime,
                       release: datetime, validity: timedelta) -> Insert:
    """Every recipient in one ``INSERT ... SELECT`` from the phones and prices as a JSON table;
    sendable from ``release`` (its ``validity`` counts from then): held back until it when
    later than ``now``.

    10,000 rows through ``executemany`` took about half a second on PostgreSQL
    (one protocol message per row, each waited on through gevent's poll).
    """
    table = Recipient.__table__
    batch = json_rows("batch", columns={"phone": table.c.phone.type,
                                        "price_per_segment": table.c.price_per_segment.type},
                      rows=recipients)
    return insert(table).from_select(
        ["message_id", "phone", "price_per_segment", "status", "cost", "version", "attempts",
         "updated_at", "expires_at", "not_before"],
        select(literal(message_id, table.c.message_id.type), batch.c.phone,
               batch.c.price_per_segment,
               literal(RecipientStatus.PENDING, table.c.status.type),
               literal(Decimal("0"), table.c.cost.type), literal(1, table.c.version.type),
               literal(0, table.c.attempts.type), literal(now, table.c.updated_at.type),
               literal(release + validity, table.c.expires_at.type),
               literal(release if release > now else None, table.c.not_before.type)),
    )


@contextlib.contextmanager
def _one_create_at_a_time() -> Iterator[None]:
    """On SQLite, one message is stored at a time in this process; the transaction ends
    (committed or rolled back) before the next begins.

    SQLite ignores the row lock ``quotas.reserve`` takes on PostgreSQL, and
    reads outside a write transaction: while one message's recipients were
    being inserted in a pool thread (``_commit_with``), five concurrent posts
    each read the quota before the others committed and passed a quota of
    four. Taking turns here puts each reservation after the previous commit.
    """
    if db.engine.dialect.name != "sqlite":
        yield
        return
    with SQLITE_CREATES:
        try:
            yield
        except BaseException:
            db.session.rollback()
            raise


def _commit_with(statements: list[Insert]) -> None:
    """Execute ``statements`` and commit the session's transaction, without holding the node.

    PostgreSQL does the work in its own process while psycopg waits through
    gevent. SQLite does it in this process, inside its C code (10,000 rows:
    about 130 ms on a busy machine), during which the event loop would serve
    no one; that code releases the GIL, so it runs in a thread of gevent's
    pool while the loop goes on. The commit goes with it: a greenlet that
    tried to write meanwhile would wait for SQLite's lock in C, holding the
    loop, and a commit left to this greenlet could then never run to free it.
    """
    def execute_and_commit() -> None:
        for statement in statements:
            db.session.execute(statement)
        db.session.commit()

    if db.engine.dialect.name != "sqlite":
        execute_and_commit()
        return
    # The thread runs in a copy of this greenlet's context: the same app context and session.
    gevent.get_hub().threadpool.apply(contextvars.copy_context().run, (execute_and_commit,))


def shown(message: Message) -> dict[str, Any]:
    """The message's REST shape, with its recipients' counts by status."""
    return message_payload(message, status_counts([message.id])[message.id])


def retry(identity: Identity, message_id: int) -> dict[str, Any]:
    """Queue the message's unknown, expired and retryable failed recipients again; not
    those of a canceled message (``Conflict``): canceled is final."""
    message = get_visible(identity, message_id)
    if message.status == MessageStatus.CANCELED:
        raise Conflict("A canceled message cannot be retried")
    queued = queue.retry(message)
    if queued:
        dispatcher.wake_dispatcher()
        db.session.refresh(message)
        announcements.emit_message_update(message)
    return {"queued": queued, "message": shown(message)}


def pause(identity: Identity, message_id: int) -> dict[str, Any]:
    """Hold a scheduled or sending message: within a second no node submits any more of it."""
    return _control(identity, message_id, queue.pause, "Only a scheduled or sending message "
                    "can be paused")


def resume(identity: Identity, message_id: int) -> dict[str, Any]:
    """Let a paused message send again."""
    return _control(identity, message_id, queue.resume, "Only a paused message can be resumed")


def cancel(identity: Identity, message_id: int) -> dict[str, Any]:
    """End a message that is not final; what was not yet submitted is ``CANCELED``, free."""
    return _control(identity, message_id, queue.cancel, "Only a scheduled, sending or paused "
                    "message can be canceled")


def _control(identity: Identity, message_id: int, action: Callable[[Message], bool],
             refused: str) -> dict[str, Any]:
    """Apply ``action`` to a message this identity may see, announce it, return it as REST
    shows it; ``Conflict`` naming the current status when the status does not allow it."""
    message = get_visible(identity, message_id)
    if not action(message):
        db.session.refresh(message)
        raise Conflict(f"{refused}; this one is {message.status}",
                       details={"status": message.status})
    dispatcher.wake_dispatcher()
    db.session.refresh(message)
    announcements.emit_message_update(message)
    return shown(message)


def get_visible(identity: Identity, message_id: int) -> Message:
    """The message if this identity may see it (owner or admin), else ``NotFound``."""
    message = db.session.get(Message, message_id)
    if message is None or (message.user_id != identity.user_id and not identity.is_admin):
        raise NotFound("Message not found")
    return message


def list_for_user(user_id: int, *, limit: int, before: int | None) -> dict[str, Any]:
    query = select(Message).where(Message.user_id == user_id)
    if before is not None:
        query = query.where(Message.id < before)
    page = list(db.session.scalars(query.order_by(Message.id.desc()).limit(limit)))
    counts = status_counts(m.id for m in page)
    return {
        "messages": [message_payload(m, counts[m.id]) for m in page],
        "nextCursor": str(page[-1].id) if len(page) == limit else None,
    }


def list_recipients(message: Message, *, limit: int, after: int | None,
                    status: str | None = None) -> dict[str, Any]:
    query = select(Recipient).where(Recipient.message_id == message.id)
    if after is not None:
        query = query.where(Recipient.id > after)
    if status is not None:
        query = query.where(Recipient.status == status)
    page = list(db.session.scalars(query.order_by(Recipient.id).limit(limit)))
    return {
        "recipients": [recipient_payload(r) for r in page],
        "nextCursor": str(page[-1].id) if len(page) == limit else None,
    }


def report_csv(message: Message) -> Iterator[str]:
    """The message's recipients as CSV text, a header then a page of rows at a time.

    Pages are read by keyset (``id > last``) in short queries, the session
    released after each, and the node's other clients served between them: a
    10,000-row report holds one page in memory, no database connection while
    its client reads, and no one waits for it. Text cells that a spreadsheet
    would run as a formula get a ``'`` in front (``services`` cannot tell a
    provider's words from an attacker's). ``parts`` is the provider's count of
    a recipient's segments where it gave one, else the message's own.
    """
    message_id, segments = message.id, message.segments
    pause = taking_turns()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REPORT_COLUMNS)
    yield _drain(buffer)
    after = 0
    while True:
        page = db.session.execute(
            select(*REPORT_ROW_COLUMNS)
            .where(Recipient.message_id == message_id, Recipient.id > after)
            .order_by(Recipient.id).limit(REPORT_PAGE)
        ).all()
        db.session.close()
        if not page:
            return
        writer.writerows(
            [_inert(row.phone), _inert(row.status), _inert(row.provider_status or ""),
             _inert(row.error_code or ""), _inert(row.provider_error_code or ""),
             row.parts or segments,
             f"{row.cost:.4f}", isoformat(row.sent_at) or "", isoformat(row.delivered_at) or ""]
            for row in page)
        yield _drain(buffer)
        after = page[-1].id
        pause()


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _inert(text: str) -> str:
    """``text`` as a cell no spreadsheet evaluates (OWASP's advice on CSV injection)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text

