"""Family ``scale-into-conv``: a per-channel constant Mul after a Conv folded into its weights and bias.

Output channel ``c`` of ``Conv(x, W, b)`` is ``sum(x * W[c]) + b[c]`` (``W``'s axis 0 is the output
channel whatever the ``group``). Multiplying it by ``s[c]`` distributes over the sum::

    Mul(Conv(x, W, b?), s) = Conv(x, W', b')      W'[c] = W[c] * s[c]      b'[c] = b[c] * s[c]

(no bias stays no bias). ``s`` must be a constant that broadcasts per channel: aligned to the right,
``[1, C, 1, ...]`` or all ones, e.g. ``[C, 1, 1]``, ``[1, C, 1, 1]``, ``[1]`` or a scalar. A ``[C]``
vector aligns with the last spatial axis and is declined. The new constants are computed in float64
and stored in the weights' dtype as new initializers (the old ones may be shared); the result
differs from the original by float re-association only (scaling before instead of after the sum).

Declined when the weights or the bias are not constants, the dtype is not float32/float64, or
the Conv output is used elsewhere (the engine's shared-intermediate check).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.fusion._channels import not_per_channel
from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Opt, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S
from onnxsmith.passes.rewrite.constants import constant_shape

__all__ = ["FAMILY", "RULES"]

FAMILY = "scale-into-conv"

_FLOATS = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE})


# Mul(Conv(x, W, b?), s) -> Conv(x, W * s, b * s)      [W, b, s constant; s per output channel]
@rule("conv-mul-into-weights",
      Op("Mul", Op("Conv", Var("x"), Const("w", shape=S.ANY, dtype=_FLOATS), Opt(Const("b", shape=S.PER_CHANNEL)),
                   _name="conv"),
         Const("s", shape=S.ANY)))
def conv_mul_into_weights(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Mul(Conv(x, W, b?), s) -> Conv(x, W * s, b * s)"""
    w = m.const("w")
    assert w is not None and m["s"] is not None
    channels = w.shape[0]
    why = not_per_channel(constant_shape(m["s"]), w.ndim, channels)
    if why is not None:
        return Decline(f"s {why}")
    s = m.const("s")
    assert s is not None
    scale = np.broadcast_to(s.astype(np.float64).reshape(-1), (channels,))
    new_w = w.astype(np.float64) * scale.reshape((channels,) + (1,) * (w.ndim - 1))
    bias = m.const("b")
    conv = m.node("conv")
    base = conv.name or "conv"
    weight = op.initializer(new_w.astype(w.dtype), f"{base}_scaled_weight")
    new_b = None if bias is None else op.initializer((bias.astype(np.float64) * scale).astype(w.dtype),
                                                      f"{base}_scaled_bias")
    return op.Conv(m["x"], weight, new_b, **m.attributes(conv))


RULES = RuleSet([conv_mul_into_weights])
