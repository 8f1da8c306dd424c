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

from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy import and_, or_, update

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


def record_progress(*, provider_status: str, earlier: Collection[str],
                    provider_message_id: str, recipient_id: int | None = None) -> int:
    """Show ``provider_status`` on the recipient it names, if its current word is none or
    one of ``earlier``; commits, announces, and returns how many recipients changed (0 or 1).

    ``recipient_id`` (from a callback URL) names a recipient whose send's answer may never
    have come back; it must then hold no other provider id.
    """
    if recipient_id is not None:
        named = and_(_recipients.c.id == recipient_id,
                     or_(_recipients.c.provider_message_id.is_(None),
                         _recipients.c.provider_message_id == provider_message_id))
    else:
        named = _recipients.c.provider_message_id == provider_message_id
    changed = db.session.execute(
        update(_recipients)
        .where(named, _recipients.c.status.in_(_MAY_STILL_MOVE),
               or_(_recipients.c.provider_status.is_(None),
                   _recipients.c.provider_status.in_(list(earlier))))
        .values(provider_status=provider_status, updated_at=datetime.now(UTC),
                version=_recipients.c.version + 1)
        .returning(*_EVENT_COLUMNS)
    ).all()
    db.session.commit()
    announcements.emit_recipient_updates(changed)
    return len(changed)
