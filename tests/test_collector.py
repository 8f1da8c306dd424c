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


def test_uninstall_stops_freezing(collector):
    collector.uninstall()
    frozen = gc.get_freeze_count()
    survivors = [Node() for _ in range(1000)]
    gc.collect(1)
    assert gc.get_freeze_count() == frozen
    assert survivors
