"""Gradients of elementwise arithmetic (``dy`` is the gradient of the output ``y``).

Broadcast operands receive their gradient summed over the broadcast axes (``ctx.unbroadcast``).

- ``y = a + b``: ``da = dy``, ``db = dy``;  ``y = a - b``: ``da = dy``, ``db = -dy``;
- ``y = a * b``: ``da = dy * b``, ``db = dy * a``;
- ``y = a / b``: ``da = dy / b``, ``db = -(dy / b) * y``;
- ``y = -x``: ``dx = -dy``;  ``y = exp(x)``: ``dx = dy * y``;  ``y = log(x)``: ``dx = dy / x``;
- ``y = sqrt(x)``: ``dx = 0.5 * dy / y``;
- ``y = a ** b``: ``da = dy * b * a ** (b - 1)`` (folded when ``b`` is a constant), ``db = dy * y * log(a)``;
- ``y = 1 / x``: ``dx = -dy * y * y``;  ``y = |x|``: ``dx = dy * Sign(x)`` (0 at 0, as torch);
- ``y = Sum(x1, ..., xn)``: ``dxi = dy``;  ``y = Mean(x1, ..., xn)``: ``dxi = dy / n``;
- ``y = Max(x1, ..., xn)`` and Min: ``dy`` goes to the inputs equal to ``y``, split evenly between
  ties (``mi = (xi == y)``, ``dxi = dy * mi / sum_j mj``), as torch's ``maximum`` does;
- ``y = Where(c, a, b)``: ``da = Where(c, dy, 0)``, ``db = Where(c, 0, dy)``;
- ``y = Clip(x, lo, hi)``: ``dx = dy`` where ``x`` was not clipped (``y == x``), ``dlo`` and ``dhi``
  collect ``dy`` where ``x < lo`` and ``x > hi``;
- ``Cast``: the gradient cast back to the input's type (none for non-float inputs);
- ``Identity`` and ``Dropout`` in inference form: ``dx = dy``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.train.context import GradContext
from onnxsmith.passes.train.registry import gradient

Grads = Sequence[ir.Value | None]


@gradient("Add")
def add(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    a, b = node.inputs
    dy = output_grads[0]
    return [ctx.unbroadcast(dy, a) if ctx.needs(0) else None,
            ctx.unbroadcast(dy, b) if ctx.needs(1) else None]


@gradient("Sub")
def sub(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    a, b = node.inputs
    dy = output_grads[0]
    return [ctx.unbroadcast(dy, a) if ctx.needs(0) else None,
            ctx.unbroadcast(ctx.op("Neg", dy), b) if ctx.needs(1) else None]


@gradient("Mul")
def mul(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    a, b = node.inputs
    dy = output_grads[0]
    return [ctx.unbroadcast(ctx.op("Mul", dy, b), a) if ctx.needs(0) else None,
            ctx.unbroadcast(ctx.op("Mul", dy, a), b) if ctx.needs(1) else None]


@gradient("Div")
def div(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    a, b = node.inputs
    dy_over_b = ctx.op("Div", output_grads[0], b)
    return [ctx.unbroadcast(dy_over_b, a) if ctx.needs(0) else None,
            ctx.unbroadcast(ctx.op("Neg", ctx.op("Mul", dy_over_b, node.outputs[0])), b) if ctx.needs(1) else None]


@gradient("Neg")
def neg(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return [ctx.op("Neg", output_grads[0])]


@gradient("Exp")
def exp(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return [ctx.op("Mul", output_grads[0], node.outputs[0])]


@gradient("Log")
def log(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return [ctx.op("Div", output_grads[0], node.inputs[0])]


@gradient("Sqrt")
def sqrt(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    y = node.outputs[0]
    return [ctx.op("Div", ctx.op("Mul", output_grads[0], ctx.scalar(0.5, y)), y)]


@gradient("Pow")
def pow_(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    a, b = node.inputs
    y, dy = node.outputs[0], output_grads[0]
    da = db = None
    if ctx.needs(0):
        constant = ctx.constant(b)
        if constant is not None:
            exponent = constant.astype(ctx.dtype(a).numpy())
            power = a if np.all(exponent == 2) else ctx.op("Pow", a, ctx.const(exponent - 1))
            da = ctx.op("Mul", ctx.op("Mul", dy, ctx.const(exponent)), power)
        else:
            bf = b if b.dtype == a.dtype else ctx.op("Cast", b, to=ctx.dtype(a))
            power = ctx.op("Pow", a, ctx.op("Sub", bf, ctx.scalar(1.0, a)))
            da = ctx.op("Mul", ctx.op("Mul", dy, bf), power)
        da = ctx.unbroadcast(da, a)
    if ctx.needs(1):
        db = ctx.unbroadcast(ctx.op("Mul", ctx.op("Mul", dy, y), ctx.op("Log", a)), b)
    return [da, db]


@gradient("Sum")
def sum_(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    dy = output_grads[0]
    return [ctx.unbroadcast(dy, x) if ctx.needs(i) else None for i, x in enumerate(node.inputs)]


@gradient("Mean")
def mean(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    y = node.outputs[0]
    share = ctx.op("Mul", output_grads[0], ctx.scalar(1.0 / len(node.inputs), y))
    return [ctx.unbroadcast(share, x) if ctx.needs(i) else None for i, x in enumerate(node.inputs)]


@gradient("Max")
@gradient("Min")
def extremum(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    y, dy = node.outputs[0], output_grads[0]
    if len(node.inputs) == 1:
        return [dy]
    masks = [ctx.op("Cast", ctx.op("Equal", x, y), to=ctx.dtype(y)) for x in node.inputs]
    share = ctx.op("Div", dy, ctx.op("Sum", *masks))  # the number of inputs equal to y: at least one
    return [ctx.unbroadcast(ctx.op("Mul", share, mask), x) if ctx.needs(i) else None
            for i, (x, mask) in enumerate(zip(node.inputs, masks))]


@gradient("Reciprocal")
def reciprocal(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    y = node.outputs[0]
    return [ctx.op("Mul", output_grads[0], ctx.op("Mul", y, ctx.op("Neg", y)))]


@gradient("Abs")
def abs_(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return [ctx.op("Mul", output_grads[0], ctx.op("Sign", node.inputs[0]))]


@gradient("Where", nondifferentiable=[0])
def where(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    cond, a, b = node.inputs
    dy = output_grads[0]
    zero = ctx.scalar(0.0, node.outputs[0])
    return [None,
            ctx.unbroadcast(ctx.op("Where", cond, dy, zero), a) if ctx.needs(1) else None,
            ctx.unbroadcast(ctx.op("Where", cond, zero, dy), b) if ctx.needs(2) else None]


@gradient("Clip")
def clip(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, y, dy = node.inputs[0], node.outputs[0], output_grads[0]
    bounds = list(node.inputs[1:3]) + [None] * (3 - len(node.inputs))
    zero = ctx.scalar(0.0, y)
    grads: list[ir.Value | None] = [ctx.op("Where", ctx.op("Equal", x, y), dy, zero) if ctx.needs(0) else None]
    for i, (bound, compare) in enumerate(zip(bounds[:2], ("Less", "Greater")), start=1):
        if bound is not None and ctx.needs(i):
            outside = ctx.op("Where", ctx.op(compare, x, bound), dy, zero)
            grads.append(ctx.op("ReduceSum", outside, keepdims=0))
        else:
            grads.append(None)
    return grads[: len(node.inputs)]


@gradient("Cast")
def cast(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return [ctx.op("Cast", output_grads[0], to=ctx.dtype(node.inputs[0]))]


@gradient("Identity")
def identity(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return [output_grads[0]]


@gradient("Dropout", nondifferentiable=[1, 2])
def dropout(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    training = node.inputs[2] if len(node.inputs) > 2 else None
    mode = ctx.constant(training)
    if training is not None and (mode is None or bool(mode)):
        raise ctx.fail("only Dropout in inference form (training_mode absent or a constant false) is supported")
    return [output_grads[0]]
