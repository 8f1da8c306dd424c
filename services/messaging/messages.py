"""Bulk messages: accept them and show them to their owner (``tracking`` follows them live).

``create`` validates every number, stores the message and all its recipients
in one transaction and returns at once; the delivery dispatcher does the
sending. Another user's message is always ``not_found``, never ``forbidden``,
so ids cannot be probed.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import insert, literal, select

from extensions import db
from models import Message, Recipient
from models.message import MessageStatus, RecipientStatus
from services import analytics_marks
from services.auth import Identity
from services.errors import InvalidPayload, NotFound
from services.messaging import dispatcher, quotas
from services.messaging.json_rows import json_rows
from services.messaging.payloads import (
    message_payload,
    message_update_payload,
    recipient_payload,
)
from services.messaging.phones import normalise_recipients
from services.messaging.sms_encoding import analyse_body
from services.realtime import emitter

MAX_RECIPIENTS = 10_000
# What a ``recipient_update`` needs, read as plain rows: a thousand ORM objects take
# four times as long to load, all of it before the snapshot can yield to anyone.
SNAPSHOT_COLUMNS = (Recipient.id, Recipient.message_id, Recipient.phone, Recipient.status,
                    Recipient.version, Recipient.error_message, Recipient.error_code)


def owner_of(message_id: int) -> int | None:
    """The owner's user id, or None when there is no such message."""
    return db.session.scalar(select(Message.user_id).where(Message.id == message_id))


def create(user_id: int, *, body: str, raw_recipients: list[Any]) -> dict[str, Any]:
    """Store a message and its recipients as ``PENDING``; sending starts in the background.

    ``QuotaExceeded`` when the recipients do not fit in the user's daily quota.
    """
    if len(raw_recipients) > MAX_RECIPIENTS:
        raise InvalidPayload(f"At most {MAX_RECIPIENTS} recipients per message")
    phones, invalid = normalise_recipients(raw_recipients)
    if invalid:
        raise InvalidPayload(
            f"{len(invalid)} invalid phone number(s)",
            details={"recipients": [
                {"index": bad.index, "value": bad.value, "reason": bad.reason}
                for bad in invalid[:100]
            ]},
        )
    if not phones:
        raise InvalidPayload("At least one recipient is required")
    quotas.reserve(user_id, len(phones))
    shape = analyse_body(body)
    message = Message(user_id=user_id, body=body, encoding=shape.encoding,
                      segments=shape.segments, status=MessageStatus.SENDING,
                      recipient_count=len(phones), cost=Decimal("0"), version=1)
    db.session.add(message)
    db.session.flush()
    _insert_recipients(message.id, phones, message.created_at)
    analytics_marks.mark_changed({user_id})
    db.session.commit()
    update = message_update_payload(message)
    emitter.emit_to_user(user_id, event="message_update", payload=update)
    dispatcher.wake_dispatcher()
    return {**message_payload(message), "duplicatesRemoved": len(raw_recipients) - len(phones),
            "pricePerSegment": float(current_app.config["SMS_PRICE_PER_SEGMENT"])}


def _insert_recipients(message_id: int, phones: list[str], now: datetime) -> None:
    """Every recipient in one ``INSERT ... SELECT`` from the phones as a JSON table.

    10,000 rows through ``executemany`` took about half a second on PostgreSQL
    (one protocol message per row, each waited on through gevent's poll).
    """
    table = Recipient.__table__
    batch = json_rows("batch", columns={"phone": table.c.phone.type},
                      rows=[{"phone": p} for p in phones])
    db.session.execute(insert(table).from_select(
        ["message_id", "phone", "status", "cost", "version", "attempts", "updated_at"],
        select(literal(message_id, table.c.message_id.type), batch.c.phone,
               literal(RecipientStatus.PENDING, table.c.status.type),
               literal(Decimal("0"), table.c.cost.type), literal(1, table.c.version.type),
               literal(0, table.c.attempts.type), literal(now, table.c.updated_at.type)),
    ))


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
    return {
        "messages": [message_payload(m) for m in page],
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
