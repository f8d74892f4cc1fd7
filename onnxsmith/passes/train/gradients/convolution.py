"""Gradients of Conv and pooling (``dy`` is the gradient of the output ``y``, ``N`` spatial axes).

Conv ``y = conv(x, w) + b`` with strides ``s``, dilations ``d``, pads ``(pb, pe)`` and ``g`` groups:

- ``dx`` is the transposed convolution of ``dy`` with the same weights: ConvTranspose takes the
  ``[M, C/g, k...]`` weight layout as it is. Where ``x + pb + pe - d*(k-1) - 1`` is not a multiple
  of the stride, the last rows of ``x`` were never read and get zeros: ``output_padding`` when
  spatial sizes are static, else a ConvTranspose without end padding, padded by ``s - 1`` zeros
  and sliced to ``Shape(x)``.
- ``dw`` offset by offset: every kernel offset ``o`` selects, from ``x`` padded, the strided window
  ``patch_o = x_pad[..., o*d : o*d + s*(out-1) + 1 : s]`` (the inputs that offset multiplied, ``P``
  output positions; ``x`` itself for the centre offset of a unit-stride "same" convolution) and
  ``dw[m, c, o] = sum_{n, p} dy[n, m, p] * patch_o[n, c, p]`` within each
  group: a MatMul batched over ``n`` and the groups, reduced over ``n``; the ``K`` small results
  are concatenated (depthwise convolutions use a Mul and a ReduceSum per offset instead). Measured
  on onnxruntime's CPU provider, this beats one MatMul over the concatenated im2col columns
  ``[n, C, K, P]`` (whose Concat copies every patch a second time) by ~25% of a CNN training step,
  which in turn beats a Conv over batch-transposed tensors.
- ``dw`` for strided convolutions and single-channel groups (a stem on a grey image): the strided
  Slices above are onnxruntime's slow path, so the im2col columns come from one grouped Conv of
  ``x`` with one-hot kernels instead (``C*K`` filters, filter ``c*K + o`` copying offset ``o`` of
  channel ``c``, exact: products by 1 and sums of zeros), same strides, dilations and pads; then
  one MatMul ``columns @ dy^T`` per image and group, reduced over ``n``, transposed to ``[M, C/g,
  k...]``. Measured with the digits CNN's shapes on one thread (batch 64): 7.4 -> 5.0 ms
  (16 -> 32 channels, stride 2), 4.5 -> 3.0 ms (32 -> 64, stride 2), 4.0 -> 1.1 ms (1 -> 16
  channels); at stride 1 with 16-64 channels the offset Slices stay faster (8.9 against 12.0 ms).
- ``db = sum(dy)`` over every axis but 1.

AveragePool is a depthwise convolution with weights ``1/K``, so ``dx`` is the ConvTranspose above
with ``C`` groups of such weights; without ``count_include_pad`` each window's gradient is first
rescaled by ``K / valid(window)``, where ``valid / K`` is the AveragePool of ones. GlobalAveragePool
spreads ``dy / (H*W...)`` over the input. MaxPool routes each ``dy`` to the argmax of its window:
the MaxPool's Indices output (added to the forward node when the model lacks it) scatters ``dy``
into zeros with ``ScatterElements(reduction='add')``, so overlapping windows add up (opset 16).
Windows that do not overlap (strides at least the kernel, no dilation, no ceil_mode) send at most
one ``dy`` to each input, and ``MaxUnpool(dy, Indices, Shape(x))`` writes them in one kernel (the digits CNN's
2x2 pooling of [64, 16, 32, 32] on one thread: 2.6 -> 0.75 ms, no zeros tensor).
When the MaxPool reads a Relu that nothing else reads, ``max(relu(x)) = relu(max(x))``: each
window's maximum sits where the Relu is active exactly when the pooled value is positive, so the
Relu's mask is applied to ``dy`` at pooled resolution (``dy * (y > 0)``, a quarter of the
elements for 2x2 windows) and the Relu rule passes the routed gradient through.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.train.context import GradContext, dims_of
from onnxsmith.passes.train.registry import gradient

Grads = Sequence[ir.Value | None]


@dataclass(frozen=True)
class _Window:
    """The sliding-window geometry of a Conv or pooling node, pads resolved."""

    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    begin: list[int]
    end: list[int]

    @property
    def pads(self) -> list[int]:
        return self.begin + self.end


def _window(ctx: GradContext, node: ir.Node, kernel: list[int]) -> _Window:
    n = len(kernel)
    attrs = node.attributes
    strides = list(attrs.get_ints("strides", [1] * n))
    dilations = list(attrs.get_ints("dilations", [1] * n))
    pads = list(attrs.get_ints("pads", [0] * 2 * n))
    auto_pad = attrs.get_string("auto_pad", "NOTSET")
    if auto_pad == "VALID":
        pads = [0] * 2 * n
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        dims = dims_of(node.inputs[0])
        spatial = dims[2:] if dims is not None else []
        if len(spatial) != n or not all(isinstance(v, int) for v in spatial):
            raise ctx.fail(f"auto_pad={auto_pad} on an input without static spatial sizes",
                           "give the input static spatial sizes, or export with explicit pads")
        pads = [0] * 2 * n
        for i, size in enumerate(spatial):
            total = max(0, (math.ceil(size / strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
            small, large = total // 2, total - total // 2
            pads[i], pads[i + n] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    return _Window(kernel, strides, dilations, pads[:n], pads[n:])


def _transposed(ctx: GradContext, dy: ir.Value, w: ir.Value, x: ir.Value, y: ir.Value, win: _Window,
                group: int) -> ir.Value:
    """``ConvTranspose(dy, w)`` cut or padded to the shape of ``x``: the input gradient."""
    n = len(win.kernel)
    x_dims, y_dims = dims_of(x), dims_of(y)
    common = dict(strides=win.strides, dilations=win.dilations, kernel_shape=win.kernel,
                  group=group if group != 1 else None)
    if x_dims is not None and y_dims is not None and all(isinstance(v, int) for v in x_dims[2:] + y_dims[2:]):
        extra = [x_dims[2 + i] - (win.strides[i] * (y_dims[2 + i] - 1) + win.dilations[i] * (win.kernel[i] - 1) + 1
                                  - win.begin[i] - win.end[i]) for i in range(n)]
        return ctx.op("ConvTranspose", dy, w, pads=win.pads, output_padding=extra if any(extra) else None, **common)
    full = ctx.op("ConvTranspose", dy, w, pads=win.begin + [0] * n, **common)
    if any(s > 1 for s in win.strides):
        full = ctx.op("Pad", full, ctx.ints([0] * (n + 2) + [0, 0] + [s - 1 for s in win.strides]))
    spatial = ctx.op("Slice", ctx.shape(x), ctx.ints([2]), ctx.ints([n + 2]))
    return ctx.op("Slice", full, ctx.ints([0] * n), spatial, ctx.ints(list(range(2, n + 2))))


def _static_weight(ctx: GradContext, w: ir.Value) -> tuple[int, ...]:
    shape = ctx.static_shape(w)
    if shape is None:
        raise ctx.fail(f"the weight '{w.name}' has no static shape", "run infer-shapes first")
    return shape


@gradient("Conv")
def conv(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, w = node.inputs[:2]
    dy, y = output_grads[0], node.outputs[0]
    w_shape = _static_weight(ctx, w)
    win = _window(ctx, node, list(node.attributes.get_ints("kernel_shape", w_shape[2:])))
    group = node.attributes.get_int("group", 1)
    grads: list[ir.Value | None] = [None] * len(node.inputs)
    if ctx.needs(0):
        grads[0] = _transposed(ctx, dy, w, x, y, win, group)
    if ctx.needs(1):
        grads[1] = _weight_gradient(ctx, x, dy, y, w, w_shape, win, group)
    if len(node.inputs) > 2 and ctx.needs(2):
        grads[2] = ctx.reduce("ReduceSum", dy, [0, *range(2, ctx.rank(x))], keepdims=False)
    return grads


def _weight_gradient(ctx: GradContext, x: ir.Value, dy: ir.Value, y: ir.Value, w: ir.Value,
                     w_shape: tuple[int, ...], win: _Window, group: int) -> ir.Value:
    m, c_group = w_shape[0], w_shape[1]
    depthwise = m == group and c_group == 1
    if not depthwise and (c_group == 1 or any(s > 1 for s in win.strides)):
        return _weight_gradient_from_columns(ctx, x, dy, w_shape, win, group)
    patches = _patches(ctx, x, y, win)
    if depthwise:  # one filter per channel
        products = [ctx.op("Mul", patch, dy) for patch in patches]
        parts = [ctx.reduce("ReduceSum", p, [0, *range(2, ctx.rank(x))], keepdims=False) for p in products]
        taps = [ctx.unsqueeze(part, [1]) for part in parts]  # [C, 1] each
    else:
        dy_groups = ctx.op("Reshape", dy, ctx.ints([0, group, m // group, -1]))  # [n, g, M/g, P]
        taps = []
        for patch in patches:
            columns = ctx.op("Reshape", patch, ctx.ints([0, group, c_group, -1]))  # [n, g, C/g, P]
            product = ctx.op("MatMul", dy_groups, ctx.op("Transpose", columns, perm=[0, 1, 3, 2]))
            taps.append(ctx.unsqueeze(ctx.reduce("ReduceSum", product, [0], keepdims=False), [3]))
    stacked = ctx.op("Concat", *taps, axis=-1) if len(taps) > 1 else taps[0]
    return ctx.op("Reshape", stacked, ctx.ints(w_shape))


def _weight_gradient_from_columns(ctx: GradContext, x: ir.Value, dy: ir.Value, w_shape: tuple[int, ...],
                                  win: _Window, group: int) -> ir.Value:
    """``dw`` from im2col columns made by a grouped Conv with one-hot kernels (see the module doc)."""
    m, c_group = w_shape[0], w_shape[1]
    channels, taps = c_group * group, math.prod(win.kernel)
    offsets = np.eye(taps, dtype=ctx.dtype(x).numpy()).reshape(taps, 1, *win.kernel)  # row-major offsets
    one_hot = np.tile(offsets, (channels, 1, *[1] * len(win.kernel)))  # filter c*K + o
    columns = ctx.op("Conv", x, ctx.const(one_hot), kernel_shape=win.kernel, strides=win.strides,
                     dilations=win.dilations, pads=win.pads, group=channels)  # [n, C*K, out...]
    columns = ctx.op("Reshape", columns, ctx.ints([0, group, c_group * taps, -1]))  # [n, g, C/g*K, P]
    dy_t = ctx.op("Transpose", ctx.op("Reshape", dy, ctx.ints([0, group, m // group, -1])), perm=[0, 1, 3, 2])
    product = ctx.reduce("ReduceSum", ctx.op("MatMul", columns, dy_t), [0], keepdims=False)  # [g, C/g*K, M/g]
    return ctx.op("Reshape", ctx.op("Transpose", product, perm=[0, 2, 1]), ctx.ints(w_shape))


def _patches(ctx: GradContext, x: ir.Value, y: ir.Value, win: _Window) -> list[ir.Value]:
    """For each kernel offset (row-major), the ``[n, C, out...]`` input values it multiplied."""
    n = len(win.kernel)
    padded = ctx.op("Pad", x, ctx.ints([0, 0, *win.begin, 0, 0, *win.end])) if any(win.pads) else x
    y_dims = dims_of(y)
    out = y_dims[2:] if y_dims is not None else None
    reach: list[int] | ir.Value
    if out is not None and all(isinstance(v, int) for v in out):
        reach = [s * (o - 1) + 1 for s, o in zip(win.strides, out)]  # type: ignore[operator]
    else:
        out_sizes = ctx.op("Slice", ctx.shape(y), ctx.ints([2]), ctx.ints([n + 2]))
        reach = ctx.op("Add", ctx.op("Mul", ctx.op("Sub", out_sizes, ctx.ints([1])), ctx.ints(win.strides)),
                       ctx.ints([1]))
    axes, steps = ctx.ints(list(range(2, n + 2))), ctx.ints(win.strides)
    x_dims = dims_of(x)
    x_sizes = x_dims[2:] if x_dims is not None else None
    patches = []
    for offset in itertools.product(*(range(k) for k in win.kernel)):
        first = [o * d for o, d in zip(offset, win.dilations)]
        if first == win.begin and isinstance(reach, list) and reach == x_sizes and all(s == 1 for s in win.strides):
            patches.append(x)  # the offset whose window is x itself (the centre of a "same" convolution)
            continue
        ends = (ctx.ints([f + r for f, r in zip(first, reach)]) if isinstance(reach, list)
                else ctx.op("Add", ctx.ints(first), reach))
        patches.append(ctx.op("Slice", padded, ctx.ints(first), ends, axes, steps))
    return patches


@gradient("AveragePool")
def average_pool(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, y, dy = node.inputs[0], node.outputs[0], output_grads[0]
    if node.attributes.get_int("ceil_mode", 0):
        raise ctx.fail("ceil_mode=1 is not supported", "export the pooling with ceil_mode=0")
    kernel = list(node.attributes.get_ints("kernel_shape"))
    win = _window(ctx, node, kernel)
    x_dims = dims_of(x)
    channels = x_dims[1] if x_dims is not None and len(x_dims) > 1 else None
    if not isinstance(channels, int):
        raise ctx.fail("the number of channels is not static", "run infer-shapes first")
    dtype = ctx.dtype(x).numpy()
    weights = ctx.const(np.full([channels, 1, *kernel], 1.0 / np.prod(kernel), dtype=dtype))
    if any(win.pads) and not node.attributes.get_int("count_include_pad", 0):
        ones_shape = ctx.op("Concat", ctx.ints([1, 1]),
                            ctx.op("Slice", ctx.shape(x), ctx.ints([2]), ctx.ints([len(kernel) + 2])), axis=0)
        ones = ctx.op("ConstantOfShape", ones_shape, value=ir.tensor(np.ones(1, dtype=dtype)))
        attrs = {name: attr.value for name, attr in node.attributes.items()}
        attrs["count_include_pad"] = 1
        valid_share = ctx.op("AveragePool", ones, **attrs)
        dy = ctx.op("Div", dy, valid_share)
    return [_transposed(ctx, dy, weights, x, y, win, channels)]


@gradient("GlobalAveragePool")
def global_average_pool(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, y = node.inputs[0], node.outputs[0]
    share = ctx.op("Div", ctx.count(y, x), ctx.count(x, x))
    return [ctx.op("Mul", ctx.op("Expand", output_grads[0], ctx.shape(x)), share)]


@gradient("MaxPool", forward_outputs=2)
def max_pool(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    if len(output_grads) > 1 and output_grads[1] is not None:
        raise ctx.fail("the loss depends on its Indices output")
    if node.attributes.get_int("storage_order", 0):
        raise ctx.fail("storage_order=1 is not supported")
    if ctx.opset < 16:
        raise ctx.fail("the gradient of MaxPool needs ScatterElements with reduction (opset 16)",
                       "convert the model to opset 16 or later")
    x = node.inputs[0]
    indices, dy = node.outputs[1], output_grads[0]
    masks_relu = _reads_only_relu(ctx, x)
    if masks_relu:
        y = node.outputs[0]
        dy = ctx.op("Mul", dy, ctx.op("Cast", ctx.op("Greater", y, ctx.scalar(0.0, y)), to=ctx.dtype(y)))
    kernel = list(node.attributes.get_ints("kernel_shape"))
    win = _window(ctx, node, kernel)
    disjoint = all(d == 1 for d in win.dilations) and all(s >= k for s, k in zip(win.strides, kernel))
    if disjoint and not node.attributes.get_int("ceil_mode", 0):  # (MaxUnpool infers ceil_mode's shape too large)
        # each input receives at most one dy, and MaxUnpool writes it there
        dx = ctx.op("MaxUnpool", dy, indices, ctx.shape(x), kernel_shape=kernel, strides=win.strides, pads=win.pads)
        dx.type, dx.shape = x.type, x.shape  # ONNX shape inference does not read the output_shape input
    else:
        flat = ctx.ints([-1])
        zeros = ctx.zeros(ctx.op("Reshape", ctx.op("Size", x), ctx.ints([1])), x)
        routed = ctx.op("ScatterElements", zeros, ctx.op("Reshape", indices, flat), ctx.op("Reshape", dy, flat),
                        axis=0, reduction="add")
        dx = ctx.reshape_like(routed, x)
    if masks_relu:
        ctx.relu_masked.add(dx)
    return [dx]


def _reads_only_relu(ctx: GradContext, x: ir.Value) -> bool:
    """Whether ``x`` is a Relu's output that no other forward node (nor the graph output) reads."""
    producer = x.producer()
    if producer is None or producer.op_type != "Relu" or producer.domain not in ("", "ai.onnx"):
        return False
    backward = set(ctx.nodes)
    readers = {node for node, _ in x.uses() if node not in backward}
    return len(readers) == 1 and not x.is_graph_output()
