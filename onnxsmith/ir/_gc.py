"""Pausing Python's cyclic garbage collector around bulk work on large graphs.

Loading, saving and rewriting a model allocate hundreds of thousands of small objects (nodes,
values, attributes) that stay alive. Every automatic collection triggered meanwhile rescans all
live objects, so on a 100k-node graph collections cost a large share of the work while finding
almost nothing to free. Inside ``gc_paused`` no automatic collection runs; cyclic garbage made
there is freed by the first automatic collection after it, so nothing leaks.

``gc_young_only`` serves a run over a model loaded before it: everything alive at entry is
frozen (``gc.freeze``), so the collections that run meanwhile scan only objects made inside the
block instead of rescanning the whole model each time. At exit the frozen objects go back to the
oldest generation; garbage among them (nodes a pass removed) is freed by the next full
collection. Freezing is process-wide, so the block freezes nothing when something else already
froze objects.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused", "gc_young_only"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disables automatic cyclic collection for the block (re-enabling it only if it was on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def gc_young_only() -> Iterator[None]:
    """Runs the block with automatic collection on, over objects made inside it only.

    Objects alive at entry are frozen until exit; the collector's on/off state is restored on exit.
    """
    enabled = gc.isenabled()
    gc.disable()  # no collection between the caller's last allocation and the freeze
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.enable()
    try:
        yield
    finally:
        if not enabled:
            gc.disable()
        if freeze:
            gc.unfreeze()
