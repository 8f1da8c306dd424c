"""Log lines that a client can cause at will, written at most once per interval.

A client sending garbage as fast as it can must not be able to fill the disk
or spend the node's time on formatting: each kind of such line is written at
most once per interval, and says how many like it were left out since.
"""

from __future__ import annotations

import logging
import time


class ThrottledLog:
    """One warning per ``interval`` seconds; the others are counted, not written."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger = logger
        self.interval = interval
        self.last = float("-inf")
        self.suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        self.logger.warning(message + "; %d similar lines suppressed", *args, self.suppressed)
        self.last, self.suppressed = now, 0
