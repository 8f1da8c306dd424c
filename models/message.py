"""Bulk messages and their recipients; the recipients table is also the send queue.

A dispatcher claims ``PENDING`` recipients (and ``SENDING`` ones whose claim has
gone stale after a crash), sends them, and records each outcome; ``version``
grows with every change so clients can drop stale or repeated updates. A
recipient sent in several parts with an id each (SMPP) has a ``RecipientPart``
per part, so that it settles once every part has a final receipt.
"""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, Numeric, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import BigIntId, UTCDateTime, utcnow
from models.inbound import PHONE_COLUMN_LENGTH


class MessageStatus(StrEnum):
    """Where a message is: sending until every recipient has an outcome, then sent or failed.

    Stored and sent as these exact strings. Only ``POST /api/messages/{id}/retry``
    takes a final message back to ``SENDING``; ``pause`` holds a sending one
    (``PAUSED``) until ``resume``, ``cancel`` ends one that is not final
    (``CANCELED``, final).
    """

    SCHEDULED = "SCHEDULED"
    SENDING = "SENDING"
    PAUSED = "PAUSED"
    SENT = "SENT"  # at least one recipient accepted
    FAILED = "FAILED"  # none accepted
    CANCELED = "CANCELED"


# Not final: its recipients may still be sent (or canceled).
UNFINISHED_MESSAGE_STATUSES = (MessageStatus.SCHEDULED, MessageStatus.SENDING,
                               MessageStatus.PAUSED)


# A message in one of these has none of its recipients submitted: the claim skips them and
# a batch already claimed asks again before each submission.
HELD_MESSAGE_STATUSES = (MessageStatus.PAUSED, MessageStatus.CANCELED)


class RecipientStatus(StrEnum):
    """Where one recipient is: queued, claimed by a node, sent, then delivered or failed.

    Stored and sent as these exact strings; a status never moves backwards, except by
    an explicit retry. ``UNKNOWN`` (the provider may or may not have it) and ``SENT``
    can still be settled by a receipt.
    """

    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    SENDING = "SENDING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    SUPPRESSED = "SUPPRESSED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"
    UNKNOWN = "UNKNOWN"


# Not yet given to the provider: a message is final once none of its recipients is.
QUEUED_STATUSES = (RecipientStatus.PENDING, RecipientStatus.SCHEDULED, RecipientStatus.SENDING)
# Final for the hub's own processing; a receipt never moves a recipient out of them.
FINAL_STATUSES = (RecipientStatus.DELIVERED, RecipientStatus.FAILED, RecipientStatus.SUPPRESSED,
                  RecipientStatus.EXPIRED, RecipientStatus.CANCELED)


Money = Numeric(14, 4)
# A price per segment as ``SMS_PRICES`` may give it (services/messaging/pricing.py).
Price = Numeric(12, 6)


class Message(db.Model):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    body: Mapped[str] = mapped_column(Text, nullable=False)
    encoding: Mapped[str] = mapped_column(String(8), nullable=False)
    segments: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default=MessageStatus.SENDING)
    recipient_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    success_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    delivered_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Recipients no longer queued: the message is final when this reaches recipient_count.
    settled_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cost: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal("0"))
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # ``sendAt``: ``SCHEDULED`` until then; null for a message sent at once.
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # ``quietHours``: each recipient held back while inside ``QUIET_HOURS`` in its time zones.
    quiet_hours: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                              server_default=false())
    # How long each recipient may wait to be sent once sendable (``validitySeconds``, else
    # ``SMS_VALIDITY_SECONDS`` then); null for messages older than the setting.
    validity_seconds: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_messages_user_id_id", "user_id", "id"),
        Index("ix_messages_status", "status"),
        Index("ix_messages_created_at", "created_at"),
    )


class Recipient(db.Model):
    __tablename__ = "recipients"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False
    )
    phone: Mapped[str] = mapped_column(String(PHONE_COLUMN_LENGTH), nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default=RecipientStatus.PENDING)
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(255))
    cost: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal("0"))
    # What one segment to this number costs, fixed when the message is created, so the
    # bill is the preview's whatever the prices become while it sends.
    price_per_segment: Mapped[Decimal] = mapped_column(Price, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    provider_status: Mapped[str | None] = mapped_column(String(32))
    provider_error_code: Mapped[str | None] = mapped_column(String(32))
    parts: Mapped[int | None] = mapped_column(Integer)
    retryable: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                            server_default=false())
    # Set, and committed, before the provider is called: a claim taken over with this set
    # may have reached the provider and is never submitted again on the hub's own.
    submit_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A throttled recipient is not claimed again before this.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Not sent by then, a queued recipient becomes EXPIRED: its message's validity after it
    # could first be sent (time spent waiting for quiet hours or ``sendAt`` does not count).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_recipients_message_id_id", "message_id", "id"),
        # statusCounts from the index alone (migration 0012).
        Index("ix_recipients_message_id_status", "message_id", "status"),
        Index("uq_recipients_message_id_phone", "message_id", "phone", unique=True),
        Index("uq_recipients_provider_message_id", "provider_message_id", unique=True),
        # Who last sent to a number (inbound routing) and erasure find its rows.
        Index("ix_recipients_phone_id", "phone", "id"),
        # Only the rows still to send are in the dispatcher's index.
        Index(
            "ix_recipients_queue",
            "status",
            "claimed_at",
            postgresql_where=text("status IN ('PENDING', 'SENDING')"),
            sqlite_where=text("status IN ('PENDING', 'SENDING')"),
        ),
        # The receipt timeout looks only at recipients still waiting for a receipt.
        Index(
            "ix_recipients_awaiting_receipt",
            "sent_at",
            postgresql_where=text("status = 'SENT'"),
            sqlite_where=text("status = 'SENT'"),
        ),
    )


class RecipientPart(db.Model):
    """One part of a recipient sent as several, each with its own provider id (SMPP)."""

    __tablename__ = "recipient_parts"

    provider_message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    recipient_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("recipients.id", ondelete="CASCADE"), nullable=False
    )
    part_number: Mapped[int] = mapped_column(Integer, nullable=False)
    # DELIVERED, FAILED or UNKNOWN once a final receipt came; a final part never changes.
    status: Mapped[str | None] = mapped_column(String(10))
    provider_status: Mapped[str | None] = mapped_column(String(32))
    provider_error_code: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_recipient_parts_recipient_id", "recipient_id"),)
