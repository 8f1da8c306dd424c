"""SQLAlchemy models, one module per aggregate; imported here so Alembic sees them all."""

from models.analytics import AnalyticsMark, MessageDailyTotal
from models.connection import Connection, Node
from models.idempotency import IdempotencyRecord
from models.inbound import InboundMessage, Suppression
from models.message import Message, Recipient, RecipientPart
from models.notification import Notification, NotificationRead
from models.quota import UserQuota
from models.token import RevokedToken
from models.user import User

__all__ = [
    "AnalyticsMark",
    "Connection",
    "IdempotencyRecord",
    "InboundMessage",
    "Message",
    "MessageDailyTotal",
    "Node",
    "Notification",
    "NotificationRead",
    "Recipient",
    "RecipientPart",
    "RevokedToken",
    "Suppression",
    "User",
    "UserQuota",
]
