"""This process as a node of the hub: registration, heartbeat and housekeeping.

One background loop per process writes the connection batch, heart-beats,
removes dead nodes, warns and drops sockets whose token expires or whose
session is revoked, checks again the sockets of accounts that changed, and
purges what has expired. Every step survives a database outage: it logs,
and the next tick tries again. It also keeps the garbage collector's full
collections short (``LongLivedCollector``).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask

from extensions import db, socketio
from services import auth, idempotency, notifications
from services.analytics.publisher import publisher
from services.messaging import inbound, messages, tracking
from services.messaging.dispatcher import Dispatcher
from services.node import heartbeats
from services.node.deployment import SharedChannel
from services.node.queue_canary import canary
from services.realtime import emitter, gaps, sessions
from services.realtime.connections import connection_cap, registry
from services.transport import room_channels

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 3600.0
SESSION_SWEEP_INTERVAL = 1.0
# Revocations are looked up with this much overlap, so clock skew between nodes loses none.
REVOCATION_OVERLAP = timedelta(seconds=30)


class LongLivedCollector:
    """Full garbage collections that walk only young objects, for a server that holds its
    connections for hours.

    CPython's full collection walks every tracked object: at 5,000 connections
    (about 40 objects each, plus 150,000 from start-up) one took 370 ms, and a
    connect burst set off several. Objects that survive a collection of the
    two young generations are almost all long-lived (modules, sockets,
    sessions), so after each one they go to the permanent generation
    (``gc.freeze``), where refcounting still frees them but no collection
    walks them; every collection, full or not, then walks only what was made
    since. A reference cycle among frozen objects that later becomes garbage
    is kept until ``reclaim``, which walks every object: 179-295 ms at 12,000
    connections. Connections leave none (``make bench-burst``: no object over
    12,000 connections' lifetimes), so the node's hourly look
    reclaims only once the frozen objects have grown by ``RECLAIM_GROWTH`` over
    their fewest since the last reclaim (counting them walks their list: about
    3 ms per 500,000): a steady node never pauses for it, and one that keeps
    cycles or grows reclaims as CPython itself would, at a fraction of its heap.
    """

    RECLAIM_GROWTH = 0.10
    # Seconds between the young collections ``collect_young`` makes in the node's loop.
    YOUNG_INTERVAL = 1.0

    def __init__(self) -> None:
        self._fewest_frozen = 0

    def install(self) -> None:
        """Freeze what start-up made, and every young collection's survivors from now on."""
        gc.collect()
        gc.freeze()
        self._fewest_frozen = gc.get_freeze_count()
        if self._freeze_survivors not in gc.callbacks:
            gc.callbacks.append(self._freeze_survivors)

    def uninstall(self) -> None:
        if self._freeze_survivors in gc.callbacks:
            gc.callbacks.remove(self._freeze_survivors)

    @staticmethod
    def _freeze_survivors(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] >= 1:
            gc.freeze()

    @staticmethod
    def collect_young() -> None:
        """Collect the two young generations now, so that neither grows past a second's worth.

        CPython starts a young collection after 700 more allocations than
        deallocations, counting the deallocation of any object, old or young.
        Every socket's ping replaces its timer, its reader's waiter and their
        bound methods: new objects, each freeing an older one, so the count
        stays put while the young generation grows by a few objects per ping.
        At 10,000 sockets (400 pings a second) the first collection set
        off by a request walked 26,544 young objects, 15 ms on an AMD EPYC;
        the next one of generation 1, 43,038. Collected every second, each walks
        what a second made, and the survivors are frozen like any others.
        """
        gc.collect(1)

    @staticmethod
    def all_objects() -> list[object]:
        """Every tracked object, frozen or not (``gc.get_objects`` leaves frozen ones out)."""
        gc.unfreeze()
        try:
            return gc.get_objects()
        finally:
            gc.freeze()

    @staticmethod
    def reclaim() -> None:
        """Collect the cycles frozen objects left behind: one full walk of every object."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def reclaim_if_grown(self) -> bool:
        """``reclaim`` when the frozen objects number a tenth more than their fewest since
        the last one (what frozen garbage there is hides among them); True if it ran."""
        frozen = gc.get_freeze_count()
        self._fewest_frozen = min(self._fewest_frozen, frozen)
        if frozen <= self._fewest_frozen * (1 + self.RECLAIM_GROWTH):
            return False
        self.reclaim()
        self._fewest_frozen = gc.get_freeze_count()
        return True


collector = LongLivedCollector()


def default_node_id(port: int | None = None) -> str:
    """Stable across restarts on one host and port, so a restart clears its own stale rows."""
    host = socket.gethostname()
    return f"{host}:{port}" if port else f"{host}:pid{os.getpid()}"


class NodeRuntime:
    """The node's identity and its single maintenance loop."""

    def __init__(self, app: Flask, node_id: str) -> None:
        self.app = app
        self.node_id = node_id
        self.running = False
        self.stopped = False
        self._stopping = threading.Lock()
        self._revocations_checked = datetime.now(UTC)
        self._seen_revocations: set[str] = set()
        self.dispatcher = Dispatcher(app, node_id, on_inbound=inbound.handler(app))

    def start(self) -> None:
        """Join the hub; ``SharedChannel`` when another deployment is on the queue's channel."""
        self.app.config["NODE_ID"] = self.node_id
        self._listen_to_queue()
        connection_cap.configure(self.app.config["SOCKETIO_MESSAGE_QUEUE"],
                                 self.app.config["SOCKETIO_CHANNEL"],
                                 alive_seconds=self.app.config["NODE_TTL"])
        with self.app.app_context():
            heartbeats.register_node(self.node_id, hostname=socket.gethostname(),
                                     pid=os.getpid())
        self.running = True
        socketio.start_background_task(self._loop)
        self.dispatcher.start()
        collector.install()
        log.info("node %s started", self.node_id)

    def _listen_to_queue(self) -> None:
        """With a message queue, subscribe now (not at the first socket) and watch it.

        Before serving anyone, the channel is probed for other deployments.
        """
        server = socketio.server
        config = self.app.config
        if not config["SOCKETIO_MESSAGE_QUEUE"]:
            return
        canary.install(server.manager, deployment=config["DEPLOYMENT_ID"], node_id=self.node_id)
        room_channels.on_gap(server.manager, self._catch_up)
        if not server.manager_initialized:
            server.manager_initialized = True
            server.manager.initialize()
        others = canary.probe()
        if others:
            deployment, node = next(iter(others.items()))
            raise SharedChannel(
                f"refusing to start node {self.node_id}: node {node} of another deployment "
                f"({deployment}) uses the message queue channel {config['SOCKETIO_CHANNEL']!r}; "
                f"give each deployment its own SOCKETIO_CHANNEL, or leave it unset to name it "
                f"after the database")

    def _catch_up(self, lost_since: float) -> None:
        """The queue listener is back from a gap: the sockets here get what they missed
        (``services.realtime.gaps``)."""
        with self.app.app_context():
            since, held = gaps.missed_since(lost_since), set(emitter.local_rooms())
            changed = tracking.catch_up(since, held)
            made = notifications.catch_up(since, held)
        log.info("message queue listener back after a gap since %s: %d messages and %d "
                 "notifications caught up on",
                 datetime.fromtimestamp(lost_since, UTC).isoformat(timespec="milliseconds"),
                 changed, made)

    def stop(self) -> None:
        """Leave the hub at once: no new sockets, ours closed so that their clients reconnect
        to another node, and this node's rows deleted rather than left for ``NODE_TTL``.

        A second call (gunicorn's ``worker_exit`` after SIGTERM) waits for the
        first to finish, so that the process never exits halfway through.
        """
        with self._stopping:
            if self.stopped:
                return
            self.running = False
            collector.uninstall()
            self.dispatcher.stop()
            with self.app.app_context():
                closed = 0
                try:
                    closed = sessions.close_all_sessions()
                except Exception:
                    log.exception("node %s could not close all its sockets", self.node_id)
                try:
                    connection_cap.leave()
                    registry.flush()
                    heartbeats.unregister_node(self.node_id)
                except Exception:
                    log.exception("node %s could not unregister cleanly", self.node_id)
            self.stopped = True
            log.info("node %s stopped; %d sockets closed", self.node_id, closed)

    def _loop(self) -> None:
        config = self.app.config
        schedule: list[tuple[float, Callable[[], object]]] = [
            (config["CONNECTION_FLUSH_INTERVAL"], registry.flush),
            (config["NODE_HEARTBEAT_INTERVAL"], self._heartbeat),
            (config["NODE_HEARTBEAT_INTERVAL"], connection_cap.heartbeat),
            (SESSION_SWEEP_INTERVAL, self._sweep_sessions),
            (config["ANALYTICS_INTERVAL"], publisher.publish),
            (HOUSEKEEPING_INTERVAL, self._housekeeping),
            (collector.YOUNG_INTERVAL, collector.collect_young),
            (HOUSEKEEPING_INTERVAL, collector.reclaim_if_grown),
        ]
        # Every step runs at once, except the reclaim: start-up has just collected everything.
        next_run = [0.0] * (len(schedule) - 1) + [time.monotonic() + HOUSEKEEPING_INTERVAL]
        tick = min(interval for interval, _ in schedule)
        while self.running:
            now = time.monotonic()
            for index, (interval, step) in enumerate(schedule):
                if now >= next_run[index]:
                    next_run[index] = now + interval
                    self._run_step(step)
            socketio.sleep(tick)

    def _run_step(self, step: Callable[[], object]) -> None:
        with self.app.app_context():
            try:
                step()
            except Exception:
                db.session.rollback()
                log.exception("node %s: %s failed; retrying on the next tick",
                              self.node_id, getattr(step, "__name__", step))

    def _heartbeat(self) -> None:
        heartbeats.heartbeat(self.node_id)
        heartbeats.reap_dead_nodes()
        if canary.enabled:
            canary.publish()
            canary.check(3 * self.app.config["NODE_HEARTBEAT_INTERVAL"] + 2.0)

    def _sweep_sessions(self) -> None:
        sessions.sweep_expiring_sessions()
        checked = datetime.now(UTC)
        revoked = auth.revoked_since(self._revocations_checked - REVOCATION_OVERLAP)
        fresh = {key: user_id for key, user_id in revoked.items()
                 if key not in self._seen_revocations}
        self._seen_revocations = set(revoked)
        self._revocations_checked = checked
        if fresh:
            sessions.apply_revocations(fresh, messages.owner_of)

    def _housekeeping(self) -> None:
        auth.purge_expired_revocations()
        idempotency.purge_expired()
