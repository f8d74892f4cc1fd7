"""Family ``fast-gelu``: tanh-approximated GELU as onnxruntime's ``com.microsoft.FastGelu``.

``com.microsoft::FastGelu`` (version 1, float32 on CPU) computes
``0.5 * x * (1 + tanh(0.797885 * x + 0.035677 * x^3))`` on ``x + bias`` (``bias`` an optional
``[H]`` vector along the last axis), i.e. the tanh approximation of GELU with ``sqrt(2/pi)``
multiplied into both terms. Every exporter form of the approximation (see
:mod:`onnxsmith.passes.fusion._gelu_forms`) becomes one node, and a constant bias Add before it
moves into the node::

    x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3)))   -> com.microsoft.FastGelu(x)
    com.microsoft.FastGelu(Add(x, b))                       -> com.microsoft.FastGelu(x, b)   [b: [H]]

The kernel evaluates tanh with its own vectorised approximation and distributes ``sqrt(2/pi)``,
which moves float32 results by a few ulps. The rules import ``com.microsoft`` version 1 if the
model lacks it; float32 only. The bias must be ``[H]`` or ``[1, ..., 1, H]`` (see ``_bias``).
"""

from __future__ import annotations

from onnxsmith.passes.fusion._bias import last_axis_bias
from onnxsmith.passes.fusion._gelu_forms import FLOAT32, check_constants, tanh_forms
from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S

__all__ = ["FAMILY", "RULES"]

FAMILY = "fast-gelu"

MS_DOMAIN = "com.microsoft"


def _fast_gelu(op: RewriterContext, m: Match) -> Replacement | Decline:
    """x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> com.microsoft.FastGelu(x)"""
    decline = check_constants(m)
    if decline:
        return decline
    op.import_opset(MS_DOMAIN, 1)
    return op.FastGelu(m["x"], _domain=MS_DOMAIN)


# com.microsoft.FastGelu(Add(x, b)) -> com.microsoft.FastGelu(x, b)     [b: constant [H] along x's last axis]
@rule("fast-gelu-bias",
      Op("FastGelu", Op("Add", Var("x", dtype=FLOAT32), Const("bias", shape=S.ANY)), _domain=MS_DOMAIN))
def fast_gelu_bias(op: RewriterContext, m: Match) -> Replacement | Decline:
    """FastGelu(Add(x, b)) -> FastGelu(x, b)"""
    bias = last_axis_bias(op, m)
    if isinstance(bias, Decline):
        return bias
    return op.FastGelu(m["x"], bias, _domain=MS_DOMAIN)


# x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> com.microsoft.FastGelu(x)  [per placement and cube form]
RULES = RuleSet([*(rule(f"fast-gelu-{suffix}", pattern)(_fast_gelu) for suffix, pattern in tanh_forms()),
                 fast_gelu_bias])
