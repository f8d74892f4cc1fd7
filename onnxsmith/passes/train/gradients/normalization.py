"""Gradients of LayerNormalization and BatchNormalization (inference form).

LayerNormalization over the axes ``A = [axis, rank)`` (``M`` elements per normalized group):
``xhat = (x - mean) * r`` with ``r = 1 / sqrt(var + eps)``, ``y = xhat * scale + bias``.
With ``g = dy * scale``:

    dx     = r * (g - mean_A(g) - xhat * mean_A(g * xhat))
    dscale = dy * xhat summed over the leading (non-normalized) axes
    dbias  = dy summed over the leading axes

``mean`` and ``r`` are read from the node's optional Mean and InvStdDev outputs (cast from the
stash type when it differs; a double input's mean is recomputed in double); the rule asks for them (``forward_outputs=3``), so a model without
them gets them added to its forward node. Gradients flowing into those two outputs are not
supported.

BatchNormalization in inference form normalizes channel ``c`` (axis 1) with constant statistics:
``y = (x - mean_c) * r_c * scale_c + bias_c``, ``r_c = 1 / sqrt(var_c + eps)``. So
``dx = dy * scale_c * r_c``, ``dscale_c = sum(dy * (x - mean_c) * r_c)`` and ``dbias_c = sum(dy)``
over every axis but 1. The running statistics (inputs 3 and 4) are not differentiated.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from onnxsmith.passes.train.context import GradContext
from onnxsmith.passes.train.registry import gradient

Grads = Sequence[ir.Value | None]


@gradient("LayerNormalization", forward_outputs=3)
def layer_normalization(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    if any(g is not None for g in output_grads[1:]):
        raise ctx.fail("the loss depends on its Mean or InvStdDev output")
    x, scale = node.inputs[:2]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    dy = output_grads[0]
    rank = ctx.rank(x)
    axis = node.attributes.get_int("axis", -1) % rank
    axes = list(range(axis, rank))
    mean, inv_std = _statistics(ctx, node, axes)
    xhat = ctx.op("Mul", ctx.op("Sub", x, mean), inv_std)
    grads: list[ir.Value | None] = [None, None, None][: len(node.inputs)]
    if ctx.needs(0):
        grads[0] = normalized_input_grad(ctx, dy, scale, xhat, inv_std, axes)
    if ctx.needs(1):
        grads[1] = ctx.unbroadcast(ctx.op("Mul", dy, xhat), scale)
    if bias is not None and ctx.needs(2):
        grads[2] = ctx.unbroadcast(dy, bias)
    return grads


def normalized_input_grad(ctx: GradContext, dy: ir.Value, scale: ir.Value, xhat: ir.Value, inv_std: ir.Value,
                          axes: list[int]) -> ir.Value:
    """``dx`` of ``y = xhat * scale + bias`` normalized over ``axes`` (the module docstring's formula)."""
    g = ctx.op("Mul", dy, scale)
    centred = ctx.op("Sub", g, ctx.reduce("ReduceMean", g, axes))
    along = ctx.op("Mul", xhat, ctx.reduce("ReduceMean", ctx.op("Mul", g, xhat), axes))
    return ctx.op("Mul", ctx.op("Sub", centred, along), inv_std)


def _statistics(ctx: GradContext, node: ir.Node, axes: list[int]) -> tuple[ir.Value, ir.Value]:
    """The node's Mean and InvStdDev outputs in the input's element type (size-1 normalized axes).

    They are stored in the stash type (float32 by default). For a double input, onnxruntime
    normalizes with the mean in double but outputs it rounded to float32, and ``x - mean`` would
    turn that rounding into an absolute error of ``r`` times float32's epsilon (with one element
    per group, a nonzero ``xhat`` where the forward has exactly 0): the mean is recomputed in double.
    """
    x, mean, inv_std = node.inputs[0], node.outputs[1], node.outputs[2]
    if mean.dtype != x.dtype:
        inv_std = ctx.op("Cast", inv_std, to=ctx.dtype(x))
        if ctx.dtype(x) == ir.DataType.DOUBLE:
            mean = ctx.reduce("ReduceMean", x, axes)
        else:
            mean = ctx.op("Cast", mean, to=ctx.dtype(x))
    return mean, inv_std


@gradient("BatchNormalization", nondifferentiable=[3, 4])
def batch_normalization(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    if node.attributes.get_int("training_mode", 0) or len(node.outputs) > 1:
        raise ctx.fail("only the inference form (training_mode=0, one output) is supported")
    x, scale, bias, mean, var = node.inputs
    dy = output_grads[0]
    rank = ctx.rank(x)
    per_channel = [-1] + [1] * (rank - 2)
    epsilon = ctx.scalar(node.attributes.get_float("epsilon", 1e-5), x)
    inv_std = ctx.op("Reciprocal", ctx.op("Sqrt", ctx.op("Add", var, epsilon)))
    channel_axes = [0, *range(2, rank)]
    grads: list[ir.Value | None] = [None] * 5
    if ctx.needs(0):
        factor = ctx.op("Reshape", ctx.op("Mul", scale, inv_std), ctx.ints(per_channel))
        grads[0] = ctx.op("Mul", dy, factor)
    if ctx.needs(1):
        shift = ctx.op("Reshape", mean, ctx.ints(per_channel))
        xhat = ctx.op("Mul", ctx.op("Sub", x, shift), ctx.op("Reshape", inv_std, ctx.ints(per_channel)))
        grads[1] = ctx.reduce("ReduceSum", ctx.op("Mul", dy, xhat), channel_axes, keepdims=False)
    if ctx.needs(2):
        grads[2] = ctx.reduce("ReduceSum", dy, channel_axes, keepdims=False)
    return grads
