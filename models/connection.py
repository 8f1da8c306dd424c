"""Live Socket.IO connections and the server processes (nodes) holding them.

The rows are what every process reads to answer ``online`` and ``stats``; a
node that stops heart-beating is dead and its rows are removed by the others.
"""

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import UTCDateTime, utcnow


class Node(db.Model):
    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, index=True
    )
    # Rooms with members on this node at the last heartbeat, for ``stats``.
    room_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Socket.IO events received from and sent to clients per second, over the last heartbeat.
    events_in_per_second: Mapped[float] = mapped_column(
        Float, nullable=False, default=0.0, server_default="0"
    )
    events_out_per_second: Mapped[float] = mapped_column(
        Float, nullable=False, default=0.0, server_default="0"
    )


class Connection(db.Model):
    __tablename__ = "connections"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    node_id: Mapped[str] = mapped_column(String(64), nullable=False)
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    rtt_ms: Mapped[float | None] = mapped_column(Float)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))

    __table_args__ = (
        Index("ix_connections_user_id", "user_id"),
        Index("ix_connections_node_id", "node_id"),
    )
