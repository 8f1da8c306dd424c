"""Messages people send to the hub: stored, acted on when they are keywords, shown live.

``receive_inbound`` is the one entry point every provider's inbound path
calls (the Twilio inbound webhook, SMPP ``deliver_sm``, the simulator's
injection), through the handler the dispatcher gives the provider
(``handler``). It
stores the message, applies its keyword in the same transaction (STOP
suppresses the number for the sender it wrote to, START lifts what a keyword
or the provider put there), commits, emits ``inbound_message`` to admins and
to the owner of the latest message sent to that number, and sends the reply a
keyword is owed. A provider that delivers the same message twice (same
provider id) gets the first one's answer and nothing happens again, so each
keyword is acted on and replied to once.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

import gevent
from flask import Flask, current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from extensions import db
from models import InboundMessage, Message, Recipient
from schemas.common import isoformat
from services import analytics_marks
from services.auth import Identity
from services.messaging import dispatcher, suppressions
from services.messaging.phones import InvalidPhoneNumber, normalise_phone
from services.messaging.providers.base import InboundHandler, InboundSms, Outcome
from services.messaging.suppressions import SuppressionReason
from services.observability import metrics
from services.realtime import emitter, rooms

log = logging.getLogger(__name__)

MAX_ADDRESS_LENGTH = 80


class Keyword(StrEnum):
    STOP = "STOP"
    START = "START"
    HELP = "HELP"


# Each keyword as people write it, without spaces, to the canonical one (SMS.md section 2).
KEYWORDS = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE",
                     "OPTOUT"), Keyword.STOP),
    **dict.fromkeys(("START", "UNSTOP", "YES"), Keyword.START),
    **dict.fromkeys(("HELP", "INFO"), Keyword.HELP),
}


class ReplyStatus(StrEnum):
    OWED = "owed"
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"


def keyword_of(body: str) -> Keyword | None:
    """The keyword a whole message is, ignoring letter case and every space
    (``" stop "``, ``"Opt Out"``), or None: ``"stop please"`` is no keyword."""
    return KEYWORDS.get("".join(body.split()).upper())


def _sender_of(raw: str) -> tuple[str, bool]:
    """The person's number in E.164 and True, or what the provider wrote (cut to fit) and
    False: an unparseable sender is stored and flagged, never dropped."""
    try:
        return normalise_phone(raw), True
    except InvalidPhoneNumber:
        return raw[:MAX_ADDRESS_LENGTH], False


def _latest_sender_owner(phone: str) -> int | None:
    """The owner of the most recent message sent to ``phone``: whom its reply concerns."""
    return db.session.scalar(
        select(Message.user_id).join(Recipient, Recipient.message_id == Message.id)
        .where(Recipient.phone == phone, Recipient.provider_message_id.is_not(None))
        .order_by(Recipient.id.desc()).limit(1))


def payload(message: InboundMessage) -> dict[str, Any]:
    """The ``inbound_message`` event and REST shape; ``keyword`` only when it is one."""
    shown: dict[str, Any] = {
        "id": str(message.id), "from": message.sender, "fromValid": message.sender_valid,
        "to": message.to, "body": message.body, "receivedAt": isoformat(message.received_at),
    }
    if message.keyword:
        shown["keyword"] = message.keyword
    return shown


def _reply_text(keyword: Keyword | None) -> str:
    config = current_app.config
    if keyword is Keyword.HELP:
        return config["SMS_HELP_TEXT"]
    if keyword is Keyword.STOP:
        return config["SMS_OPT_OUT_REPLY"]
    return ""


def receive_inbound(sms: InboundSms) -> dict[str, Any]:
    """Store one inbound message and act on it; returns its ``inbound_message`` payload.

    A repeat of a provider id already stored returns the stored one and does nothing.
    """
    if sms.provider_message_id:
        known = _by_provider_id(sms.provider_message_id)
        if known is not None:
            return payload(known)
    sender, valid = _sender_of(sms.sender)
    to = suppressions.normalise_sender(sms.to)[:MAX_ADDRESS_LENGTH]
    opted_out_of = suppressions.normalise_sender(sms.sent_as) if sms.sent_as else to
    keyword = keyword_of(sms.body)
    reply = _reply_text(keyword) if valid else ""
    message = InboundMessage(
        sender=sender, sender_valid=valid, to=to, body=sms.body, keyword=keyword,
        provider_message_id=sms.provider_message_id,
        user_id=_latest_sender_owner(sender) if valid else None,
        reply_status=ReplyStatus.OWED if reply else None)
    if sms.received_at is not None:
        message.received_at = sms.received_at
    db.session.add(message)
    metrics.inbound_sms.inc()
    if message.user_id is not None:
        analytics_marks.mark_changed({message.user_id})
    if valid and keyword is Keyword.STOP:
        suppressions.add_opt_outs([sender], sender=opted_out_of,
                                  reason=SuppressionReason.KEYWORD)
    elif valid and keyword is Keyword.START:
        suppressions.lift_opt_out(sender, sender=opted_out_of)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        known = _by_provider_id(sms.provider_message_id) if sms.provider_message_id else None
        if known is None:
            raise
        return payload(known)
    shown = payload(message)
    targets = [rooms.ADMINS_ROOM]
    if message.user_id is not None:
        targets.append(rooms.user_room(message.user_id))
    emitter.emit_to_rooms(targets, event="inbound_message", payload=shown)
    if reply:
        gevent.spawn(_send_reply, current_app._get_current_object(), message.id)
    return shown


def handler(app: Flask) -> InboundHandler:
    """``receive_inbound`` as a provider's ``on_inbound``: it also runs in the provider's own
    greenlet (SMPP's reader), which has no application context. An exception reaches the
    provider, which then lets the message come again (SMPP answers a temporary error)."""

    def on_inbound(sms: InboundSms) -> None:
        with app.app_context():
            receive_inbound(sms)

    return on_inbound


def _by_provider_id(provider_message_id: str) -> InboundMessage | None:
    return db.session.scalars(select(InboundMessage).where(
        InboundMessage.provider_message_id == provider_message_id)).first()


def _send_reply(app: Flask, inbound_id: int) -> None:
    """Send a keyword's reply once: claimed first, so no second attempt can send it again.

    Replies are the only sends that skip the suppression check: a STOP's
    confirmation goes to a number that has just been suppressed.
    """
    with app.app_context():
        try:
            claimed = db.session.execute(
                update(InboundMessage)
                .where(InboundMessage.id == inbound_id,
                       InboundMessage.reply_status == ReplyStatus.OWED)
                .values(reply_status=ReplyStatus.CLAIMED)
                .returning(InboundMessage.sender, InboundMessage.keyword)).first()
            db.session.commit()
            if claimed is None:
                return
            result = dispatcher.send_reply(
                claimed.sender, body=_reply_text(Keyword(claimed.keyword)), reply_id=-inbound_id)
            accepted = result is not None and result.outcome == Outcome.ACCEPTED
            db.session.execute(
                update(InboundMessage).where(InboundMessage.id == inbound_id)
                .values(reply_status=ReplyStatus.SENT if accepted else ReplyStatus.FAILED))
            db.session.commit()
        except Exception:
            log.exception("the reply to inbound message %s failed", inbound_id)


def list_visible(identity: Identity, *, limit: int, before: int | None) -> dict[str, Any]:
    """Inbound messages newest first: every one for an admin, else those shown to the caller."""
    query = select(InboundMessage)
    if not identity.is_admin:
        query = query.where(InboundMessage.user_id == identity.user_id)
    if before is not None:
        query = query.where(InboundMessage.id < before)
    page = list(db.session.scalars(query.order_by(InboundMessage.id.desc()).limit(limit)))
    return {"inbound": [payload(message) for message in page],
            "nextCursor": str(page[-1].id) if len(page) == limit else None}
