"""Pausing Python's cyclic garbage collector around bulk work on large graphs.

Loading, saving and rewriting a model allocate hundreds of thousands of small objects (nodes,
values, attributes) that stay alive. Every automatic collection triggered meanwhile rescans all
live objects, so on a 100k-node graph collections cost a large share of the work while finding
almost nothing to free. Inside ``gc_paused`` no automatic collection runs; cyclic garbage made
there is freed by the first automatic collection after it, so nothing leaks.

``gc_young_only`` serves a run over a model loaded before it: everything alive at entry is
frozen (``gc.freeze``), so the collections that run meanwhile scan only objects made inside the
block instead of rescanning the whole model each time. Inside it, a ``gc_paused`` block (a pass,
a save) also freezes what it leaves behind when it ends: most of that is the model's new nodes
and values, and the first collection after the pause would scan all of it for nothing (on a
100k-node cleanup, three such scans cost 0.18 s and freed nothing). At exit the frozen objects go
back to the oldest generation; garbage among them (nodes a pass removed, cycles a paused block
dropped) is freed by the next full collection. Freezing is process-wide, so the block freezes
nothing, then or later, when something else already froze objects.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused", "gc_young_only"]

#: Whether a ``gc_young_only`` block holds the freeze it made (then ``gc_paused`` extends it).
_freeze_owned = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disables automatic cyclic collection for the block (re-enabling it only if it was on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _freeze_owned:
            gc.freeze()  # O(1): the block's survivors join the frozen model instead of being scanned
        if enabled:
            gc.enable()


@contextlib.contextmanager
def gc_young_only() -> Iterator[None]:
    """Runs the block with automatic collection on, over objects made inside it only.

    Objects alive at entry, and those alive at the end of each ``gc_paused`` block inside, are
    frozen until exit; the collector's on/off state is restored on exit.
    """
    global _freeze_owned
    enabled, owned = gc.isenabled(), _freeze_owned
    gc.disable()  # no collection between the caller's last allocation and the freeze
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
        _freeze_owned = True
    gc.enable()
    try:
        yield
    finally:
        if not enabled:
            gc.disable()
        if freeze:
            _freeze_owned = owned
            gc.unfreeze()
