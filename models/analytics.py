"""Change marks that tell every node whose analytics figures are out of date.

A change to a user's data bumps that user's row in the same transaction;
each node compares the versions of the users it has subscribers for with what
it last sent, and recomputes only those. Row ``ALL_USERS`` marks a change to
everyone's figures (a broadcast). There is deliberately no row that every
write bumps: on PostgreSQL it would serialise all writers on one row lock.
"""

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, Numeric
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import UTCDateTime, utcnow

ALL_USERS = -1


class AnalyticsMark(db.Model):
    __tablename__ = "analytics_marks"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=1)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class MessageDailyTotal(db.Model):
    """One owner's messages of one UTC day, summed: what the analytics figures read.

    Kept by triggers on ``messages`` in the writing transaction (migration 0003
    says why triggers), so the figures cost a few rows per user however long
    the history. The ``finished_*`` columns count only final messages (``SENT``,
    ``FAILED``, ``CANCELED``; migration 0011): recipients of the others, scheduled,
    sending or paused, are counted from their rows.
    """

    __tablename__ = "message_daily_totals"

    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    messages: Mapped[int] = mapped_column(BigInteger, nullable=False)
    recipients: Mapped[int] = mapped_column(BigInteger, nullable=False)
    success: Mapped[int] = mapped_column(BigInteger, nullable=False)
    delivered: Mapped[int] = mapped_column(BigInteger, nullable=False)
    failed: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cost: Mapped[Decimal] = mapped_column(Numeric(18, 4), nullable=False)
    segments_sent: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status_sending: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status_sent: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status_failed: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status_scheduled: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    status_paused: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    status_canceled: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    finished_success: Mapped[int] = mapped_column(BigInteger, nullable=False)
    finished_delivered: Mapped[int] = mapped_column(BigInteger, nullable=False)
    finished_failed: Mapped[int] = mapped_column(BigInteger, nullable=False)
