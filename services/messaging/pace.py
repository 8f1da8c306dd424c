"""``SMS_MAX_PER_SECOND``: submissions per second per sender, across the whole deployment.

Each submission reserves the next free slot on one timeline per sender (a
generic cell rate algorithm: the timeline's next slot moves on by
``1 / rate`` per reservation) and waits until its slot comes. The timeline
lives in Redis when the deployment has a message queue, read with Redis's
own clock so that every node agrees, and in this process otherwise. Slots
are spaced evenly, so no window of one second holds more than ``rate + 1``
submissions from all nodes together.

A throttled outcome halves this node's pace (its reservations take twice
the slot) and the pace then recovers by a tenth a second without another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import gevent
from flask import Flask

RECOVERY_PER_SECOND = 1.1
LATE_TOLERANCE = 0.05
LATE_RETRIES = 3
SLOWEST = 1 / 64
# A slot's reservation outlives any wait it can cause.
TIMELINE_TTL_MS = 600_000

# KEYS[1]: the sender's timeline; ARGV[1]: seconds this reservation takes.
# Returns the seconds to wait for the slot it reserved.
_RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
if free < now then free = now end
redis.call('SET', KEYS[1], string.format('%.6f', free + tonumber(ARGV[1])), 'PX', ARGV[2])
return string.format('%.6f', free - now)
"""


class Timeline(Protocol):
    def reserve(self, key: str, seconds: float) -> float:
        """Reserve ``seconds`` on ``key``'s timeline; how long until the reserved slot."""
        ...


class LocalTimeline:
    """One process's timelines, for a deployment without a message queue."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._free: dict[str, float] = {}

    def reserve(self, key: str, seconds: float) -> float:
        now = self.clock()
        free = max(self._free.get(key, now), now)
        self._free[key] = free + seconds
        return free - now


class RedisTimeline:
    """Timelines every node shares, in Redis, on Redis's clock."""

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._reserve = self._client.register_script(_RESERVE)

    def reserve(self, key: str, seconds: float) -> float:
        return float(self._reserve(keys=[key], args=[f"{seconds:.6f}", TIMELINE_TTL_MS]))


class Pace:
    """This node's pace for one sender: wait for a slot, slow down when throttled."""

    def __init__(self, rate: float, timeline: Timeline, key: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.timeline = timeline
        self.key = key
        self.clock = clock
        self._factor = 1.0
        self._since = clock()

    def factor(self) -> float:
        """The share of ``rate`` this node reserves at now: 1 unless recently throttled."""
        now = self.clock()
        self._factor = min(1.0, self._factor * RECOVERY_PER_SECOND ** (now - self._since))
        self._since = now
        return self._factor

    def wait(self) -> None:
        """Block this greenlet until its submission's slot.

        A greenlet woken well past its slot (the process was busy) takes a new
        one rather than going out with those of the slots after it, a few
        times at most: late wakers together would make a burst over the rate.
        The slot is placed from the clock before it was asked for, so a slow
        answer counts as lateness too.
        """
        for _ in range(LATE_RETRIES):
            asked = self.clock()
            delay = self.timeline.reserve(self.key, 1.0 / (self.rate * self.factor()))
            if delay > 0:
                gevent.sleep(delay)
            if self.clock() - (asked + max(0.0, delay)) <= LATE_TOLERANCE:
                return

    def throttled(self) -> None:
        """The provider said slow down: halve the pace, to recover gradually."""
        self._factor = max(SLOWEST, self.factor() / 2)


def pace_for(app: Flask, sender: str) -> Pace | None:
    """The pace for ``sender`` under ``SMS_MAX_PER_SECOND``, or None when unpaced."""
    rate = app.config["SMS_MAX_PER_SECOND"]
    if not rate:
        return None
    url = app.config["SOCKETIO_MESSAGE_QUEUE"]
    timeline: Timeline = RedisTimeline(url) if url else LocalTimeline()
    return Pace(rate, timeline, f"{app.config['SOCKETIO_CHANNEL'] or 'hub'}:sms-pace:{sender}")
