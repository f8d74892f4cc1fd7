"""``ir.Shape(dims)`` for dims that are already ints and ``SymbolicDim``s, without re-checking each.

``Shape.__init__`` converts every dimension through a chain of type checks (about 1.5 us for a
rank-2 shape); writing inferred shapes back onto tens of thousands of values makes that a large
part of ``infer_shapes``. ``new_shape`` sets the fields ``Shape.__init__`` sets directly. This
relies on onnx_ir's private layout: it is used only when a shape built both ways at import
matches field by field, else ``new_shape`` is ``ir.Shape``.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from onnxsmith.ir._private import agrees, fields

__all__ = ["new_shape"]

_Shape = ir.Shape
_new = object.__new__


def _direct(dims: Sequence[int | ir.SymbolicDim]) -> ir.Shape:
    """A fresh, unfrozen shape of ``dims`` (each an int or a SymbolicDim) without denotations."""
    shape = _new(_Shape)
    shape._dims = list(dims)
    shape._denotations = [None] * len(shape._dims)
    shape._frozen = False
    return shape


def _same_layout() -> bool:
    """Whether ``_direct`` builds what ``Shape.__init__`` builds, in this onnx_ir."""
    dims = (1, ir.SymbolicDim("N"), ir.SymbolicDim(None))
    return fields(_direct(dims)) == fields(_Shape(dims))


new_shape = _direct if agrees(_same_layout) else _Shape
