"""The garbage collector of a long-lived node: full collections walk only young objects.

In-process, on the interpreter running the tests; the pauses themselves are
measured by ``bench/run.py`` (``bench/gc_pauses.py``), not here.
"""

from __future__ import annotations

import gc
import weakref

import pytest

from services.node.runtime import LongLivedCollector


class Node:
    """A tracked object that can sit in a reference cycle and be watched through a weakref."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def collector():
    collector = LongLivedCollector()
    collector.install()
    yield collector
    collector.uninstall()
    gc.unfreeze()


def test_start_up_objects_are_frozen(collector):
    assert gc.get_freeze_count() > 1000
    assert len(gc.get_objects()) < gc.get_freeze_count()


def test_survivors_of_a_young_collection_leave_every_collection_s_walk(collector):
    frozen = gc.get_freeze_count()
    survivors = [Node() for _ in range(5000)]
    gc.collect(1)
    assert gc.get_freeze_count() >= frozen + len(survivors)
    assert not gc.get_objects(2), "a full collection would still walk the survivors"


def test_objects_replacing_older_ones_are_walked_once_a_second_not_left_to_pile_up(collector):
    """Replacing old objects with new ones (a socket's ping timer, its reader's waiter)
    leaves CPython's young count where it was, while the young generation grows."""
    held = [Node() for _ in range(3000)]
    gc.collect(1)
    for index in range(len(held)):
        held[index] = Node()
    assert len(gc.get_objects(0)) + len(gc.get_objects(1)) > 2500, \
        "CPython counted the replacements; this test no longer shows the pile-up"
    collector.collect_young()
    assert len(gc.get_objects(0)) + len(gc.get_objects(1)) < 100
    walked = {id(young) for generation in range(3) for young in gc.get_objects(generation)}
    assert not walked & {id(node) for node in held}, "the replacements were frozen"


def test_garbage_cycles_are_still_collected_while_young(collector):
    first, second = Node(), Node()
    first.other, second.other = second, first
    watch = weakref.ref(first)
    del first, second
    gc.collect(0)
    assert watch() is None


def test_a_frozen_cycle_is_kept_until_reclaimed(collector):
    first, second = Node(), Node()
    first.other, second.other = second, first
    watch = weakref.ref(first)
    gc.collect(1)
    del first, second
    gc.collect()
    assert watch() is not None, "a frozen cycle was collected without a reclaim"
    collector.reclaim()
    assert watch() is None


def _frozen_cycles(count: int) -> list[weakref.ref]:
    """``count`` two-object cycles, frozen by a young collection, then left as garbage."""
    cycles = [Node() for _ in range(count)]
    for node in cycles:
        node.other = Node()
        node.other.other = node
    gc.collect(1)
    return [weakref.ref(node) for node in cycles]


def test_a_steady_node_does_not_reclaim(collector):
    watches = _frozen_cycles(100)
    assert collector.reclaim_if_grown() is False
    assert all(watch() is not None for watch in watches)


def test_frozen_garbage_past_a_tenth_of_the_fewest_frozen_is_reclaimed(collector):
    fewest = gc.get_freeze_count()
    watches = _frozen_cycles(int(fewest * LongLivedCollector.RECLAIM_GROWTH))  # a fifth more
    assert gc.get_freeze_count() > fewest * (1 + LongLivedCollector.RECLAIM_GROWTH)
    assert collector.reclaim_if_grown() is True
    assert not any(watch() for watch in watches)
    assert collector.reclaim_if_grown() is False, "the count it left is the new fewest"


def test_growth_is_counted_from_the_fewest_frozen_since_the_last_reclaim(collector):
    growth = LongLivedCollector.RECLAIM_GROWTH
    survivors = [Node() for _ in range(int(gc.get_freeze_count() * growth * 2))]
    gc.collect(1)
    assert collector.reclaim_if_grown() is True  # grew by a fifth: live objects, this time
    del survivors
    assert collector.reclaim_if_grown() is False  # shrank: the fewest is now lower
    watches = _frozen_cycles(int(gc.get_freeze_count() * growth))
    assert collector.reclaim_if_grown() is True
    assert not any(watch() for watch in watches)


def test_uninstall_stops_freezing(collector):
    collector.uninstall()
    frozen = gc.get_freeze_count()
    survivors = [Node() for _ in range(1000)]
    gc.collect(1)
    assert gc.get_freeze_count() == frozen
    assert survivors
