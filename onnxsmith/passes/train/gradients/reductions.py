"""Gradients of ReduceSum and ReduceMean.

``y = ReduceSum(x, axes)``: every element of ``x`` contributes once to its reduced element, so
``dx = Expand(dy', Shape(x))`` where ``dy'`` is ``dy`` with the reduced axes restored (Unsqueeze)
when ``keepdims=0``. ReduceMean divides by the number of reduced elements, ``size(x) / size(y)``.
Absent or empty axes mean every axis, unless ``noop_with_empty_axes=1`` (then ``y = x``). The axes
come from the attribute (ReduceMean before opset 18) or the second input, which may be computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from onnxsmith.passes.train.context import GradContext
from onnxsmith.passes.train.registry import gradient

Grads = Sequence[ir.Value | None]


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


def _spread(ctx: GradContext, node: ir.Node, dy: ir.Value) -> ir.Value:
    """``dy`` broadcast back over the reduced axes to the shape of the input."""
    x = node.inputs[0]
    axes: ir.Value | list[int] | None = node.inputs[1] if len(node.inputs) > 1 else None
    if axes is None and "axes" in node.attributes:
        axes = list(node.attributes.get_ints("axes"))
    constant = ctx.constant(axes) if isinstance(axes, ir.Value) else None
    empty = axes is None or (isinstance(axes, list) and not axes) or (constant is not None and constant.size == 0)
    if empty:
        if node.attributes.get_int("noop_with_empty_axes", 0):
            return dy
        return ctx.op("Expand", dy, ctx.shape(x))
    if not node.attributes.get_int("keepdims", 1):
        dy = ctx.unsqueeze(dy, axes if isinstance(axes, ir.Value) else ctx.ints(axes))
    return ctx.op("Expand", dy, ctx.shape(x))
