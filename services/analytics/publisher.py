"""Live analytics to subscribers: a snapshot on subscribing, then what changed, in rounds.

Delivery is batched: a change bumps the user's mark (``services.analytics_marks``)
in its own transaction; once per ``ANALYTICS_INTERVAL`` each node compares the
marks of the users it has subscribers for with what it last sent, recomputes
only those (``services.analytics.figures``), and emits one
``analytics_update`` per type to its own sockets (latest state wins). Users
with no subscriber cost nothing. The changed users of a round are computed
together, a handful of grouped statements for all of them
(``bench/analytics.py`` measures what a round costs).
"""

from __future__ import annotations

import time
from typing import Any

from extensions import db
from services import analytics_marks
from services.analytics.figures import (
    DASHBOARD,
    FIGURE_TYPES,
    figures_for_many,
    global_stats,
)
from services.auth import Identity
from services.observability import metrics
from services.realtime import emitter, rooms, snapshots
from services.realtime.connections import LiveConnection, registry

# A subscription's figures cost about as much CPU as 150 rows of a tracking snapshot
# (an admin's global figures as much again): what ``services.realtime.snapshots`` charges.
SUBSCRIBE_COST = 150


def subscribe(conn: LiveConnection) -> None:
    """Join the analytics rooms and send the current figures at once, charged to the user."""
    identity: Identity = conn.identity
    snapshots.charge_snapshot(identity.user_id, SUBSCRIBE_COST * (2 if identity.is_admin else 1))
    publisher.note_snapshot(identity.user_id)
    emitter.enter_room(conn.sid, rooms.analytics_user_room(identity.user_id))
    metrics.analytics_figures.inc(len(FIGURE_TYPES))
    figures = figures_for_many([identity.user_id])[identity.user_id]
    for kind in FIGURE_TYPES:
        emitter.emit_to_sid(conn.sid, event="analytics_update",
                            payload={"type": kind, "data": figures[kind]})
    if identity.is_admin:
        emitter.enter_room(conn.sid, rooms.ANALYTICS_GLOBAL_ROOM)
        emitter.emit_to_sid(conn.sid, event="global_analytics_update",
                            payload={"type": DASHBOARD, "data": global_stats()})


def unsubscribe(conn: LiveConnection) -> None:
    """Leave the analytics rooms; later rounds forget the user once no socket here subscribes."""
    emitter.leave_room(conn.sid, rooms.analytics_user_room(conn.identity.user_id))
    emitter.leave_room(conn.sid, rooms.ANALYTICS_GLOBAL_ROOM)


class AnalyticsPublisher:
    """This node's scheduler: what it last sent, so only changed figures go out."""

    def __init__(self) -> None:
        self.sent_versions: dict[int, int] = {}
        self.last_global: dict[str, Any] | None = None
        self.emit_seconds = 0.0

    def note_snapshot(self, user_id: int) -> None:
        """A subscriber got fresh figures: later rounds compare against the marks read now.

        Read before the snapshot is computed, so a change racing it is sent again.
        """
        if user_id in self.sent_versions:
            return
        self.sent_versions[user_id] = analytics_marks.versions_of([user_id])[user_id]

    def publish(self) -> None:
        """One round: recompute and emit what changed for this node's subscribers."""
        started = time.thread_time()
        self.emit_seconds = 0.0
        try:
            self._round()
        finally:
            metrics.analytics_rounds.inc()
            metrics.analytics_round_cpu.labels("emit").inc(self.emit_seconds)
            metrics.analytics_round_cpu.labels("compute").inc(
                time.thread_time() - started - self.emit_seconds)

    def _round(self) -> None:
        subscribed, admins_subscribed = self._local_subscribers()
        for user_id in list(self.sent_versions):
            if user_id not in subscribed:
                del self.sent_versions[user_id]
        if subscribed:
            self._publish_users(subscribed)
        if admins_subscribed:
            self._publish_global()
        else:
            self.last_global = None
        db.session.close()

    @staticmethod
    def _local_subscribers() -> tuple[set[int], bool]:
        users, admins = set(), False
        for conn in list(registry.by_sid.values()):
            if rooms.analytics_user_room(conn.identity.user_id) in conn.rooms:
                users.add(conn.identity.user_id)
            if rooms.ANALYTICS_GLOBAL_ROOM in conn.rooms:
                admins = True
        return users, admins

    def _publish_users(self, subscribed: set[int]) -> None:
        changed = []
        for user_id, version in analytics_marks.versions_of(list(subscribed)).items():
            if self.sent_versions.get(user_id) != version:
                # Marks are read before the figures: a change racing them is sent next round.
                self.sent_versions[user_id] = version
                changed.append(user_id)
        if not changed:
            return
        metrics.analytics_figures.inc(len(FIGURE_TYPES) * len(changed))
        computed = figures_for_many(changed)
        started = time.thread_time()
        for user_id, figures in computed.items():
            room = rooms.analytics_user_room(user_id)
            for kind in FIGURE_TYPES:
                emitter.emit_to_local_room(room, event="analytics_update",
                                           payload={"type": kind, "data": figures[kind]})
        self.emit_seconds += time.thread_time() - started

    def _publish_global(self) -> None:
        figures = global_stats()
        if figures == self.last_global:
            return
        self.last_global = figures
        started = time.thread_time()
        emitter.emit_to_local_room(rooms.ANALYTICS_GLOBAL_ROOM, event="global_analytics_update",
                                   payload={"type": DASHBOARD, "data": figures})
        self.emit_seconds += time.thread_time() - started


publisher = AnalyticsPublisher()
