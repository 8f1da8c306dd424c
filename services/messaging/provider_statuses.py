"""A provider's word on a recipient that moves nothing else: Twilio's ``queued``, ``sending``...

Between the send's answer and ``sent``, Twilio reports a message's progress
(``accepted``, ``queued``, ``sending``), from its webhook; an SMSC's
intermediate receipts (``ENROUTE``, ``ACCEPTD``) come through the dispatcher's
receipt loop, which hands them here. The recipient's status stays where it
is (``SMS.md``: "no change"), but ``providerStatus`` is the provider's latest
word, so a client sees it. Callbacks come out of order and after the final
ones, so a word replaces only those the caller says come before it: a late
``sending`` never hides ``sent`` or ``delivered``, and a repeat changes
nothing. Only a recipient a receipt may still settle (``SENT``, ``UNKNOWN``)
takes it; one whose send is still being recorded keeps the word its send's
answer gives it. The cost, the provider id and the status are never touched
here: proving an ambiguous submit accepted is ``queue.apply_receipts``' job.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Update, and_, or_, update

from extensions import db
from models import Recipient
from models.message import RecipientStatus
from services.messaging import announcements

_recipients = Recipient.__table__
# What a ``recipient_update`` is made of.
_EVENT_COLUMNS = tuple(_recipients.c[name] for name in (
    "id", "message_id", "phone", "status", "version", "error_code", "error_message",
    "provider_status", "provider_error_code", "parts", "retryable"))
_MAY_STILL_MOVE = (RecipientStatus.SENT, RecipientStatus.UNKNOWN)


class Progress(NamedTuple):
    """A word of progress: ``provider_status`` for the recipient named by its provider id
    (or by ``recipient_id``, from a callback URL), replacing only a word of ``earlier``."""

    provider_status: str
    earlier: Collection[str]
    provider_message_id: str
    recipient_id: int | None = None


def record_progress(words: Iterable[Progress]) -> int:
    """Show each word on the recipient it names, if that recipient's current word is none or
    one of the word's ``earlier``; one commit for all, then the changes are announced.
    Returns how many recipient changes there were.

    A batch of an SMSC's receipts may hold a word for each of its recipients: one
    commit each would double what the batch costs the database. Words for the same
    recipient apply in order, as if one by one. A ``recipient_id`` names a recipient
    whose send's answer may never have come back; it must then hold no other
    provider id.
    """
    now = datetime.now(UTC)
    changed: list[Any] = []
    for word in words:
        changed += db.session.execute(_show(word, now)).all()
    db.session.commit()
    announcements.emit_recipient_updates(changed)
    return len(changed)


def _show(word: Progress, now: datetime) -> Update:
    if word.recipient_id is not None:
        named = and_(_recipients.c.id == word.recipient_id,
                     or_(_recipients.c.provider_message_id.is_(None),
                         _recipients.c.provider_message_id == word.provider_message_id))
    else:
        named = _recipients.c.provider_message_id == word.provider_message_id
    return (
        update(_recipients)
        .where(named, _recipients.c.status.in_(_MAY_STILL_MOVE),
               or_(_recipients.c.provider_status.is_(None),
                   _recipients.c.provider_status.in_(list(word.earlier))))
        .values(provider_status=word.provider_status, updated_at=now,
                version=_recipients.c.version + 1)
        .returning(*_EVENT_COLUMNS)
    )
