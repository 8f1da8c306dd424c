"""Bulk messages and their recipients; the recipients table is also the send queue.

A dispatcher claims ``PENDING`` recipients (and ``SENDING`` ones whose claim has
gone stale after a crash), sends them, and records each outcome; ``version``
grows with every change so clients can drop stale or repeated updates.
"""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import BigIntId, UTCDateTime, utcnow


class MessageStatus(StrEnum):
    """Where a message is: sending until every recipient has an outcome, then sent or failed.

    Stored and sent as these exact strings; a status never moves backwards.
    """

    SENDING = "SENDING"
    SENT = "SENT"  # at least one recipient accepted
    FAILED = "FAILED"  # none accepted


class RecipientStatus(StrEnum):
    """Where one recipient is: queued, claimed by a node, sent, then delivered or failed.

    Stored and sent as these exact strings; a status never moves backwards.
    """

    PENDING = "PENDING"
    SENDING = "SENDING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


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
    cost: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal("0"))
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

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
    phone: Mapped[str] = mapped_column(String(16), nullable=False)
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

    __table_args__ = (
        Index("ix_recipients_message_id_id", "message_id", "id"),
        Index("uq_recipients_message_id_phone", "message_id", "phone", unique=True),
        Index("uq_recipients_provider_message_id", "provider_message_id", unique=True),
        # Only the rows still to send are in the dispatcher's index.
        Index(
            "ix_recipients_queue",
            "status",
            "claimed_at",
            postgresql_where=text("status IN ('PENDING', 'SENDING')"),
            sqlite_where=text("status IN ('PENDING', 'SENDING')"),
        ),
    )
