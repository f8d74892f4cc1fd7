"""``infer-shapes``: annotate every value with its element type and shape (ONNX shape inference).

A thin pass over :func:`onnxsmith.ir.infer_shapes` (ONNX's inference with data propagation, run
without the data of large initializers). It only adds or refines annotations, so every other
property of the model stays true; it provides ``shapes``, the fact later passes use to reason
about static dimensions.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.ir import infer_shapes
from onnxsmith.passes.base import ALL, Pass, PassContext, PassResult
from onnxsmith.passes.registry import register_pass

__all__ = ["InferShapes"]


@register_pass
class InferShapes(Pass):
    """Infer element types and shapes of all values (ONNX shape inference with data propagation)."""

    name = "infer-shapes"
    provides = frozenset({"shapes"})
    preserves = ALL
    idempotent = True  # inference on its own output infers nothing new

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        return PassResult(infer_shapes(model))
