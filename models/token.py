"""Revoked sessions, kept until their tokens would have expired anyway; and account changes.

Every node polls the rows added in the last seconds: a ``session:`` row drops
the live sockets of that session, an ``account:`` row makes each node check the
sockets of that user again (``services.auth.announce_account_change``).
"""

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import UTCDateTime, utcnow


class RevokedToken(db.Model):
    __tablename__ = "revoked_tokens"

    # ``session:<sid>`` (``services.auth.session_key``) or ``account:<user id>:<nonce>``.
    token_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[int | None] = mapped_column()
    revoked_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, index=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
