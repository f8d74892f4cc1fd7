"""Family ``masked-softmax``: the masked entries of a Softmax raised to ``max - 60``.

A lowering for onnxruntime's CPU provider rather than a fusion. Attention adds a mask to its
scores before Softmax, ``A = 0`` at the keys a query may see and ``A = c`` at the others, with
``c`` the float32 lowest (transformers) or ``-10000`` (older models). onnxruntime's CPU Softmax
(MLAS, 1.32) is several times slower on rows holding such entries: an exponent argument below
``ln(FLT_MIN) = -87.3`` takes a slow path (one thread, [8, 12, 53, 53] with 62% of the keys masked:
1.29 ms against 0.20 ms unmasked; 3.0 ms when the masked entries sit at ``-88``). Softmax only
depends on the differences to the row maximum ``M``, so the floor::

    Softmax(Add(s, A))  ->  Softmax(Max(y, Sub(ReduceMax(y, axis, keepdims=1), 60)))   [y = Add(s, A)]

keeps every entry at least ``e^-60`` of the largest one, inside the fast range; the three extra
passes over the scores cost a fraction of what they save (0.43 against 1.38 ms on the shape above;
all-MiniLM-L6-v2 takes 5-8% less time per inference at batch 1 and 8, one and two threads).

Error bound, each row of ``n`` entries: only entries below ``M - 60`` change, each probability
by at most ``e^-60 < 9e-27``, and the normaliser ``S >= 1`` by at most ``n * e^-60``, so every
probability moves by a relative ``n * e^-60`` at most (``9e-21`` for a million keys), far below
float32's rounding of ``2^-24``: on MiniLM the outputs are bit-identical. A row with ``+inf``, all
``-inf`` or a NaN gives NaN or the same result as before. ``e^-60`` itself is a normal float32,
and so are its products with the values the probabilities weight (down to ``1e-12``), which keeps
the MatMul after the Softmax off its own subnormal path.

Applied only where the Add reads an additive mask, i.e. a value made by
``Where(cond, a, b)`` or ``Mul(x, c)`` (through Cast, Expand, Unsqueeze, Reshape, Squeeze) with a
one-element constant ``a``/``b``/``c`` at or below ``ln(FLT_MIN)``; float32 only. ``fuse`` applies
this family after the fusions (the attention families read the plain Softmax).
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite import Decline, Match, Op, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite.constants import constant_array, constant_shape, non_constant_reason

__all__ = ["FAMILY", "FLOOR", "MASK_FILL_LIMIT", "RULES", "mask_fill"]

FAMILY = "masked-softmax"

#: Entries are kept at least this far (in exponent) below their row's maximum: ``e^-60`` of it.
FLOOR = 60.0

#: ``ln(FLT_MIN)``: a mask value at or below it sends the masked entries into the slow path.
MASK_FILL_LIMIT = math.log(np.finfo(np.float32).tiny)

_FLOAT32 = ir.DataType.FLOAT
#: Ops that move or broadcast a mask without changing its values.
_SHAPE_OPS = frozenset({"Cast", "Expand", "Unsqueeze", "Reshape", "Squeeze", "Identity"})


def _scalar(value: ir.Value | None) -> float | None:
    """The value of a one-element numeric constant, else None (reads only one-element data)."""
    if value is None or non_constant_reason(value) is not None or math.prod(constant_shape(value)) != 1:
        return None
    array = constant_array(value)
    return float(array.reshape(-1)[0]) if array.dtype.kind in "fiu" else None


def mask_fill(value: ir.Value) -> float | None:
    """The fill of an additive mask: the most negative one-element constant that ``value`` is built from.

    ``value`` must be a ``Where`` (either branch) or a ``Mul`` (either operand) with such a constant,
    possibly through ops in :data:`_SHAPE_OPS`; None if it is not, or the constant is not negative.
    """
    node = value.producer()
    while node is not None and node.domain in ("", "ai.onnx") and node.op_type in _SHAPE_OPS:
        node = node.inputs[0].producer() if node.inputs and node.inputs[0] is not None else None
    if node is None or node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Where":
        operands = node.inputs[1:3]
    elif node.op_type == "Mul":
        operands = node.inputs[:2]
    else:
        return None
    fills = [f for f in map(_scalar, operands) if f is not None and f < 0]
    return min(fills) if fills else None


def _row_axes(m: Match, y: ir.Value) -> list[int] | Decline:
    """The axes Softmax normalises ``y`` over: its ``axis`` (opset >= 13), or the axes from it on (older)."""
    axis = int(m.attr("softmax", "axis"))
    opset = m.opset("") or 13
    if opset >= 13 or axis == -1:
        return [axis]
    if y.shape is None:
        return Decline(f"Softmax-{opset} normalises over the axes from {axis} on, and the rank is unknown")
    rank = y.shape.rank()
    return list(range(axis % rank, rank))


# Softmax(Add(s, A)) -> Softmax(Max(y, Sub(ReduceMax(y), 60)))     [y = Add(s, A), A an additive mask]
@rule("masked-softmax-floor",
      Op("Softmax", Op("Add", Var("s"), Var("mask"), _name="add", _commutative=False), _name="softmax"))
def masked_softmax_floor(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Softmax(Add(s, A)) -> Softmax(Max(y, ReduceMax(y) - 60))"""
    dtypes = {v.dtype for v in (m["s"], m["mask"]) if v.dtype is not None}
    if dtypes != {_FLOAT32}:
        return Decline(f"the sum is {', '.join(sorted(str(d) for d in dtypes)) or 'of unknown type'}: float32 only")
    fills = [f for f in (mask_fill(m["s"]), mask_fill(m["mask"])) if f is not None]
    if not fills or min(fills) > MASK_FILL_LIMIT:
        found = (f"its fill {min(fills):g} is above" if fills
                 else "no operand is a Where or Mul of a constant at or below")
        return Decline(f"the Add is not an additive mask whose exp underflows: {found} "
                       f"ln(FLT_MIN) = {MASK_FILL_LIMIT:.2f}")
    y = m.node("add").outputs[0]  # the Add stays: the floor reads its output
    axes = _row_axes(m, y)
    if isinstance(axes, Decline):
        return axes
    if (m.opset("") or 13) >= 18:
        peak = op.ReduceMax(y, op.initializer(np.array(axes, dtype=np.int64), "softmax_axes"), keepdims=1)
    else:
        peak = op.ReduceMax(y, axes=axes, keepdims=1)
    floor = op.Sub(peak, op.initializer(np.array(FLOOR, dtype=np.float32), "softmax_floor"))
    return op.Softmax(op.Max(y, floor), **m.attributes("softmax"))


RULES = RuleSet([masked_softmax_floor])
