"""Change marks that tell every node whose analytics figures are out of date.

A change to a user's data bumps that user's row in the same transaction;
each node compares the versions of the users it has subscribers for with what
it last sent, and recomputes only those. Row ``ALL_USERS`` marks a change to
everyone's figures (a broadcast). There is deliberately no row that every
write bumps: on PostgreSQL it would serialise all writers on one row lock.
"""

from datetime import datetime

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import UTCDateTime, utcnow

ALL_USERS = -1


class AnalyticsMark(db.Model):
    __tablename__ = "analytics_marks"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=1)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
