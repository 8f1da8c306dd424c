"""Socket.IO events in and out of this process, as rates for the admins' figures."""

from __future__ import annotations

import time


class TrafficCounter:
    """Counts events; ``rates`` gives per-second figures since its previous call."""

    def __init__(self) -> None:
        self.events_in = 0
        self.events_out = 0
        self._last = (time.monotonic(), 0, 0)

    def rates(self) -> tuple[float, float]:
        now = time.monotonic()
        since, seen_in, seen_out = self._last
        elapsed = max(now - since, 1e-6)
        self._last = (now, self.events_in, self.events_out)
        return ((self.events_in - seen_in) / elapsed, (self.events_out - seen_out) / elapsed)


traffic = TrafficCounter()
