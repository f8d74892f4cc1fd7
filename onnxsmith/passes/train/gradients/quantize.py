"""Gradients of fake quantization: QuantizeLinear followed by DequantizeLinear.

With scale ``s > 0``, zero point ``z`` and the integer type's bounds ``[qmin, qmax]``::

    q     = clip(round(x / s) + z, qmin, qmax)        QuantizeLinear
    x_hat = (q - z) * s                               DequantizeLinear

Rounding has a zero derivative almost everywhere, so training uses estimators. Write
``v = x / s`` and call ``x`` *inside* when ``qmin - z <= v <= qmax - z``, i.e. ``x`` lies in
``[(qmin - z) * s, (qmax - z) * s]``.

- **Straight-through estimator** (Bengio et al. 2013): ``d x_hat / d x = 1`` inside, ``0``
  outside (clipped values get no gradient).
- **LSQ** (Esser et al. 2020), with ``quant_scales=lsq``: the scale learns too, with
  ``d x_hat / d s = round(v) - v`` inside, ``qmin - z`` below and ``qmax - z`` above, summed over
  the elements that share the scale, and optionally multiplied by ``g = 1 / sqrt(N * qmax)`` for
  ``N`` elements per scale (``lsq_grad_scale``). With ``quant_scales=frozen`` (the default) scales
  get no gradient. Zero points never do.

The pair is differentiated op by op through the codes ``q``: the QuantizeLinear rule declares
its integer output gradient-carrying when every reader is a DequantizeLinear, and the gradient
that flows through it is the gradient with respect to ``q`` taken as a real number:

- DequantizeLinear: ``dq = dx_hat * s``, ``ds = sum(dx_hat * (q - z))``;
- QuantizeLinear: ``dx = dq / s`` inside (0 outside), ``ds = sum(dq * (-v / s))`` inside.

Composed, ``dx = dx_hat`` inside, and ``ds = sum(dx_hat * (q - z - v))`` inside (``q - z =
round(v)``), ``sum(dx_hat * (q - z))`` outside (``q - z`` is the clipped end): the two estimators
above. A QuantizeLinear whose codes are read by anything else (QLinearConv, a Cast, a graph
output) gives no gradient: its codes are integers, so nothing before it is trained through it.
A lone DequantizeLinear of a constant integer tensor passes gradients to its scale only with
``quant_scales=lsq`` (``ds = sum(dx_hat * (q - z))``, the exact derivative).

Per-tensor (0-d or one-element) and per-axis (1-D, along ``axis``) parameters are supported;
blockwise ones (``block_size``) are not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import onnx_ir as ir

from onnxsmith.passes.quant.scales import INTEGER_BOUNDS
from onnxsmith.passes.train.context import GradContext
from onnxsmith.passes.train.registry import gradient

Grads = Sequence[ir.Value | None]


def _is_fake_quant_code(value: ir.Value) -> bool:
    """Whether ``value`` (a QuantizeLinear output) is read only by DequantizeLinear nodes, as their data."""
    uses = list(value.uses())
    return bool(uses) and not value.is_graph_output() and all(
        node.op_type == "DequantizeLinear" and node.domain in ("", "ai.onnx") and index == 0 for node, index in uses)


@dataclass
class _Layout:
    """The quantization parameters of one node, broadcast against its data.

    Attributes:
        scale: The scale, reshaped to broadcast against the data.
        zero: The zero point as a float of the scale's type, broadcast likewise (None when absent).
        qmin: The integer type's lower bound (None for types without bounds here, e.g. int32).
        qmax: The integer type's upper bound (likewise).
        to_scale: Sums an elementwise tensor over the elements that share a scale, to the scale's shape.
    """

    scale: ir.Value
    zero: ir.Value | None
    qmin: int | None
    qmax: int | None
    to_scale: Callable[[ir.Value], ir.Value]


def _layout(ctx: GradContext, data: ir.Value, integer_type: ir.DataType) -> _Layout:
    node = ctx.node
    scale = node.inputs[1]
    zero = node.inputs[2] if len(node.inputs) > 2 else None
    if node.attributes.get_int("block_size", 0):
        raise ctx.fail("blockwise quantization parameters (block_size) are not supported")
    qmin, qmax = INTEGER_BOUNDS.get(integer_type, (None, None))
    rank = ctx.rank(data)
    scale_shape = ctx.static_shape(scale)
    zero_float = ctx.op("Cast", zero, to=ctx.dtype(scale)) if zero is not None else None
    if ctx.rank(scale) == 0 or scale_shape == (1,):
        return _Layout(scale, zero_float, qmin, qmax, lambda t: ctx.unbroadcast(t, scale))
    if scale_shape is None or len(scale_shape) != 1:
        raise ctx.fail(f"the scale '{scale.name}' is neither per tensor nor a 1-D per-axis scale of static size")
    axis = node.attributes.get_int("axis", 1) % rank
    along = ctx.ints([-1 if i == axis else 1 for i in range(rank)])
    others = [i for i in range(rank) if i != axis]
    return _Layout(ctx.op("Reshape", scale, along),
                   ctx.op("Reshape", zero_float, along) if zero_float is not None else None, qmin, qmax,
                   lambda t: ctx.reduce("ReduceSum", t, others, keepdims=False))


def _lsq_factor(ctx: GradContext, data: ir.Value, scale: ir.Value, qmax: int | None) -> ir.Value | None:
    """``g = 1 / sqrt(N * qmax)`` with ``N = size(data) / size(scale)``, or None when not asked for."""
    if not ctx.options.lsq_grad_scale:
        return None
    if qmax is None:
        raise ctx.fail(f"the gradient scale of LSQ needs the bounds of the integer type of '{data.name}'")
    data_shape, scale_shape = ctx.static_shape(data), ctx.static_shape(scale)
    if data_shape is not None and scale_shape is not None:
        per_scale = math.prod(data_shape) / math.prod(scale_shape)
        return ctx.scalar(1.0 / math.sqrt(per_scale * qmax), scale)
    per_scale = ctx.op("Div", ctx.count(data, scale), ctx.count(scale, scale))
    return ctx.op("Div", ctx.scalar(1.0, scale), ctx.op("Sqrt", ctx.op("Mul", per_scale, ctx.scalar(qmax, scale))))


def _scale_gradient(ctx: GradContext, layout: _Layout, data: ir.Value, elementwise: ir.Value) -> ir.Value:
    """``elementwise`` summed to the scale's shape, times ``g`` when asked for."""
    scale = ctx.node.inputs[1]
    total = layout.to_scale(elementwise)
    factor = _lsq_factor(ctx, data, scale, layout.qmax)
    return total if factor is None else ctx.op("Mul", total, factor)


