"""A canary through the message queue, so a worker that stopped hearing it is noticed.

A Redis listener can die or hang without a word and leave a process "deaf":
it keeps its sockets but never receives other processes' emits. Every
heartbeat this process publishes a canary on the queue and notes when its
own listener last received anything; when that is too long ago, readiness
fails, the log says so, and the listener's connection is dropped so that
python-socketio's retry loop subscribes again.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

log = logging.getLogger(__name__)

CANARY_METHOD = "hub_canary"


class QueueCanary:
    def __init__(self) -> None:
        self.manager: Any = None
        self.last_heard = time.monotonic()
        self.published = 0
        self.deaf_since: float | None = None

    def install(self, manager: Any) -> None:
        """Watch ``manager``'s listener (a python-socketio pub/sub manager) from now on."""
        if not hasattr(manager, "_listen") or not hasattr(manager, "_publish"):
            return
        self.manager = manager
        listen = manager._listen

        def listen_and_note():
            for message in listen():
                self.last_heard = time.monotonic()
                yield message

        manager._listen = listen_and_note

    @property
    def enabled(self) -> bool:
        return self.manager is not None

    def publish(self) -> None:
        """Send a canary that every listener, this one included, receives and ignores."""
        if self.manager is None:
            return
        self.manager._publish({"method": CANARY_METHOD, "host_id": self.manager.host_id,
                               "id": uuid.uuid4().hex})
        self.published += 1

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
        pubsub = getattr(self.manager, "pubsub", None)
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:
                log.exception("closing the deaf listener's connection failed")
        return False


canary = QueueCanary()
