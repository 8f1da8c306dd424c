"""A canary through the message queue: a deaf worker, or another deployment, is noticed.

A Redis listener can die or hang without a word and leave a process "deaf":
it keeps its sockets but never receives other processes' emits. Every
heartbeat this process publishes a canary on the queue and notes when its
own listener last received anything; when that is too long ago, readiness
fails, the log says so, and the listener's connection is dropped so that
the listener connects and subscribes again.

Each canary names its node's deployment (``services.node.deployment``). A node
that hears another deployment's canary on its channel logs it loudly; a
starting node probes the channel first and every node of another deployment
answers, so the newcomer learns of them before serving anyone.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import gevent
import orjson

from services.transport.client_manager import QueueObserver

log = logging.getLogger(__name__)

CANARY_METHOD = "hub_canary"
CANARY_MARK = CANARY_METHOD.encode()
# How long a starting node listens for other deployments once it hears its own probe.
PROBE_ANSWER_WAIT = 0.5
PROBE_REPEAT = 0.2


class QueueCanary:
    def __init__(self) -> None:
        self.manager: Any = None
        self.last_heard = time.monotonic()
        self.published = 0
        self.deaf_since: float | None = None
        self.deployment = ""
        self.node_id = ""
        self.other_deployments: dict[str, str] = {}
        self._probe_id = ""
        self._probe_heard = False

    def install(self, manager: Any, *, deployment: str, node_id: str) -> None:
        """Watch ``manager``'s listener from now on: it shows this canary what it hears.

        Only a manager on a message queue has one (``QueueObserver``).
        """
        if not isinstance(manager, QueueObserver):
            return
        self.manager = manager
        self.deployment, self.node_id = deployment, node_id
        manager.queue_observer = self._heard

    def _heard(self, message: Any) -> None:
        self.last_heard = time.monotonic()
        if (CANARY_MARK if isinstance(message, bytes) else CANARY_METHOD) in message:
            self._on_canary(message)

    @property
    def enabled(self) -> bool:
        return self.manager is not None

    def publish(self, probe: str = "") -> bool:
        """Send a canary that every listener, this one included, receives; python-socketio
        ignores its method, this canary reads it. False when Redis could not take it."""
        if self.manager is None:
            return False
        receivers = self.manager._publish({
            "method": CANARY_METHOD, "host_id": self.manager.host_id, "id": uuid.uuid4().hex,
            "deployment": self.deployment, "node": self.node_id, "probe": probe})
        self.published += 1
        return receivers is not None

    def _on_canary(self, message: Any) -> None:
        try:
            data = orjson.loads(message)
        except (orjson.JSONDecodeError, TypeError):
            return
        if not isinstance(data, dict) or data.get("method") != CANARY_METHOD:
            return
        if data.get("host_id") == self.manager.host_id:
            if self._probe_id and data.get("probe") == self._probe_id:
                self._probe_heard = True
            return
        deployment = data.get("deployment")
        if not isinstance(deployment, str) or not deployment or deployment == self.deployment:
            return
        node = str(data.get("node"))[:200]
        if deployment not in self.other_deployments:
            log.error("node %s of another deployment (%s) publishes on this message queue "
                      "channel: users of the two would receive each other's events; give "
                      "each deployment its own SOCKETIO_CHANNEL", node, deployment)
        self.other_deployments[deployment] = node
        if data.get("probe"):
            self.publish()

    def probe(self, subscribe_timeout: float = 5.0) -> dict[str, str]:
        """Before serving: the other deployments on this channel, each with one of its nodes.

        The probe is repeated until this node hears it (it is then subscribed),
        and other deployments' nodes answer it at once. A queue that cannot be
        reached or heard is logged and not held against the node: it serves
        its own sockets until Redis returns.
        """
        if self.manager is None:
            return {}
        self._probe_id, self._probe_heard = uuid.uuid4().hex, False
        deadline, publish_at = time.monotonic() + subscribe_timeout, 0.0
        while not self._probe_heard and time.monotonic() < deadline:
            if time.monotonic() >= publish_at:
                if not self.publish(probe=self._probe_id):
                    log.warning("the message queue is unreachable: other deployments on this "
                                "node's channel cannot be ruled out")
                    return dict(self.other_deployments)
                publish_at = time.monotonic() + PROBE_REPEAT
            gevent.sleep(0.01)
        if self._probe_heard:
            gevent.sleep(PROBE_ANSWER_WAIT)
        else:
            log.warning("this node did not hear its own probe on the message queue within "
                        "%.0f s: other deployments on its channel cannot be ruled out",
                        subscribe_timeout)
        return dict(self.other_deployments)

    def silent_for(self) -> float:
        return time.monotonic() - self.last_heard

    def check(self, max_silence: float) -> bool:
        """Whether the listener heard the queue recently; if not, log and resubscribe."""
        if self.manager is None or self.published < 2:
            return True
        if self.silent_for() <= max_silence:
            if self.deaf_since is not None:
                log.warning("message queue listener hears again")
            self.deaf_since = None
            return True
        if self.deaf_since is None:
            self.deaf_since = time.monotonic()
            log.error("message queue listener has heard nothing for %.1f s: this process "
                      "would miss other processes' emits; resubscribing", self.silent_for())
        drop = getattr(self.manager, "drop_listener", None)
        if drop is not None:
            try:
                drop()
            except Exception:
                log.exception("closing the deaf listener's connection failed")
        return False


canary = QueueCanary()
