"""Emits to a socket of this process are sent here, not through the message queue.

python-socketio's queue managers publish every emit, also one addressed to a
single sid, and every other process then receives, decodes and drops it: on
the scale-out benchmark about 100-200 µs of CPU per emit on each of them, and
a Redis round trip in the emitting call (BENCHMARKS.md, "Scale-out"). A sid
names one socket on one process, so when this process holds it the queue has
nothing to carry. Such emits are frequent: ``session`` on every connect,
``error`` for a failed event without an ack, expiry warnings, and the
snapshots sent on subscribing to analytics or tracking a message.
"""

from __future__ import annotations

from typing import Any


class LocalSidEmits:
    """Mixed in ahead of a pub/sub manager's class (``services.transport.client_manager``)."""

    def emit(self, event: str, data: Any, namespace: str | None = None, room: Any = None,
             skip_sid: Any = None, callback: Any = None, to: Any = None, **kwargs: Any) -> Any:
        room = to or room
        namespace = namespace or "/"
        if isinstance(room, str) and self.eio_sid_from_sid(  # type: ignore[attr-defined]
                room, namespace) is not None:
            kwargs["ignore_queue"] = True
        return super().emit(event, data, namespace=namespace, room=room,  # type: ignore[misc]
                            skip_sid=skip_sid, callback=callback, **kwargs)
