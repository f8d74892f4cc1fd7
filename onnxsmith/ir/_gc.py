"""Pausing Python's cyclic garbage collector around bulk work on large graphs.

Loading, saving and rewriting a model allocate hundreds of thousands of small objects (nodes,
values, attributes) that stay alive. Every automatic collection triggered meanwhile rescans all
live objects, so on a 100k-node graph collections cost a large share of the work while finding
almost nothing to free. Inside ``gc_paused`` no automatic collection runs; cyclic garbage made
there is freed by the first automatic collection after it, so nothing leaks.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused"]


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
