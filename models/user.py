"""People who sign in: the owners of messages, notifications and connections."""

from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import UTCDateTime, utcnow

ROLE_USER = "user"
ROLE_ADMIN = "admin"


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    name: Mapped[str | None] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16), nullable=False, default=ROLE_USER)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # Tokens carry it at issue; disabling the account moves it on (to the Unix time of the
    # disable), ending every session.
    session_version: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN
