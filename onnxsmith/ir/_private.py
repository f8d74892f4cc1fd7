"""The one rule for using onnx_ir's private fields: a fast path only where it agrees with the public API.

Hot paths over graphs of 10^5 nodes build or read onnx_ir objects through their private fields
(``_fast_deserialize``, ``_fast_shape``, ``_fields``, ``_release``). Each states a probe: build or
read a sample object both ways and compare. ``agrees`` runs the probe once, at import; any
difference or error (another onnx_ir version, another layout) means the public API is used,
slower but never different.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["agrees", "fields", "slot_names"]


def slot_names(cls: type) -> set[str]:
    """Every slot declared by ``cls`` and its bases."""
    return set().union(*(getattr(c, "__slots__", ()) for c in cls.__mro__))


def fields(obj: Any) -> dict[str, Any]:
    """Every field of ``obj``: its slots and its ``__dict__``, for comparing two objects built two ways."""
    found = {slot: getattr(obj, slot) for slot in slot_names(type(obj)) if hasattr(obj, slot)}
    return {**found, "__dict__": getattr(obj, "__dict__", None)}


def agrees(probe: Callable[[], bool]) -> bool:
    """``probe()``, with any exception read as "no" (the private layout is not the expected one)."""
    try:
        return bool(probe())
    except Exception:  # noqa: BLE001 - any failure of the private path means: use the public API
        return False
