"""This node's row in SQL: registered at start, heart-beaten, and the dead nodes reaped.

A node's heartbeat carries its room count and event rates, for the admins'
figures; a node that stops heart-beating for ``NODE_TTL`` is dead, and the
next live node deletes its row and its connections. A node that stops
cleanly deletes its own at once.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, select, update

from extensions import db
from models import Connection, Node
from services.observability.traffic import traffic
from services.realtime.connections import registry
from services.realtime.presence import alive_cutoff, db_now

log = logging.getLogger(__name__)


def register_node(node_id: str, *, hostname: str, pid: int) -> None:
    """Start this node afresh: rows a previous run of it left behind are removed."""
    registry.node_id = node_id
    registry.accepting = True
    now = db_now()
    db.session.execute(delete(Connection).where(Connection.node_id == node_id))
    node = db.session.get(Node, node_id)
    if node is None:
        db.session.add(Node(id=node_id, hostname=hostname, pid=pid, started_at=now,
                            heartbeat_at=now, room_count=0))
    else:
        node.hostname, node.pid, node.started_at, node.heartbeat_at = hostname, pid, now, now
        node.room_count = 0
    db.session.commit()


def heartbeat(node_id: str) -> None:
    """This node is alive: its heartbeat, with its room count and event rates."""
    events_in, events_out = traffic.rates()
    db.session.execute(
        update(Node)
        .where(Node.id == node_id)
        .values(heartbeat_at=db_now(), room_count=registry.room_count(),
                events_in_per_second=round(events_in, 2),
                events_out_per_second=round(events_out, 2))
    )
    db.session.commit()


def reap_dead_nodes() -> list[str]:
    """Remove the connections and rows of nodes whose heartbeat is older than ``NODE_TTL``."""
    cutoff = alive_cutoff(db_now())
    dead = list(db.session.scalars(select(Node.id).where(Node.heartbeat_at < cutoff)))
    if dead:
        db.session.execute(delete(Connection).where(Connection.node_id.in_(dead)))
        db.session.execute(delete(Node).where(Node.id.in_(dead)))
        log.warning("removed dead nodes %s and their connections", dead)
    db.session.commit()
    return dead


def unregister_node(node_id: str) -> None:
    """Clean shutdown: this node's connections and row go at once."""
    db.session.execute(delete(Connection).where(Connection.node_id == node_id))
    db.session.execute(delete(Node).where(Node.id == node_id))
    db.session.commit()
