"""Live connections: this process's registry, and their rows in SQL.

Each process keeps its own sockets in memory (identity, rooms, expiry) and
writes connects, disconnects and pongs to the ``connections`` table behind, in
one batch every ``CONNECTION_FLUSH_INTERVAL``. Readers (``online``, ``stats``)
first flush this process's batch, so on one process they are exact, and across
processes they are right within one flush interval. Rows of a node that stops
heart-beating are ignored at once and deleted by the next live node.

No row can hold a batch back: a row whose user was deleted meanwhile is left
out (the user's sockets are being dropped), so is one already written (by a
commit whose answer was lost), and a pong for a row that is gone updates
nothing. Otherwise one deleted user would stop every later connect,
disconnect and pong of the node from being written.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from extensions import db
from models import Connection, Node, User
from services.auth import Identity
from services.observability.traffic import traffic

log = logging.getLogger(__name__)

USER_AGENT_MAX = 256
REMOTE_ADDR_MAX = 64

_connections = Connection.__table__
# A Core UPDATE: unlike the ORM's bulk update by primary key, it does not fail the
# batch when a row has gone (cascaded from a deleted user, or reaped).
_RECORD_SEEN = (
    update(_connections)
    .where(_connections.c.sid == bindparam("seen_sid"))
    .values(last_seen_at=bindparam("last_seen_at"), rtt_ms=bindparam("rtt_ms"))
)


@dataclass(slots=True)
class LiveConnection:
    """What this process knows about one of its sockets."""

    sid: str
    identity: Identity
    connected_at: datetime
    remote_addr: str | None
    user_agent: str | None
    rooms: set[str] = field(default_factory=set)
    expiry_warned: bool = False
    expired_notice_at: float | None = None


class ConnectionRegistry:
    """This process's sockets, and the SQL writes not yet flushed for them."""

    def __init__(self) -> None:
        self.by_sid: dict[str, LiveConnection] = {}
        self.sids_by_user: dict[int, set[str]] = {}
        self._pending_insert: dict[str, dict[str, Any]] = {}
        self._pending_delete: set[str] = set()
        self._pending_seen: dict[str, dict[str, Any]] = {}
        self._flush_lock = threading.Lock()
        self.node_id = ""
        self.accepting = True

    def add(self, conn: LiveConnection) -> None:
        self.by_sid[conn.sid] = conn
        self.sids_by_user.setdefault(conn.identity.user_id, set()).add(conn.sid)
        self._pending_insert[conn.sid] = {
            "sid": conn.sid,
            "user_id": conn.identity.user_id,
            "node_id": self.node_id,
            "connected_at": conn.connected_at,
            "last_seen_at": conn.connected_at,
            "rtt_ms": None,
            "remote_addr": conn.remote_addr,
            "user_agent": conn.user_agent,
        }

    def remove(self, sid: str) -> LiveConnection | None:
        """Forget a socket; tolerates sids that never finished connecting."""
        conn = self.by_sid.pop(sid, None)
        if conn is None:
            return None
        sids = self.sids_by_user.get(conn.identity.user_id)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self.sids_by_user[conn.identity.user_id]
        self._pending_seen.pop(sid, None)
        if self._pending_insert.pop(sid, None) is None:
            self._pending_delete.add(sid)
        return conn

    def record_seen(self, sid: str, rtt_ms: float | None) -> bool:
        """Note a pong; written with the next batch, so pongs never storm the database."""
        if sid not in self.by_sid:
            return False
        now = datetime.now(UTC)
        row = self._pending_insert.get(sid)
        if row is not None:
            row["last_seen_at"] = now
            row["rtt_ms"] = rtt_ms
        else:
            self._pending_seen[sid] = {"seen_sid": sid, "last_seen_at": now, "rtt_ms": rtt_ms}
        return True

    def get(self, sid: str) -> LiveConnection | None:
        return self.by_sid.get(sid)

    def sids_of_user(self, user_id: int) -> set[str]:
        return self.sids_by_user.get(user_id, set())

    def room_count(self) -> int:
        rooms: set[str] = set()
        for conn in self.by_sid.values():
            rooms.update(conn.rooms)
        return len(rooms)

    def has_pending_writes(self) -> bool:
        return bool(self._pending_insert or self._pending_delete or self._pending_seen)

    def flush(self) -> None:
        """Write the batch in one transaction; on failure keep it for the next try."""
        with self._flush_lock:
            if not self.has_pending_writes():
                return
            inserts, deletes, seen = (
                self._pending_insert, self._pending_delete, self._pending_seen
            )
            self._pending_insert, self._pending_delete, self._pending_seen = {}, set(), {}
            try:
                try:
                    self._write(inserts, deletes, seen)
                except IntegrityError:
                    db.session.rollback()
                    inserts = _insertable_rows(inserts)
                    self._write(inserts, deletes, seen)
            except Exception:
                db.session.rollback()
                self._requeue(inserts, deletes, seen)
                raise

    @staticmethod
    def _write(inserts: dict[str, dict], deletes: set[str], seen: dict[str, dict]) -> None:
        if deletes:
            db.session.execute(delete(Connection).where(Connection.sid.in_(deletes)))
        if inserts:
            db.session.execute(insert(Connection), list(inserts.values()))
        if seen:
            db.session.execute(_RECORD_SEEN, list(seen.values()))
        db.session.commit()

    def _requeue(
        self, inserts: dict[str, dict], deletes: set[str], seen: dict[str, dict]
    ) -> None:
        for sid, row in inserts.items():
            if sid in self.by_sid:
                self._pending_insert.setdefault(sid, row)
        self._pending_delete |= {sid for sid in deletes if sid not in self._pending_insert}
        for sid, row in seen.items():
            if sid in self.by_sid and sid not in self._pending_insert:
                self._pending_seen.setdefault(sid, row)

    def clear(self) -> None:
        self.by_sid.clear()
        self.sids_by_user.clear()
        self._pending_insert.clear()
        self._pending_delete.clear()
        self._pending_seen.clear()


registry = ConnectionRegistry()


def _insertable_rows(inserts: dict[str, dict]) -> dict[str, dict]:
    """The rows that can still be inserted: not there yet, of a user that still exists."""
    user_ids = {row["user_id"] for row in inserts.values()}
    users = set(db.session.scalars(select(User.id).where(User.id.in_(user_ids))))
    written = set(db.session.scalars(select(Connection.sid).where(Connection.sid.in_(inserts))))
    kept = {}
    for sid, row in inserts.items():
        if row["user_id"] not in users:
            log.warning("not recording connection %s: user %s no longer exists",
                        sid, row["user_id"])
        elif sid not in written:
            kept[sid] = row
    return kept


def db_now() -> datetime:
    """The database's clock, so nodes with skewed clocks agree on who is alive."""
    if db.engine.dialect.name == "sqlite":
        return datetime.now(UTC)
    value = db.session.scalar(select(func.now()))
    return value.astimezone(UTC)


def _alive_cutoff(now: datetime) -> datetime:
    return now - timedelta(seconds=current_app.config["NODE_TTL"])


def register_node(node_id: str, hostname: str, pid: int) -> None:
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
    cutoff = _alive_cutoff(db_now())
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


def _live_connections():
    """Connections held by nodes that are alive now."""
    cutoff = _alive_cutoff(db_now())
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
    cutoff = _alive_cutoff(db_now())
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
