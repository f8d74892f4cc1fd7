"""Family ``hard-activation``: HardSigmoid and HardSwish recognised from their decomposed forms.

``HardSigmoid<alpha, beta>(x) = max(0, min(1, alpha * x + beta))`` and ``HardSwish(x) = x *
HardSigmoid<1/6, 1/2>(x)`` (opset 14). Exporters write them out, e.g. PyTorch's ``relu6(x + 3) / 6``
and ``x * relu6(x + 3) / 6``, with Relu6 as ``Clip(v, 0, 6)`` or ``Min(Max(v, 0), 6)``. The algebra::

    Min(Max(v, lo), hi) = Max(Min(v, hi), lo) = Clip(v, lo, hi)                 [lo <= hi]
    Clip(x + b, 0, h) / h   = Clip(x + b, 0, h) * (1/h) = HardSigmoid<1/h, b/h>(x)      [h > 0]
    Clip(x * a + b, 0, 1)   = HardSigmoid<a, b>(x)        Clip(x / d + b, 0, 1) = HardSigmoid<1/d, b>(x)
    x * HardSigmoid<1/6, 1/2>(x) = HardSwish(x)
    x * Clip(x + 3, 0, 6) / 6 = HardSwish(x)      (and * (1/6); other b, h: x * HardSigmoid<1/h, b/h>(x))

``alpha`` and ``beta`` are float32 attributes, so ``1/h`` is rounded once and a multiplication
replaces a division: results move by a few float32 ulps (a ``* s`` form is accepted when
``s * h`` is 1 within 1e-6, i.e. ``s`` is ``1/h`` rounded). ``Min(Max)`` to ``Clip`` is exact.

Speed on onnxruntime CPU: HardSigmoid has a kernel, so 3-4 nodes become one; HardSwish has none
and onnxruntime inlines its function body, ``x * HardSigmoid(x)``, so 4-5 nodes become 2. A
Conv's HardSigmoid then fuses into FusedConv (family ``conv-activation``).

Declined when a constant is not a single number, a Clip bound is not 0 (or 1, or ``h``), ``h``
is not positive, the dtype is not float32/float64, HardSwish is not in the imported opset (< 14:
the ``x * HardSigmoid(x)`` form is emitted instead), or an intermediate is used elsewhere.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Opt, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S
from onnxsmith.passes.rewrite.constants import constant_shape

__all__ = ["FAMILY", "RULES"]

FAMILY = "hard-activation"

_FLOATS = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE})
_SIXTH = float(np.float32(1 / 6))


def _number(name: str) -> Const:
    return Const(name, shape=S.SCALAR_LIKE, dtype=_FLOATS)


def _clip(inner: Op) -> Op:
    """Clip of ``inner`` with optional constant bounds ``lo`` and ``hi`` (inputs from opset 11)."""
    return Op("Clip", inner, Opt(_number("lo")), Opt(_number("hi")), _name="clip")


def _bounds(m: Match) -> tuple[float, float]:
    """The matched Clip's bounds (inputs, or attributes before opset 11; absent is unbounded)."""
    lo, hi = m.const("lo"), m.const("hi")
    low = float(lo.reshape(())) if lo is not None else float(m.attr("clip", "min", -np.inf))
    high = float(hi.reshape(())) if hi is not None else float(m.attr("clip", "max", np.inf))
    return low, high


def _value(m: Match, name: str) -> float:
    array = m.const(name)
    assert array is not None
    return float(array.reshape(()))


def _hard_sigmoid(op: RewriterContext, x: ir.Value, alpha: float, beta: float) -> ir.Value:
    return op.HardSigmoid(x, alpha=alpha, beta=beta)


def _relu6_scale(m: Match) -> tuple[float, float] | Decline:
    """``(alpha, beta)`` of ``Clip(x + b, 0, h) / h`` (or ``* s``), or why the match is not of that form."""
    h = _divisor(m)
    if isinstance(h, Decline):
        return h
    low, high = _bounds(m)
    if not h > 0:
        return Decline(f"the divisor {h:g} is not positive")
    if low != 0 or high != h:
        return Decline(f"the Clip bounds are [{low:g}, {high:g}], expected [0, {h:g}]")
    return 1 / h, _value(m, "b") / h


def _divisor(m: Match) -> float | Decline:
    """``h`` from the matched ``/ h`` (node ``scale`` is Div) or ``* s`` with ``s * h = 1`` (Mul)."""
    s = _value(m, "s")
    if m.node("scale").op_type == "Div":
        return s
    if s == 0:
        return Decline("the scale is 0")
    _, high = _bounds(m)
    if abs(s * high - 1) > 1e-6:
        return Decline(f"the scale {s:g} is not 1 / {high:g}")
    return high


# Min(Max(v, lo), hi) -> Clip(v, lo, hi)  and  Max(Min(v, hi), lo) -> Clip(v, lo, hi)      [lo <= hi]
@rule("min-max-to-clip", Op({"Min", "Max"}, Op({"Min", "Max"}, Var("v"), _number("a"), _name="inner"),
                             _number("b"), _name="outer"))
