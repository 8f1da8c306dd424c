"""Per-user budgets for snapshots: events that cost far more than others are charged by cost.

A few events cost far more than others: ``track_message`` sends up to a
thousand ``recipient_update`` events (or, batched, every recipient of a
message of up to 10,000), ``subscribe_analytics`` computes every figure. At
the event rate one socket took most of a core and pushed other clients' acks
into seconds, and a user can open several sockets. Those events
are charged by their cost, in snapshot rows, to a budget their user's sockets
on this node share (``SNAPSHOT_RATE`` rows a second, ``SNAPSHOT_BURST`` at
once). The budget may go into debt by one snapshot, so the cost is charged
once it is known; while it is in debt such events are answered
``rate_limited`` before any work is done.
"""

from __future__ import annotations

import time

from services.errors import RateLimited
from services.transport.rate_limits import FLOOD_WINDOW, TokenBucket


class SnapshotBudgets:
    """Each user's snapshot budget on this node; a budget back to full is forgotten."""

    def __init__(self, rate: float = 500, burst: float = 1000) -> None:
        self.configure(rate, burst)
        self.budgets: dict[int, TokenBucket] = {}
        self.pruned = time.monotonic()

    def configure(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst

    def spend(self, user_id: int, cost: float) -> bool:
        now = time.monotonic()
        if now - self.pruned > FLOOD_WINDOW:
            self.budgets = {user: bucket for user, bucket in self.budgets.items()
                            if not bucket.is_full(now)}
            self.pruned = now
        bucket = self.budgets.get(user_id)
        if bucket is None:
            bucket = self.budgets[user_id] = TokenBucket(self.rate, self.burst)
        return bucket.spend(cost, now)


budgets = SnapshotBudgets()


def charge_snapshot(user_id: int, rows: int) -> None:
    """Charge a snapshot of ``rows`` rows to its user, or refuse it with ``rate_limited``."""
    if not budgets.spend(user_id, rows):
        raise RateLimited("Too many snapshots: slow down")
