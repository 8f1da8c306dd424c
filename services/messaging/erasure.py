"""Erasing a person's phone number, as data-protection law asks of a bulk sender.

The number leaves every row that held it and is replaced by its keyed hash
(``suppressions.erased_phone``): recipients keep their status, cost and
counts, so every message's figures stay what they were; inbound messages keep
when and to which sender they came, and lose their text. The number's
suppression entries stay, matched by the hash, with reason ``erased``: a
person who said STOP and was then erased is still never messaged, and since
the hub can no longer tell that a later START comes from the same person,
only an admin lifts such an entry.

A recipient's row gets a higher ``version`` and a new ``updated_at`` like any
other change of it: trackers resuming with ``sinceVersion`` get the hash too,
and whatever keeps recipients' states by version sees the row as changed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from extensions import db
from models import InboundMessage, Recipient, Suppression
from services.errors import InvalidPayload
from services.messaging.phones import InvalidPhoneNumber, normalise_phone
from services.messaging.suppressions import SuppressionReason, erased_phone, phone_hash


def erase_phone(raw_phone: str) -> dict[str, Any]:
    """Replace the number by its hash everywhere, in one transaction; what changed."""
    try:
        phone = normalise_phone(raw_phone)
    except InvalidPhoneNumber as exc:
        raise InvalidPayload(f"Phone number {exc.reason}") from None
    replacement = erased_phone(phone)
    recipients = db.session.execute(
        update(Recipient).where(Recipient.phone == phone)
        .values(phone=replacement, version=Recipient.version + 1, updated_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)).rowcount
    inbound = db.session.execute(
        update(InboundMessage).where(InboundMessage.sender == phone)
        .values(sender=replacement, body=None, erased=True)
        .execution_options(synchronize_session=False)).rowcount
    suppressed = db.session.execute(
        update(Suppression).where(Suppression.phone_hash == phone_hash(phone))
        .values(phone=None, reason=SuppressionReason.ERASED)
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return {"phone": replacement, "recipients": recipients or 0, "inbound": inbound or 0,
            "suppressions": suppressed or 0}