def min_max_to_clip(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Min(Max(v, lo), hi) -> Clip(v, lo, hi)"""
    inner, outer = m.node("inner").op_type, m.node("outer").op_type
    if inner == outer:
        return Decline(f"{outer}({inner}(...)) is not a clip")
    lo, hi = (_value(m, "a"), _value(m, "b")) if inner == "Max" else (_value(m, "b"), _value(m, "a"))
    if not lo <= hi:
        return Decline(f"the lower bound {lo:g} exceeds the upper bound {hi:g}")
    v = m["v"]
    assert v is not None
    if any(constant_shape(m[name]) for name in ("a", "b")) and (v.shape is None or v.shape.rank() == 0):
        return Decline("a [1] bound would broadcast a value of unknown or zero rank to [1]")
    if (m.opset("") or 0) < 11:
        return op.Clip(v, min=lo, max=hi)
    dtype = m.const("a").dtype  # type: ignore[union-attr]
    return op.Clip(v, op.initializer(np.array(lo, dtype), "clip_min"), op.initializer(np.array(hi, dtype), "clip_max"))


def _relu6_sigmoid(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Clip(x + b, 0, h) / h -> HardSigmoid<1/h, b/h>(x)"""
    params = _relu6_scale(m)
    if isinstance(params, Decline):
        return params
    return _hard_sigmoid(op, m["x"], *params)


def _relu6_of_x() -> Op:
    return _clip(Op("Add", Var("x"), _number("b")))


# Clip(x + b, 0, h) / h -> HardSigmoid<1/h, b/h>(x)
hard_sigmoid_from_relu6 = rule("hard-sigmoid-from-relu6", Op("Div", _relu6_of_x(), _number("s"), _name="scale")
                               )(_relu6_sigmoid)

# Clip(x + b, 0, h) * s -> HardSigmoid<s, b * s>(x)      [s * h = 1]
hard_sigmoid_from_relu6_mul = rule("hard-sigmoid-from-relu6-mul",
                                   Op("Mul", _relu6_of_x(), _number("s"), _name="scale"))(_relu6_sigmoid)


def _clip_sigmoid(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Clip(x * a + b, 0, 1) -> HardSigmoid<a, b>(x)"""
    low, high = _bounds(m)
    if (low, high) != (0, 1):
        return Decline(f"the Clip bounds are [{low:g}, {high:g}], expected [0, 1]")
    a = _value(m, "a")
    if m.node("scale").op_type == "Div":
        if a == 0:
            return Decline("the divisor is 0")
        a = 1 / a
    return _hard_sigmoid(op, m["x"], a, _value(m, "b"))


def _affine_clip(scale: str) -> Op:
    return _clip(Op("Add", Op(scale, Var("x"), _number("a"), _name="scale"), _number("b")))


# Clip(x * a + b, 0, 1) -> HardSigmoid<a, b>(x)
hard_sigmoid_from_clip = rule("hard-sigmoid-from-clip", _affine_clip("Mul"))(_clip_sigmoid)

# Clip(x / d + b, 0, 1) -> HardSigmoid<1/d, b>(x)
hard_sigmoid_from_clip_div = rule("hard-sigmoid-from-clip-div", _affine_clip("Div"))(_clip_sigmoid)


def _hard_swish(op: RewriterContext, m: Match, x: ir.Value, alpha: float, beta: float) -> ir.Value:
    """HardSwish(x) when ``(alpha, beta)`` are its constants and the opset has it, else ``x * HardSigmoid(x)``."""
    if float(np.float32(alpha)) == _SIXTH and beta == 0.5 and (m.opset("") or 0) >= 14:
        return op.HardSwish(x)
    return op.Mul(x, _hard_sigmoid(op, x, alpha, beta))


# Mul(x, HardSigmoid<1/6, 1/2>(x)) -> HardSwish(x)
@rule("hard-swish", Op("Mul", Var("x"), Op("HardSigmoid", Var("x"), _name="hs")))
def hard_swish(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Mul(x, HardSigmoid<1/6, 1/2>(x)) -> HardSwish(x)"""
    alpha, beta = float(m.attr("hs", "alpha", 0.2)), float(m.attr("hs", "beta", 0.5))
    if (m.opset("") or 0) < 14:
        return Decline("HardSwish needs ONNX opset 14")
    if float(np.float32(alpha)) != _SIXTH or beta != 0.5:
        return Decline(f"HardSigmoid has alpha={alpha:g}, beta={beta:g}; HardSwish is alpha=1/6, beta=0.5")
    return op.HardSwish(m["x"])


def _relu6_swish(op: RewriterContext, m: Match) -> Replacement | Decline:
    """x * Clip(x + 3, 0, 6) / 6 -> HardSwish(x)"""
    params = _relu6_scale(m)
    if isinstance(params, Decline):
        return params
    return _hard_swish(op, m, m["x"], *params)


def _x_times_relu6(scale: str) -> Op:
    return Op(scale, Op("Mul", Var("x"), _clip(Op("Add", Var("x"), _number("b"))), _name="mul"),
              _number("s"), _name="scale")


# x * Clip(x + b, 0, h) / h -> HardSwish(x)  [b = 3, h = 6]  or  x * HardSigmoid<1/h, b/h>(x)
hard_swish_from_relu6 = rule("hard-swish-from-relu6", _x_times_relu6("Div"))(_relu6_swish)

# x * Clip(x + b, 0, h) * s -> HardSwish(x)  [b = 3, h = 6, s = 1/6]  or  x * HardSigmoid<s, b * s>(x)
hard_swish_from_relu6_mul = rule("hard-swish-from-relu6-mul", _x_times_relu6("Mul"))(_relu6_swish)


RULES = RuleSet([min_max_to_clip, hard_sigmoid_from_relu6, hard_sigmoid_from_relu6_mul, hard_sigmoid_from_clip,
                 hard_sigmoid_from_clip_div, hard_swish, hard_swish_from_relu6, hard_swish_from_relu6_mul])