def _quantized_type(node: ir.Node) -> ir.DataType:
    zero = node.inputs[2] if len(node.inputs) > 2 else None
    if zero is not None and zero.dtype is not None:
        return zero.dtype
    output_dtype = node.attributes.get_int("output_dtype", 0)
    return ir.DataType(output_dtype) if output_dtype else ir.DataType.UINT8


@gradient("QuantizeLinear", nondifferentiable=[2], integer_outputs=_is_fake_quant_code)
def quantize_linear(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, dq = node.inputs[0], output_grads[0]
    train_scale = ctx.needs(1) and ctx.options.quant_scales == "lsq"
    if not (ctx.needs(0) or train_scale):
        return [None, None]
    layout = _layout(ctx, x, _quantized_type(node))
    if layout.qmin is None or layout.qmax is None:
        raise ctx.fail(f"the quantized type {_quantized_type(node)} has no known bounds")
    v = ctx.op("Div", x, layout.scale)
    low, high = (ctx.scalar(bound, x) for bound in (layout.qmin, layout.qmax))
    if layout.zero is not None:
        low, high = ctx.op("Sub", low, layout.zero), ctx.op("Sub", high, layout.zero)
    inside = ctx.op("And", ctx.op("GreaterOrEqual", v, low), ctx.op("LessOrEqual", v, high))
    zero = ctx.scalar(0.0, x)
    dx = ds = None
    if ctx.needs(0):
        dx = ctx.op("Where", inside, ctx.op("Div", dq, layout.scale), zero)
    if train_scale:
        slope = ctx.op("Neg", ctx.op("Div", ctx.op("Mul", dq, v), layout.scale))
        ds = _scale_gradient(ctx, layout, x, ctx.op("Where", inside, slope, zero))
    return [dx, ds]


@gradient("DequantizeLinear", nondifferentiable=[2])
def dequantize_linear(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    q, dy = node.inputs[0], output_grads[0]
    train_scale = ctx.needs(1) and ctx.options.quant_scales == "lsq"
    if not (ctx.needs(0) or train_scale):
        return [None, None]
    layout = _layout(ctx, q, ctx.dtype(q))
    dq = ds = None
    if ctx.needs(0):
        dq = ctx.op("Mul", dy, layout.scale)
    if train_scale:
        codes = ctx.op("Cast", q, to=ctx.dtype(node.outputs[0]))
        if layout.zero is not None:
            codes = ctx.op("Sub", codes, layout.zero)
        ds = _scale_gradient(ctx, layout, q, ctx.op("Mul", dy, codes))
    return [dq, ds]
