"""Per-connection limits: token buckets for events and bytes, and flood detection.

Every client event takes one token from its socket's event bucket and its
size from the byte bucket; with either empty the event is answered
``rate_limited``. A socket refused more than ``3 x burst`` times within
``FLOOD_WINDOW`` seconds is flooding and is disconnected. Expensive events
are also charged to their user's snapshot budget (``services.realtime.snapshots``).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

FLOOD_WINDOW = 10.0


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst  # full when made

    def _refill(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return self.tokens

    def take(self, amount: float, now: float) -> bool:
        # Refilled inline: every client event takes from two buckets.
        tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if tokens >= amount:
            self.tokens = tokens - amount
            return True
        self.tokens = tokens
        return False

    def spend(self, amount: float, now: float) -> bool:
        """Take ``amount`` while any credit is left, going into debt if it costs more."""
        if self._refill(now) <= 0:
            return False
        self.tokens -= amount
        return True

    def is_full(self, now: float) -> bool:
        return self.tokens + (now - self.updated) * self.rate >= self.burst


@dataclass(slots=True)
class _SocketBudget:
    events: TokenBucket
    bytes: TokenBucket
    refusals: deque = field(default_factory=deque)


class ConnectionRateLimiter:
    """The buckets of this process's sockets, released when a socket goes."""

    def __init__(self, *, event_rate: float = 20, event_burst: float = 40,
                 byte_rate: float = 64 * 1024, byte_burst: float = 256 * 1024) -> None:
        self.configure(event_rate=event_rate, event_burst=event_burst, byte_rate=byte_rate,
                       byte_burst=byte_burst)
        self.budgets: dict[str, _SocketBudget] = {}

    def configure(self, *, event_rate: float, event_burst: float, byte_rate: float,
                  byte_burst: float) -> None:
        self.event_rate, self.event_burst = event_rate, event_burst
        self.byte_rate, self.byte_burst = byte_rate, byte_burst

    def _budget(self, key: str) -> _SocketBudget:
        budget = self.budgets.get(key)
        if budget is None:
            budget = _SocketBudget(TokenBucket(self.event_rate, self.event_burst),
                                   TokenBucket(self.byte_rate, self.byte_burst))
            self.budgets[key] = budget
        return budget

    def allow_event(self, key: str, size: int) -> bool:
        """Charge one event of ``size`` bytes; False when either budget is exhausted."""
        budget = self.budgets.get(key) or self._budget(key)
        now = time.monotonic()
        if budget.events.take(1, now) and budget.bytes.take(size, now):
            return True
        budget.refusals.append(now)
        while budget.refusals and now - budget.refusals[0] > FLOOD_WINDOW:
            budget.refusals.popleft()
        return False

    def is_flooding(self, key: str) -> bool:
        budget = self.budgets.get(key)
        return budget is not None and len(budget.refusals) > 3 * self.event_burst

    def forget(self, key: str) -> None:
        self.budgets.pop(key, None)


limiter = ConnectionRateLimiter()
