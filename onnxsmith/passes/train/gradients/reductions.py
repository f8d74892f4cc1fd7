"""Gradients of the Reduce* operators and GlobalMaxPool (``dy`` is the gradient of ``y``).

A reduction over ``axes`` maps each input element to one output element; ``k(v)`` below is
``v`` with the reduced axes restored as size-1 axes (an Unsqueeze when ``keepdims=0``), so it
broadcasts against ``x``:

- ReduceSum: ``dx = Expand(k(dy), Shape(x))``; ReduceMean divides that by ``size(x) / size(y)``;
- ReduceSumSquare: ``dx = 2 * x * k(dy)``;  ReduceL2: ``dx = x * k(dy / y)`` (0 where ``y = 0``);
- ReduceL1: ``dx = Sign(x) * k(dy)``;  ReduceLogSumExp: ``dx = Exp(x - k(y)) * k(dy)``;
- ReduceMax and ReduceMin: ``dy`` goes to the elements equal to the result, split evenly between
  ties (``mask = (x == k(y))``, ``dx = mask * k(dy) / ReduceSum(mask)``), as torch's ``amax`` and
  TensorFlow's ``reduce_max`` do; GlobalMaxPool is ReduceMax over the spatial axes.

Absent or empty axes mean every axis, unless ``noop_with_empty_axes=1`` (then ``y = x``). The axes
come from the attribute (before opset 18; ReduceSum before 13) or the second input, which may be
computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from onnxsmith.passes.train.context import GradContext
from onnxsmith.passes.train.registry import gradient

Grads = Sequence[ir.Value | None]

_ALL = None  # reduced axes: every axis


@gradient("ReduceSum", nondifferentiable=[1])
def reduce_sum(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return [_spread(ctx, node, output_grads[0])]


@gradient("ReduceMean", nondifferentiable=[1])
def reduce_mean(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, y = node.inputs[0], node.outputs[0]
    dx = _spread(ctx, node, output_grads[0])
    if dx is output_grads[0]:
        return [dx]
    share = ctx.op("Div", ctx.count(y, x), ctx.count(x, x))
    return [ctx.op("Mul", dx, share)]


@gradient("ReduceSumSquare", nondifferentiable=[1])
def reduce_sum_square(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, dy = node.inputs[0], output_grads[0]
    if _noop(node):
        return [ctx.op("Mul", dy, ctx.op("Add", x, x))]
    return [ctx.op("Mul", ctx.op("Add", x, x), _kept(ctx, node, dy))]


@gradient("ReduceL2", nondifferentiable=[1])
def reduce_l2(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, y, dy = node.inputs[0], node.outputs[0], output_grads[0]
    if _noop(node):  # y = |x|
        return [ctx.op("Mul", dy, ctx.op("Sign", x))]
    zero = ctx.scalar(0.0, y)
    safe = ctx.op("Where", ctx.op("Equal", y, zero), ctx.scalar(1.0, y), y)  # x is all zeros there
    return [ctx.op("Mul", x, _kept(ctx, node, ctx.op("Div", dy, safe)))]


@gradient("ReduceL1", nondifferentiable=[1])
def reduce_l1(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, dy = node.inputs[0], output_grads[0]
    spread = dy if _noop(node) else _kept(ctx, node, dy)
    return [ctx.op("Mul", ctx.op("Sign", x), spread)]


@gradient("ReduceLogSumExp", nondifferentiable=[1])
def reduce_log_sum_exp(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, y, dy = node.inputs[0], node.outputs[0], output_grads[0]
    if _noop(node):  # y = x
        return [dy]
    weights = ctx.op("Exp", ctx.op("Sub", x, _kept(ctx, node, y)))
    return [ctx.op("Mul", weights, _kept(ctx, node, dy))]


@gradient("ReduceMax", nondifferentiable=[1])
@gradient("ReduceMin", nondifferentiable=[1])
def reduce_extremum(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    if _noop(node):
        return [output_grads[0]]
    return [_to_extrema(ctx, node, _axes(node), lambda v: _kept(ctx, node, v), output_grads[0])]


@gradient("GlobalMaxPool")
def global_max_pool(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    spatial = list(range(2, ctx.rank(node.inputs[0])))
    return [_to_extrema(ctx, node, spatial, lambda v: v, output_grads[0])]


def _to_extrema(ctx: GradContext, node: ir.Node, axes: list[int] | ir.Value | None, kept, dy: ir.Value) -> ir.Value:
    """``dy`` split evenly between the elements of ``x`` equal to their reduced result."""
    x, y = node.inputs[0], node.outputs[0]
    mask = ctx.op("Cast", ctx.op("Equal", x, kept(y)), to=ctx.dtype(x))
    ties = ctx.op("ReduceSum", mask, keepdims=1) if axes is _ALL else ctx.reduce("ReduceSum", mask, axes)
    return ctx.op("Mul", mask, ctx.op("Div", kept(dy), ties))


def _axes(node: ir.Node) -> list[int] | ir.Value | None:
    """The reduced axes (a list, or the computed input); None (``_ALL``) for every axis."""
    axes: ir.Value | list[int] | None = node.inputs[1] if len(node.inputs) > 1 else None
    if axes is None and "axes" in node.attributes:
        axes = list(node.attributes.get_ints("axes"))
    constant = GradContext.constant(axes) if isinstance(axes, ir.Value) else None
    if axes is None or (isinstance(axes, list) and not axes) or (constant is not None and constant.size == 0):
        return _ALL
    return axes


def _noop(node: ir.Node) -> bool:
    """Whether the reduction returns its input (empty axes with ``noop_with_empty_axes=1``)."""
    return _axes(node) is _ALL and bool(node.attributes.get_int("noop_with_empty_axes", 0))


def _kept(ctx: GradContext, node: ir.Node, value: ir.Value) -> ir.Value:
    """``value`` (shaped like the result) with the reduced axes restored as size-1 axes."""
    if node.attributes.get_int("keepdims", 1):
        return value
    axes = _axes(node)
    if axes is _ALL:
        return ctx.op("Reshape", value, ctx.ints([1] * ctx.rank(node.inputs[0])))
    return ctx.unsqueeze(value, axes if isinstance(axes, ir.Value) else ctx.ints(axes))


def _spread(ctx: GradContext, node: ir.Node, dy: ir.Value) -> ir.Value:
    """``dy`` broadcast back over the reduced axes to the shape of the input."""
    if _noop(node):
        return dy
    return ctx.op("Expand", _kept(ctx, node, dy), ctx.shape(node.inputs[0]))
