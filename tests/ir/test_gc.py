"""``gc_young_only``: the collector runs, over new objects only, and every gc setting comes back."""

from __future__ import annotations

import gc

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
