"""Gradients of activations and normalized exponentials (``dy`` is the gradient of ``y``).

Where the derivative is a function of the output, the rule reads the output (``y``), so the
forward input need not stay alive and onnxruntime can still fuse the forward op.

- Relu: ``dx = dy * Cast(y > 0)`` (onnxruntime's CPU Where with a broadcast scalar runs ~10x
  slower than Greater, Cast and Mul together; only a non-finite ``dy`` where ``y <= 0`` differs
  from the Where form: it stays NaN instead of becoming 0); a gradient that a MaxPool reading
  only this Relu already masked at pooled resolution (``ctx.relu_masked``) passes through;  LeakyRelu(alpha): ``dx = Where(x > 0, dy, alpha * dy)``;
- Sigmoid: ``dx = dy * y * (1 - y)``;  Tanh: ``dx = dy * (1 - y * y)``;
- Erf: ``dx = dy * 2 / sqrt(pi) * exp(-x * x)``;
- Gelu (exact; also onnxruntime's ``com.microsoft.Gelu``): ``dx = dy * (Phi(x) + x * phi(x))`` with the normal cdf ``Phi`` and pdf ``phi``;
  Gelu (tanh): with ``u = c * (x + 0.044715 x^3)``, ``c = sqrt(2 / pi)``, ``t = tanh(u)``:
  ``dx = dy * (0.5 * (1 + t) + 0.5 * x * (1 - t^2) * c * (1 + 3 * 0.044715 x^2))``;
- HardSigmoid(alpha, beta): ``dx = alpha * dy`` where ``0 < y < 1``, else 0;
- HardSwish: ``dx = dy * (x / 3 + 0.5)`` for ``-3 <= x <= 3``, ``dy`` above, 0 below;
- Softplus: ``dx = dy * Sigmoid(x)``;
- Softmax(axis): ``dx = y * (dy - sum(dy * y, axis))``;
- LogSoftmax(axis): ``dx = dy - exp(y) * sum(dy, axis)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import onnx_ir as ir

from onnxsmith.passes.train.context import GradContext
from onnxsmith.passes.train.registry import gradient

Grads = Sequence[ir.Value | None]


@gradient("Relu")
def relu(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    y = node.outputs[0]
    if output_grads[0] in ctx.relu_masked:
        return [output_grads[0]]
    mask = ctx.op("Cast", ctx.op("Greater", y, ctx.scalar(0.0, y)), to=ctx.dtype(y))
    return [ctx.op("Mul", output_grads[0], mask)]


@gradient("LeakyRelu")
def leaky_relu(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, dy = node.inputs[0], output_grads[0]
    alpha = node.attributes.get_float("alpha", 0.01)
    positive = ctx.op("Greater", x, ctx.scalar(0.0, x))
    return [ctx.op("Where", positive, dy, ctx.op("Mul", dy, ctx.scalar(alpha, x)))]


@gradient("Sigmoid")
def sigmoid(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    y = node.outputs[0]
    slope = ctx.op("Mul", y, ctx.op("Sub", ctx.scalar(1.0, y), y))
    return [ctx.op("Mul", output_grads[0], slope)]


@gradient("Tanh")
def tanh(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    y = node.outputs[0]
    slope = ctx.op("Sub", ctx.scalar(1.0, y), ctx.op("Mul", y, y))
    return [ctx.op("Mul", output_grads[0], slope)]


@gradient("Erf")
def erf(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x = node.inputs[0]
    gauss = ctx.op("Exp", ctx.op("Neg", ctx.op("Mul", x, x)))
    slope = ctx.op("Mul", gauss, ctx.scalar(2.0 / math.sqrt(math.pi), x))
    return [ctx.op("Mul", output_grads[0], slope)]


@gradient("Gelu")
@gradient("Gelu", domain="com.microsoft")
def gelu(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    tanh = node.attributes.get_string("approximate", "none") == "tanh"
    return [ctx.op("Mul", output_grads[0], gelu_slope(ctx, node.inputs[0], tanh=tanh))]


def gelu_slope(ctx: GradContext, x: ir.Value, *, tanh: bool) -> ir.Value:
    """The derivative of GELU at ``x``: exact (erf) or of its tanh approximation."""
    half, one = ctx.scalar(0.5, x), ctx.scalar(1.0, x)
    x2 = ctx.op("Mul", x, x)
    if tanh:
        c, k = math.sqrt(2.0 / math.pi), 0.044715
        inner = ctx.op("Add", one, ctx.op("Mul", x2, ctx.scalar(k, x)))
        t = ctx.op("Tanh", ctx.op("Mul", ctx.op("Mul", x, inner), ctx.scalar(c, x)))
        du = ctx.op("Mul", ctx.op("Add", one, ctx.op("Mul", x2, ctx.scalar(3.0 * k, x))), ctx.scalar(c, x))
        sech2 = ctx.op("Sub", one, ctx.op("Mul", t, t))
        slope = ctx.op("Mul", ctx.op("Add", ctx.op("Add", one, t), ctx.op("Mul", ctx.op("Mul", x, sech2), du)), half)
    else:
        cdf = ctx.op("Mul", ctx.op("Add", one, ctx.op("Erf", ctx.op("Mul", x, ctx.scalar(math.sqrt(0.5), x)))), half)
        pdf = ctx.op("Mul", ctx.op("Exp", ctx.op("Mul", x2, ctx.scalar(-0.5, x))),
                     ctx.scalar(1.0 / math.sqrt(2.0 * math.pi), x))
        slope = ctx.op("Add", cdf, ctx.op("Mul", x, pdf))
    return slope


@gradient("HardSigmoid")
def hard_sigmoid(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    y = node.outputs[0]
    alpha = node.attributes.get_float("alpha", 0.2)
    inside = ctx.op("And", ctx.op("Greater", y, ctx.scalar(0.0, y)), ctx.op("Less", y, ctx.scalar(1.0, y)))
    return [ctx.op("Where", inside, ctx.op("Mul", output_grads[0], ctx.scalar(alpha, y)), ctx.scalar(0.0, y))]


@gradient("HardSwish")
def hard_swish(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    x, dy = node.inputs[0], output_grads[0]
    ramp = ctx.op("Add", ctx.op("Div", x, ctx.scalar(3.0, x)), ctx.scalar(0.5, x))
    slope = ctx.op("Where", ctx.op("Less", x, ctx.scalar(-3.0, x)), ctx.scalar(0.0, x),
                   ctx.op("Where", ctx.op("Greater", x, ctx.scalar(3.0, x)), ctx.scalar(1.0, x), ramp))
    return [ctx.op("Mul", dy, slope)]


@gradient("Softplus")
def softplus(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    return [ctx.op("Mul", output_grads[0], ctx.op("Sigmoid", node.inputs[0]))]


@gradient("Softmax")
def softmax(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    y, dy = node.outputs[0], output_grads[0]
    dot = ctx.reduce("ReduceSum", ctx.op("Mul", dy, y), [node.attributes.get_int("axis", -1)])
    return [ctx.op("Mul", y, ctx.op("Sub", dy, dot))]


@gradient("LogSoftmax")
def log_softmax(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    y, dy = node.outputs[0], output_grads[0]
    total = ctx.reduce("ReduceSum", dy, [node.attributes.get_int("axis", -1)])
    return [ctx.op("Sub", dy, ctx.op("Mul", ctx.op("Exp", y), total))]

