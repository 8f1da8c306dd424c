"""Live connections: this process's registry of its sockets, and their rows in SQL.

Each process keeps its own sockets in memory (identity, rooms, expiry) and
writes connects, disconnects and pongs to the ``connections`` table behind, in
one batch every ``CONNECTION_FLUSH_INTERVAL``. Presence queries
(``services.realtime.presence``) first flush this process's batch, so on one
process they are exact, and across processes they are right within one flush
interval.

No row can hold a batch back: a row whose user was deleted meanwhile is left
out (the user's sockets are being dropped), so is one already written (by a
commit whose answer was lost), and a pong for a row that is gone updates
nothing. Otherwise one deleted user would stop every later connect,
disconnect and pong of the node from being written.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from extensions import db
from models import Connection, User
from services.auth import Identity

log = logging.getLogger(__name__)

_connections = Connection.__table__
# A Core UPDATE: unlike the ORM's bulk update by primary key, it does not fail the
# batch when a row has gone (cascaded from a deleted user, or reaped).
_RECORD_SEEN = (
    update(_connections)
    .where(_connections.c.sid == bindparam("seen_sid"))
    .values(last_seen_at=bindparam("last_seen_at"), rtt_ms=bindparam("rtt_ms"))
)
# Built once, as ``_RECORD_SEEN``: built for each flush, its expression left reference
# cycles that the node's collector froze (``runtime.LongLivedCollector``).
_FORGET = delete(_connections).where(_connections.c.sid.in_(bindparam("sids", expanding=True)))


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
            db.session.execute(_FORGET, {"sids": list(deletes)})
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


# KEYS: the user's counts by process, the live processes; ARGV: this process, the cap,
# how long this process counts as alive. Counts of processes gone silent are let go.
_RESERVE = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local counts = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #counts, 2 do
  local alive = redis.call('ZSCORE', KEYS[2], counts[i])
  if alive and tonumber(alive) >= now then
    total = total + tonumber(counts[i + 1])
  else
    redis.call('HDEL', KEYS[1], counts[i])
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"""
_RELEASE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
"""
# KEYS: the live processes; ARGV: this process, how long it counts as alive.
_ALIVE = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
"""


class UserConnectionCap:
    """``MAX_CONNECTIONS_PER_USER`` across every process of the deployment.

    With Redis, each process keeps in a hash per user how many sockets of
    the user it holds, and a sorted set says until when each process counts
    as alive (refreshed every heartbeat): a process killed with ``kill -9``
    stops counting after ``NODE_TTL``, and a restarted one is another
    process. The check and the increment are one script, so two processes
    cannot both take the last place. The keys share one hash tag, the
    deployment's channel, so the script runs on a Redis Cluster too.

    Without Redis, or while it cannot be reached, the cap holds per process.
    When a release could not be written, the process counts again under a
    new name at its next heartbeat.
    """

    def __init__(self) -> None:
        self.by_user: dict[int, set[str]] = {}
        self.user_of: dict[str, int] = {}
        self.client: Any = None
        self.prefix = ""
        self.alive_seconds = 0.0
        self.process = uuid.uuid4().hex
        self.out_of_step = False
        self._scripts: dict[str, Any] = {}

    def configure(self, url: str | None, channel: str | None, *, alive_seconds: float) -> None:
        """Count in Redis at ``url`` under ``channel``'s name, or (no URL) in this process."""
        self.client = None
        if not url or not url.startswith(("redis://", "rediss://", "unix://")):
            return
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = f"{{{channel}}}"
        self.alive_seconds = alive_seconds
        self._scripts = {name: self.client.register_script(body) for name, body in
                         (("reserve", _RESERVE), ("release", _RELEASE), ("alive", _ALIVE))}

    def _user_key(self, user_id: int) -> str:
        return f"{self.prefix}:user-sockets:{user_id}"

    @property
    def _processes_key(self) -> str:
        return f"{self.prefix}:processes"

    def reserve(self, sid: str, user_id: int, limit: int) -> bool:
        """Take a place for ``sid``; False when the user already holds ``limit`` sockets."""
        if len(self.by_user.get(user_id, ())) >= limit:
            return False
        if self.client is not None:
            try:
                allowed = self._scripts["reserve"](
                    keys=[self._user_key(user_id), self._processes_key],
                    args=[self.process, limit, self.alive_seconds])
            except Exception as exc:
                log.warning("per-user cap counted on this node only: Redis failed (%s)", exc)
                self.out_of_step = True
            else:
                if not allowed:
                    return False
        self.by_user.setdefault(user_id, set()).add(sid)
        self.user_of[sid] = user_id
        return True

    def release(self, sid: str) -> None:
        """Give back ``sid``'s place; tolerates sids that never took one."""
        user_id = self.user_of.pop(sid, None)
        if user_id is None:
            return
        sids = self.by_user[user_id]
        sids.discard(sid)
        if not sids:
            del self.by_user[user_id]
        if self.client is not None:
            try:
                self._scripts["release"](keys=[self._user_key(user_id)], args=[self.process])
            except Exception as exc:
                log.warning("could not give back a socket's place in Redis (%s)", exc)
                self.out_of_step = True

    def heartbeat(self) -> None:
        """This process is alive; counted again under a new name if a write was lost."""
        if self.client is None:
            return
        if self.out_of_step:
            self._count_again()
        self._scripts["alive"](keys=[self._processes_key],
                               args=[self.process, self.alive_seconds])

    def _count_again(self) -> None:
        old, self.process = self.process, uuid.uuid4().hex
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self._processes_key, {self.process: 0})
            for user_id, sids in self.by_user.items():
                pipe.hset(self._user_key(user_id), self.process, len(sids))
            pipe.zrem(self._processes_key, old)
            pipe.execute()
        self.out_of_step = False

    def leave(self) -> None:
        """This process stops: its remaining counts no longer hold anyone back."""
        if self.client is not None:
            try:
                self.client.zrem(self._processes_key, self.process)
            except Exception as exc:
                log.warning("could not leave the per-user cap's process list (%s)", exc)

    def clear(self) -> None:
        self.by_user.clear()
        self.user_of.clear()


connection_cap = UserConnectionCap()


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
