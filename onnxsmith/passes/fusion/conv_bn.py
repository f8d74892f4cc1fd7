"""Family ``conv-bn``: an inference BatchNormalization after a Conv folded into the Conv's constants.

In inference form BatchNormalization computes, per channel ``c`` (axis 1)::

    y[:, c] = (x[:, c] - mean[c]) * gamma[c] / sqrt(var[c] + eps) + beta[c]

With ``f = gamma / sqrt(var + eps)`` and ``x = Conv(u, W, b)``, where output channel ``c`` is
``sum(u * W[c]) + b[c]`` (whatever the ``group``, ``W``'s axis 0 is the output channel), this is
again a Conv::

    W'[c] = W[c] * f[c]                      b'[c] = (b[c] - mean[c]) * f[c] + beta[c]

(``b = 0`` when the Conv has no bias). The new constants are computed in float64 and stored in the
Conv's dtype as new initializers (the old ones may be shared). The results differ from the
original only by float re-association (scaling the weights before instead of after the sum).

The rule applies only when the weights, the bias and all four BatchNormalization parameters are
constants, the dtype is float32 or float64 (rounding folded float16 weights would cost more than
the pass's tolerance), the parameters are ``[C]`` vectors with ``C`` the Conv's output channels,
BatchNormalization is not in training mode, and its running-statistics outputs are unused.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Opt, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S

__all__ = ["FAMILY", "RULES"]

FAMILY = "conv-bn"

_FLOATS = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE})


# BatchNormalization(Conv(x, W, b?), gamma, beta, mean, var) -> Conv(x, W', b')
@rule("conv-bn",
      Op("BatchNormalization",
         Op("Conv", Var("x"), Const("w", shape=S.ANY, dtype=_FLOATS), Opt(Const("b", shape=S.PER_CHANNEL)),
            _name="conv"),
         Const("gamma", shape=S.PER_CHANNEL), Const("beta", shape=S.PER_CHANNEL),
         Const("mean", shape=S.PER_CHANNEL), Const("var", shape=S.PER_CHANNEL), _name="bn"))
def conv_bn(op: RewriterContext, m: Match) -> Replacement | Decline:
    """BatchNormalization(Conv(x, W, b?), gamma, beta, mean, var) -> Conv(x, W', b')"""
    bn = m.node("bn")
    if m.attr(bn, "training_mode", 0):
        return Decline("BatchNormalization is in training mode")
    if any(out.uses() or out.is_graph_output() for out in bn.outputs[1:]):
        return Decline("BatchNormalization's running statistics are used")
    w = m.const("w")
    assert w is not None
    channels = w.shape[0]
    params = {name: m.const(name) for name in ("gamma", "beta", "mean", "var")}
    bias = m.const("b")
    for name, array in {**params, "b": bias}.items():
        if array is not None and array.shape != (channels,):
            return Decline(f"{name} has shape {list(array.shape)}, expected [{channels}] (output channels)")
        if array is not None and array.dtype != w.dtype:
            return Decline(f"{name} is {array.dtype}, the weights are {w.dtype}")
    eps = float(m.attr(bn, "epsilon", 1e-5))
    factor = params["gamma"].astype(np.float64) / np.sqrt(params["var"].astype(np.float64) + eps)
    new_w = w.astype(np.float64) * factor.reshape((channels,) + (1,) * (w.ndim - 1))
    old_b = np.zeros(channels) if bias is None else bias.astype(np.float64)
    new_b = (old_b - params["mean"]) * factor + params["beta"]
    conv = m.node("conv")
    fused = op.Conv(m["x"], op.initializer(new_w.astype(w.dtype), f"{conv.name or 'conv'}_bn_weight"),
                    op.initializer(new_b.astype(w.dtype), f"{conv.name or 'conv'}_bn_bias"),
                    **m.attributes(conv))
    return [fused] + [None] * (len(bn.outputs) - 1)


RULES = RuleSet([conv_bn])
