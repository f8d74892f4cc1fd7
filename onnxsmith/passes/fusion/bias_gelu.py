"""Family ``bias-gelu``: a constant bias Add before ``com.microsoft.Gelu`` as ``com.microsoft.BiasGelu``.

``com.microsoft::BiasGelu(A, B)`` (version 1, float32 on CPU) computes ``Gelu(A + B)`` with ``B`` a
1-D ``[H]`` vector added along ``A``'s last axis, in one pass over the data::

    com.microsoft.Gelu(Add(x, b))   -> com.microsoft.BiasGelu(x, b)      [b: constant [H] or [1, ..., H]]

This is the transformer feed-forward activation after the ``contrib-gelu`` family has fused the
erf form. The sum and the GELU are the same operations in the same order, so the result matches
the unfused graph up to the kernel's erf approximation. ``b`` must broadcast along the last axis
only (see ``_bias``); float32 only.
"""

from __future__ import annotations

from onnxsmith.passes.fusion._bias import last_axis_bias
from onnxsmith.passes.fusion._gelu_forms import FLOAT32
from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S

__all__ = ["FAMILY", "RULES"]

FAMILY = "bias-gelu"

MS_DOMAIN = "com.microsoft"


# com.microsoft.Gelu(Add(x, b)) -> com.microsoft.BiasGelu(x, b)
@rule("bias-gelu", Op("Gelu", Op("Add", Var("x", dtype=FLOAT32), Const("bias", shape=S.ANY)), _domain=MS_DOMAIN))
def bias_gelu(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Gelu(Add(x, b)) -> BiasGelu(x, b)"""
    bias = last_axis_bias(op, m)
    if isinstance(bias, Decline):
        return bias
    return op.BiasGelu(m["x"], bias, _domain=MS_DOMAIN)


RULES = RuleSet([bias_gelu])
