"""Bulk messages: who owns them, and what their owner and trackers see."""

from __future__ import annotations

from sqlalchemy import select

from extensions import db
from models import Message


def owner_of(message_id: int) -> int | None:
    """The owner's user id, or None when there is no such message."""
    return db.session.scalar(select(Message.user_id).where(Message.id == message_id))
