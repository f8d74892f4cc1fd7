"""Gradients of the onnxruntime contrib ops that the ``fuse`` pass writes (domain ``com.microsoft``).

A model fused for the CPU target (``--passes cleanup,fuse,qdq``) can be fine-tuned and
quantization-aware trained as it is:

- FastGelu(X, bias?): tanh-approximated GELU of ``u = X + bias``; ``du = dy * gelu_tanh'(u)``,
  ``dX`` and ``dbias`` are ``du`` summed over their broadcast axes;
- BiasGelu(A, B): exact GELU of ``u = A + B``, likewise;
- QuickGelu(X; alpha): ``y = X * s`` with ``s = Sigmoid(alpha * X)``;
  ``dX = dy * s * (1 + alpha * X * (1 - s))``;
- FusedConv(X, W, B?, Z?; activation): ``y = act(Conv(X, W, B) + Z)``. The activation's slope
  is read from ``y`` (Relu, LeakyRelu: ``y > 0``; Sigmoid: ``y (1 - y)``; Tanh: ``1 - y^2``;
  HardSigmoid: ``0 < y < 1``; Clip: ``min < y < max``), then the Conv rule runs on
  ``dy * slope``, which is also ``dZ``;
- SkipLayerNormalization(input, skip, gamma, beta?, bias?; epsilon): layer normalization over the
  last axis of ``s = input + skip + bias``; the statistics are recomputed from ``s`` (onnxruntime's
  CPU kernel does not fill the Mean/InvStdVar outputs). ``ds`` is the LayerNormalization gradient
  plus the gradient of the optional ``input_skip_bias_sum`` output, and goes to input, skip and
  bias summed over their broadcast axes;
- EmbedLayerNormalization(input_ids, segment_ids?, word, position, segment?, gamma, beta, mask?,
  position_ids?; epsilon): layer normalization of ``e = word[ids] + position[position_ids or
  0..S-1] + segment[segment_ids]``, read from the node's optional ``embedding_sum`` output (the
  rule asks for it). ``de`` is the LayerNormalization gradient; each table's gradient adds ``de``
  at the rows its ids picked (``ScatterND`` with ``reduction='add'``; positions without ids take
  the batch sum of ``de`` at rows ``0..S-1``);
- GatherBlockQuantized (an embedding table stored as integer codes by ``qdq``): the codes and
  their scales stay as they are, so no input takes a gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.train.context import GradContext
from onnxsmith.passes.train.gradients.activations import gelu_slope
from onnxsmith.passes.train.gradients.convolution import conv
from onnxsmith.passes.train.gradients.normalization import normalized_input_grad
from onnxsmith.passes.train.registry import MS_DOMAIN as MS
from onnxsmith.passes.train.registry import gradient

Grads = Sequence[ir.Value | None]


@gradient("FastGelu", domain=MS)
def fast_gelu(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return _biased(ctx, node, output_grads[0], tanh=True)


@gradient("BiasGelu", domain=MS)
def bias_gelu(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return _biased(ctx, node, output_grads[0], tanh=False)


def _biased(ctx: GradContext, node: ir.Node, dy: ir.Value, *, tanh: bool) -> Grads:
    """Gradients of ``gelu(x + bias)`` for the inputs ``[x, bias?]``."""
    inputs = [v for v in node.inputs if v is not None]
    u = inputs[0]
    if len(inputs) > 1:
        u = ctx.op("Add", inputs[0], inputs[1])
        u.type, u.shape = node.outputs[0].type, node.outputs[0].shape  # the rule's constants take its type
    du = ctx.op("Mul", dy, gelu_slope(ctx, u, tanh=tanh))
    return [ctx.unbroadcast(du, x) if x is not None and ctx.needs(i) else None for i, x in enumerate(node.inputs)]


@gradient("QuickGelu", domain=MS)
def quick_gelu(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x = node.inputs[0]
    alpha = ctx.scalar(node.attributes.get_float("alpha", 1.702), x)
    ax = ctx.op("Mul", x, alpha)
    s = ctx.op("Sigmoid", ax)
    slope = ctx.op("Mul", s, ctx.op("Add", ctx.scalar(1.0, x), ctx.op("Mul", ax, ctx.op("Sub", ctx.scalar(1.0, x), s))))
    return [ctx.op("Mul", output_grads[0], slope)]


@gradient("FusedConv", domain=MS)
def fused_conv(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    y, dy = node.outputs[0], output_grads[0]
    activation = node.attributes.get_string("activation", "")
    params = list(node.attributes.get_floats("activation_params", []))
    zero, one = ctx.scalar(0.0, y), ctx.scalar(1.0, y)

    def inside(low: ir.Value, high: ir.Value) -> ir.Value:
        return ctx.op("Cast", ctx.op("And", ctx.op("Greater", y, low), ctx.op("Less", y, high)), to=ctx.dtype(y))

    if activation in ("", "Identity"):
        pre = dy
    elif activation == "Relu":
        pre = ctx.op("Mul", dy, ctx.op("Cast", ctx.op("Greater", y, zero), to=ctx.dtype(y)))
    elif activation == "LeakyRelu":
        alpha = params[0] if params else 0.01
        pre = ctx.op("Where", ctx.op("Greater", y, zero), dy, ctx.op("Mul", dy, ctx.scalar(alpha, y)))
    elif activation == "Sigmoid":
        pre = ctx.op("Mul", dy, ctx.op("Mul", y, ctx.op("Sub", one, y)))
    elif activation == "Tanh":
        pre = ctx.op("Mul", dy, ctx.op("Sub", one, ctx.op("Mul", y, y)))
    elif activation == "HardSigmoid":
        alpha = params[0] if params else 0.2
        pre = ctx.op("Mul", ctx.op("Mul", dy, ctx.scalar(alpha, y)), inside(zero, one))
    elif activation == "Clip" and len(params) == 2:
        pre = ctx.op("Mul", dy, inside(ctx.scalar(params[0], y), ctx.scalar(params[1], y)))
    else:
        raise ctx.fail(f"FusedConv with activation '{activation}' has no gradient rule")
    grads = list(conv(ctx, node, [pre]))
    if len(node.inputs) > 3 and node.inputs[3] is not None and ctx.needs(3):
        grads[3] = ctx.unbroadcast(pre, node.inputs[3])
    return grads


@gradient("SkipLayerNormalization", domain=MS)
def skip_layer_normalization(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    if any(g is not None for g in output_grads[1:3]):
        raise ctx.fail("the loss depends on its mean or inv_std_var output")
    inputs = list(node.inputs) + [None] * (5 - len(node.inputs))
    x, skip, gamma, beta, bias = inputs
    dy = output_grads[0]  # None when only input_skip_bias_sum reaches the loss
    s = ctx.op("Add", x, skip)
    if bias is not None:
        s = ctx.op("Add", s, bias)
    xhat, inv_std = _normalized(ctx, s, node.attributes.get_float("epsilon", 1e-12), like=x)
    grads: list[ir.Value | None] = [None] * len(node.inputs)
    summed = output_grads[3] if len(output_grads) > 3 else None
    if any(ctx.needs(i) for i in (0, 1, 4) if inputs[i] is not None):
        ds = summed
        if dy is not None:
            normalized = normalized_input_grad(ctx, dy, gamma, xhat, inv_std, [-1])
            ds = normalized if summed is None else ctx.op("Add", normalized, summed)
        for i in (0, 1, 4):
            if inputs[i] is not None and ctx.needs(i):
                grads[i] = ctx.unbroadcast(ds, inputs[i])
    if dy is not None and ctx.needs(2):
        grads[2] = ctx.unbroadcast(ctx.op("Mul", dy, xhat), gamma)
    if dy is not None and beta is not None and ctx.needs(3):
        grads[3] = ctx.unbroadcast(dy, beta)
    return grads


_EMBED_IDS = (0, 1, 7, 8)  # input_ids, segment_ids, mask, position_ids


@gradient("EmbedLayerNormalization", domain=MS, nondifferentiable=_EMBED_IDS, forward_outputs=3)
def embed_layer_normalization(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    if any(g is not None for g in output_grads[1:]):
        raise ctx.fail("the loss depends on its mask_index or embedding_sum output")
    inputs = list(node.inputs) + [None] * (9 - len(node.inputs))
    ids, segment_ids, word, position, segment, gamma, beta, _, position_ids = inputs
    dy, e = output_grads[0], node.outputs[2]
    xhat, inv_std = _normalized(ctx, e, node.attributes.get_float("epsilon", 1e-12), like=word)
    grads: list[ir.Value | None] = [None] * len(node.inputs)
    if ctx.needs(5):
        grads[5] = ctx.reduce("ReduceSum", ctx.op("Mul", dy, xhat), [0, 1], keepdims=False)
    if beta is not None and ctx.needs(6):
        grads[6] = ctx.reduce("ReduceSum", dy, [0, 1], keepdims=False)
    if not any(ctx.needs(i) for i in (2, 3, 4) if inputs[i] is not None):
        return grads
    de = normalized_input_grad(ctx, dy, gamma, xhat, inv_std, [-1])

    def rows(table: ir.Value, picked: ir.Value, updates: ir.Value) -> ir.Value:
        index = ctx.unsqueeze(ctx.op("Cast", picked, to=ir.DataType.INT64), [-1])
        return ctx.op("ScatterND", ctx.zeros(ctx.shape(table), table), index, updates, reduction="add")

    if ctx.needs(2):
        grads[2] = rows(word, ids, de)
    if segment is not None and segment_ids is not None and ctx.needs(4):
        grads[4] = rows(segment, segment_ids, de)
    if ctx.needs(3):
        if position_ids is not None:  # [B, S], or [1, S] shared by the batch
            shared = (ctx.static_shape(position_ids) or (0,))[0] == 1
            grads[3] = rows(position, position_ids, ctx.reduce("ReduceSum", de, [0]) if shared else de)
        else:
            length = ctx.op("Gather", ctx.shape(ids), ctx.const(np.int64(1)), axis=0)
            positions = ctx.op("Range", ctx.const(np.int64(0)), length, ctx.const(np.int64(1)))
            summed = ctx.reduce("ReduceSum", de, [0], keepdims=False)  # [S, H]
            grads[3] = rows(position, positions, summed)
    return grads


def _normalized(ctx: GradContext, e: ir.Value, epsilon: float, *, like: ir.Value) -> tuple[ir.Value, ir.Value]:
    """``(e - mean) * inv_std`` over the last axis, and ``inv_std`` (size-1 last axis)."""
    centred = ctx.op("Sub", e, ctx.reduce("ReduceMean", e, [-1]))
    variance = ctx.reduce("ReduceMean", ctx.op("Mul", centred, centred), [-1])
    inv_std = ctx.op("Reciprocal", ctx.op("Sqrt", ctx.op("Add", variance, ctx.scalar(epsilon, like))))
    return ctx.op("Mul", centred, inv_std), inv_std


@gradient("GatherBlockQuantized", domain=MS, nondifferentiable=range(4))
def gather_block_quantized(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return [None] * len(node.inputs)
