"""Shape and type inference on the IR through ONNX's shape inference.

Inference runs on a proto copy that leaves large tensors out (``onnx_ir``'s pass does the same),
so weights are never read to infer shapes.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

__all__ = ["infer_shapes"]


def infer_shapes(model: ir.Model, *, strict: bool = False) -> bool:
    """Infers types and shapes of all values in place; returns True if anything changed.

    Args:
        model: The model to annotate.
        strict: Raise on inference errors instead of keeping what could be inferred.
    """
    result = ShapeInferencePass(check_type=strict, strict_mode=strict, data_prop=True)(model)
    return bool(result.modified)
