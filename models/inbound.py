"""Messages people send to the hub's numbers, and the numbers that must not be sent to.

An inbound message is kept even when its sender's number does not parse
(``sender_valid`` false): a reply is evidence, and dropping it would hide a
provider or carrier problem. ``user_id`` is the owner it was shown to (the
owner of the latest message sent to that number), which is what a user may
list. Erasure replaces ``sender`` by its keyed hash and clears ``body``.
"""

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import BigIntId, UTCDateTime, utcnow

# Long enough for an erased number's hash (``phones.ERASED_PREFIX`` + 64 hex digits).
PHONE_COLUMN_LENGTH = 80


class InboundMessage(db.Model):
    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    sender: Mapped[str] = mapped_column(String(PHONE_COLUMN_LENGTH), nullable=False)
    sender_valid: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    to: Mapped[str] = mapped_column(String(PHONE_COLUMN_LENGTH), nullable=False)
    body: Mapped[str | None] = mapped_column(Text)
    keyword: Mapped[str | None] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"))
    erased: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # The keyword reply: None (none owed), "claimed" (being submitted), then the outcome.
    reply_status: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (
        Index("uq_inbound_messages_provider_message_id", "provider_message_id", unique=True),
        Index("ix_inbound_messages_user_id_id", "user_id", "id"),
        Index("ix_inbound_messages_sender", "sender"),
    )


class Suppression(db.Model):
    """A number that must not be sent to from ``sender`` (``*``: from any sender).

    Looked up by ``phone_hash`` (a keyed hash of the E.164 number), so an entry
    still matches after erasure has cleared ``phone``.
    """

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    phone_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    phone: Mapped[str | None] = mapped_column(String(PHONE_COLUMN_LENGTH))
    sender: Mapped[str] = mapped_column(String(PHONE_COLUMN_LENGTH), nullable=False)
    reason: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (
        Index("uq_suppressions_phone_hash_sender", "phone_hash", "sender", unique=True),
    )
