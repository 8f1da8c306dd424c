"""Who is online, across every node: the presence queries over the ``connections`` table.

Each node writes its sockets' rows behind, in batches
(``services.realtime.connections``); a reader first flushes its own node's
batch, so on one process the answers are exact and across processes they
are right within one flush interval. Connections of a node whose heartbeat
is older than ``NODE_TTL`` are not counted (``services.node.heartbeats``
deletes them).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from extensions import db
from models import Connection, Node
from services.realtime.connections import registry

log = logging.getLogger(__name__)


def db_now() -> datetime:
    """The database's clock, so nodes with skewed clocks agree on who is alive."""
    if db.engine.dialect.name == "sqlite":
        return datetime.now(UTC)
    value = db.session.scalar(select(func.now()))
    return value.astimezone(UTC)


def alive_cutoff(now: datetime) -> datetime:
    """Nodes whose last heartbeat is older than this are dead."""
    return now - timedelta(seconds=current_app.config["NODE_TTL"])


def _live_connections():
    """Connections held by nodes that are alive now."""
    cutoff = alive_cutoff(db_now())
    return (
        select(Connection)
        .join(Node, Node.id == Connection.node_id)
        .where(Node.heartbeat_at >= cutoff)
    )


def _flush_own_writes() -> None:
    try:
        registry.flush()
    except Exception:
        log.exception("could not write connection state; answering from the database as is")


def count_user_connections(user_id: int) -> int:
    """Live connections of one user on every node.

    A single process (no message queue) is the only node: its own registry is
    the exact answer, without a flush and a query on every notify.
    """
    if not current_app.config["SOCKETIO_MESSAGE_QUEUE"]:
        return len(registry.sids_of_user(user_id))
    _flush_own_writes()
    query = _live_connections().where(Connection.user_id == user_id).subquery()
    return db.session.scalar(select(func.count()).select_from(query)) or 0


def online_user_count() -> int:
    """Distinct users with at least one live connection on any node."""
    _flush_own_writes()
    query = _live_connections().subquery()
    return db.session.scalar(select(func.count(func.distinct(query.c.user_id)))) or 0


def connection_stats() -> dict[str, Any]:
    """Totals and the per-node breakdown for ``GET /api/socket/stats``."""
    _flush_own_writes()
    cutoff = alive_cutoff(db_now())
    per_node = db.session.execute(
        select(Node.id, Node.heartbeat_at, Node.room_count, Node.events_in_per_second,
               Node.events_out_per_second, func.count(Connection.sid))
        .outerjoin(Connection, Connection.node_id == Node.id)
        .where(Node.heartbeat_at >= cutoff)
        .group_by(Node.id, Node.heartbeat_at, Node.room_count, Node.events_in_per_second,
                  Node.events_out_per_second)
        .order_by(Node.id)
    ).all()
    nodes = [
        {"id": node_id, "connections": count, "lastHeartbeat": heartbeat_at, "rooms": rooms,
         "eventsInPerSecond": events_in, "eventsOutPerSecond": events_out}
        for node_id, heartbeat_at, rooms, events_in, events_out, count in per_node
    ]
    return {
        "totalConnections": sum(node["connections"] for node in nodes),
        "onlineUsers": online_user_count(),
        "rooms": sum(node["rooms"] for node in nodes),
        "nodes": nodes,
    }


def count_all_connections() -> int:
    """Live connections on every node."""
    _flush_own_writes()
    query = _live_connections().subquery()
    return db.session.scalar(select(func.count()).select_from(query)) or 0
