"""Making up for a gap in what the message queue brought this process.

Redis keeps nothing for a pub/sub connection that is gone: what was published
while this process's listener was away never reaches its sockets
(``services.transport.room_channels``). Once the listener is back, the node
asks the services that emit what they sent since the last message it heard,
less ``RECIPIENT_RESUME_OVERLAP`` (a change stamped before that moment may
have been published after it, and nodes' clocks differ), and sends it again
to its own sockets only: ``tracking.catch_up`` the messages and their
recipients, ``notifications.catch_up`` the personal notifications. Clients
keep events by id and version, so the repeats in the overlap are harmless.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from flask import current_app

# Ids per statement: well under every database's limit of bound parameters.
CHUNK = 1_000


def missed_since(lost_since: float) -> datetime:
    """From when to send again, for a gap that began at ``lost_since`` (wall-clock seconds)."""
    return datetime.fromtimestamp(lost_since - current_app.config["RECIPIENT_RESUME_OVERLAP"],
                                  UTC)


def chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]
