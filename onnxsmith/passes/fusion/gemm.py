"""Family ``gemm``: a 2-D MatMul by a constant matrix plus a bias vector as one Gemm.

``Add(MatMul(x, W), b)`` with ``x`` of shape ``[M, K]``, ``W`` a constant ``[K, N]`` and ``b`` a
constant ``[N]`` or ``[1, N]`` computes ``x @ W + b`` with ``b`` broadcast over the rows, which is
``Gemm(x, W, b)`` (``alpha = beta = 1``, no transposes; Gemm broadcasts ``C`` to ``[M, N]`` since
opset 7). Gemm may add the bias inside its accumulation, so results differ by float
re-association only.

Declined when ``x``'s rank is unknown or not 2 (MatMul on higher ranks is batched; Gemm is not),
``W`` is not a 2-D constant, ``b`` does not have exactly ``N`` elements along its last axis, the
dtype is not float32/float64, or the model imports ONNX opset < 7.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S
from onnxsmith.passes.rewrite.constants import constant_shape

__all__ = ["FAMILY", "RULES"]

FAMILY = "gemm"

_FLOATS = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE})
_ROW_VECTOR = S.per_channel(-1)


# Add(MatMul(x, W), b) -> Gemm(x, W, b)      [x: [M, K], W: constant [K, N], b: constant [N] or [1, N]]
@rule("matmul-add-to-gemm",
      Op("Add", Op("MatMul", Var("x", dtype=_FLOATS), Const("w", shape=S.ANY), _name="mm"),
         Const("b", shape=_ROW_VECTOR)))
def matmul_add_to_gemm(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Add(MatMul(x, W), b) -> Gemm(x, W, b)"""
    if (m.opset("") or 0) < 7:
        return Decline("Gemm broadcasts its bias only from ONNX opset 7")
    x, w, b = m["x"], m["w"], m["b"]
    assert x is not None and w is not None and b is not None
    if x.shape is None or x.shape.rank() != 2:
        return Decline("x is not known to be 2-D" if x.shape is None else f"x has rank {x.shape.rank()}, not 2")
    w_dims, b_dims = constant_shape(w), constant_shape(b)
    if len(w_dims) != 2:
        return Decline(f"W has shape {list(w_dims)}, not 2-D")
    if len(b_dims) > 2 or b_dims[-1:] != w_dims[1:]:
        return Decline(f"b has shape {list(b_dims)}, expected [{w_dims[1]}] or [1, {w_dims[1]}]")
    return op.Gemm(x, w, b)


RULES = RuleSet([matmul_add_to_gemm])
