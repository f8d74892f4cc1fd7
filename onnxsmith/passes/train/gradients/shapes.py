"""Gradients of data-movement operators (``dy`` is the gradient of ``y``).

- Reshape, Flatten, Squeeze, Unsqueeze: ``dx = Reshape(dy, Shape(x))``;
- Transpose(perm): ``dx = Transpose(dy, inverse(perm))``;
- Expand: ``dx`` is ``dy`` summed over the broadcast axes;
- Concat(axis): ``dx_i`` is the i-th piece of ``Split(dy, sizes of the x_i along axis)``;
- Split(axis): ``dx = Concat(dy_i)`` with zeros for outputs that receive no gradient;
- Slice: with unit steps and static shapes, ``dx = Pad(dy)`` with the zeros that were cut off;
  otherwise ``dy`` is scattered into zeros at the flat positions obtained by slicing
  ``Range(size(x))`` reshaped like ``x`` the same way;
- Gather(axis): ``dx = ScatterND(zeros, indices, dy, reduction='add')`` with ``axis`` moved to the
  front (repeated indices add up; negative indices are wrapped first). Needs opset 16.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.train.context import GradContext, dims_of
from onnxsmith.passes.train.registry import gradient

Grads = Sequence[ir.Value | None]


def _reshape_back(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return [ctx.reshape_like(output_grads[0], node.inputs[0])]


for _op in ("Reshape", "Squeeze", "Unsqueeze"):
    gradient(_op, nondifferentiable=[1])(_reshape_back)
gradient("Flatten")(_reshape_back)


@gradient("Transpose")
def transpose(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    rank = ctx.rank(node.inputs[0])
    perm = list(node.attributes.get_ints("perm", list(reversed(range(rank)))))
    return [ctx.op("Transpose", output_grads[0], perm=[int(i) for i in np.argsort(perm)])]


@gradient("Expand", nondifferentiable=[1])
def expand(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return [ctx.unbroadcast(output_grads[0], node.inputs[0])]


@gradient("Concat")
def concat(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    axis = node.attributes.get_int("axis")
    pieces = [x for x in node.inputs]
    static = [dims_of(x) for x in pieces]
    if all(d is not None and isinstance(d[axis], int) for d in static):
        sizes = ctx.ints([d[axis] for d in static])  # type: ignore[index]
    else:
        sizes = ctx.op("Concat", *[ctx.op("Gather", ctx.shape(x), ctx.ints([axis]), axis=0) for x in pieces], axis=0)
    return list(ctx.op("Split", output_grads[0], sizes, outputs=len(pieces), axis=axis)) if len(pieces) > 1 else (
        [output_grads[0]])


@gradient("Split", nondifferentiable=[1])
def split(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    parts = [g if g is not None else ctx.zeros(ctx.shape(out), out) for g, out in zip(output_grads, node.outputs)]
    return [ctx.op("Concat", *parts, axis=node.attributes.get_int("axis", 0))]


@gradient("Slice", nondifferentiable=[1, 2, 3, 4])
def slice_(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, dy = node.inputs[0], output_grads[0]
    pads = _slice_pads(ctx, node)
    if pads is not None:
        return [ctx.op("Pad", dy, ctx.ints(pads))]
    flat_size = ctx.op("Size", x)
    positions = ctx.op("Range", ctx.const(np.int64(0)), flat_size, ctx.const(np.int64(1)))
    picked = ctx.op("Slice", ctx.reshape_like(positions, x), *node.inputs[1:])
    indices = ctx.op("Reshape", picked, ctx.ints([-1, 1]))
    zeros = ctx.zeros(ctx.op("Reshape", flat_size, ctx.ints([1])), x)
    scattered = ctx.op("ScatterND", zeros, indices, ctx.op("Reshape", dy, ctx.ints([-1])))
    return [ctx.reshape_like(scattered, x)]


def _slice_pads(ctx: GradContext, node: ir.Node) -> list[int] | None:
    """Pad widths that undo a unit-step Slice with constant arguments on a static shape, else None."""
    shape = ctx.static_shape(node.inputs[0])
    args = [None if (a := ctx.constant(v)) is None else a.astype(np.int64)
            for v in list(node.inputs[1:5]) + [None] * (5 - len(node.inputs))]
    starts, ends, axes, steps = args
    if shape is None or starts is None or ends is None:
        return None
    if (len(node.inputs) > 3 and node.inputs[3] is not None and axes is None) or (
            len(node.inputs) > 4 and node.inputs[4] is not None and steps is None):
        return None
    axes = axes if axes is not None else np.arange(len(starts))
    if steps is not None and np.any(steps != 1):
        return None
    rank = len(shape)
    before, after = [0] * rank, [0] * rank
    for start, end, axis in zip(starts, ends, axes):
        axis = int(axis) % rank
        size = shape[axis]
        begin = int(np.clip(start + size if start < 0 else start, 0, size))
        stop = int(np.clip(end + size if end < 0 else end, 0, size))
        before[axis], after[axis] = begin, size - max(stop, begin)
    return before + after


@gradient("Gather", nondifferentiable=[1])
def gather(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    data, indices = node.inputs
    if ctx.opset < 16:
        raise ctx.fail("the gradient of Gather needs ScatterND with reduction (opset 16)",
                       "convert the model to opset 16 or later")
    rank, q = ctx.rank(data), ctx.rank(indices)
    axis = node.attributes.get_int("axis", 0) % rank
    dy = output_grads[0]
    size = ctx.op("Gather", ctx.shape(data), ctx.const(np.int64(axis)), axis=0)
    wrapped = ctx.op("Where", ctx.op("Less", indices, ctx.const(np.zeros((), indices.dtype.numpy()))),
                     ctx.op("Add", indices, ctx.op("Cast", size, to=indices.dtype)), indices)
    index = ctx.unsqueeze(wrapped, [-1])
    if axis == 0:
        return [ctx.op("ScatterND", ctx.zeros(ctx.shape(data), data), index, dy, reduction="add")]
    to_front = [axis, *range(axis), *range(axis + 1, rank)]
    data_t_shape = ctx.op("Gather", ctx.shape(data), ctx.ints(to_front), axis=0)
    dy_t = ctx.op("Transpose", dy, perm=[*range(axis, axis + q), *range(axis), *range(axis + q, rank + q - 1)])
    dx_t = ctx.op("ScatterND", ctx.zeros(data_t_shape, data), index, dy_t, reduction="add")
    return [ctx.op("Transpose", dx_t, perm=[int(i) for i in np.argsort(to_front)])]
