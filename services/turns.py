"""Taking turns on the event loop: a long run of work on one greenlet stops now and then.

Every greenlet of a node shares one thread. A greenlet that runs for a long
time without waiting (one connection's burst of thousands of events, a
10,000-row report, a broadcast to every socket) holds every other socket
until it is done: a bystander's ack measured 4.3 s behind 3,000 database
reads sent in one write (``tests/test_abuse.py``). Such work stops after a
slice and lets the loop poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent

# How long a run of work goes before it lets the others run.
SLICE_SECONDS = 0.003
# A pause long enough for the event loop to poll: gevent's ``sleep(0)`` only runs the
# greenlets already scheduled, so sockets whose data has arrived waited for the whole burst.
# Anything shorter than a millisecond is one: epoll's timeout is in milliseconds.
YIELD_SECONDS = 0.001


def let_others_run() -> None:
    """Wait one poll of the event loop: the greenlets and sockets that are ready run."""
    gevent.sleep(YIELD_SECONDS)


def taking_turns() -> Callable[[], None]:
    """A ``pause`` to call between steps of a long computation: once ``SLICE_SECONDS`` have
    passed since its last turn, the others run, so their acks wait a slice at most."""
    last = time.perf_counter()

    def pause() -> None:
        nonlocal last
        if time.perf_counter() - last >= SLICE_SECONDS:
            let_others_run()
            last = time.perf_counter()
    return pause
