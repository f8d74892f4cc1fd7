"""``gc_young_only``: the collector runs, over new objects only, and every gc setting comes back."""

from __future__ import annotations

import gc
import weakref

import pytest

from onnxsmith.ir._gc import gc_paused, gc_young_only


@pytest.fixture(autouse=True)
def _collector_state():
    enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    yield
    assert (gc.isenabled(), gc.get_freeze_count()) == (enabled, frozen)


def test_objects_alive_at_entry_are_frozen_and_new_garbage_is_collected():
    before = gc.get_freeze_count()
    with gc_young_only():
        assert gc.isenabled()
        assert gc.get_freeze_count() > before
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1


def test_collection_state_is_restored_inside_a_pause():
    with gc_paused():
        with gc_young_only():
            assert gc.isenabled()
        assert not gc.isenabled()


def test_objects_frozen_by_someone_else_stay_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_young_only():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_pause_inside_freezes_what_it_leaves_until_the_end():
    with gc_young_only():
        frozen = gc.get_freeze_count()
        with gc_paused():
            kept = [[] for _ in range(1000)]
            dropped = weakref.ref(_Cycle())
        assert gc.get_freeze_count() >= frozen + 1000
        gc.collect()
        assert dropped() is not None  # the dropped cycle is frozen with the rest
        del kept
    gc.collect()
    assert dropped() is None  # back in the oldest generation: the next full collection frees it


def test_a_pause_outside_freezes_nothing():
    frozen = gc.get_freeze_count()
    with gc_paused():
        kept = [[] for _ in range(1000)]
    assert gc.get_freeze_count() == frozen
    del kept


def test_a_pause_inside_someone_elses_freeze_freezes_nothing():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_young_only():
            with gc_paused():
                kept = [[] for _ in range(1000)]
            assert gc.get_freeze_count() == frozen
            del kept
    finally:
        gc.unfreeze()
