"""Family ``conv-bias``: a per-channel constant added after a Conv becomes (part of) its bias.

``Conv(x, W, b)`` adds ``b[c]`` to every element of output channel ``c`` (axis 1 of an output of
rank ``r``, the rank of ``W``). ``Add(Conv(x, W, b?), k)`` with a constant ``k`` that, aligned to
the right as broadcasting does, has shape ``[1, C, 1, ...]`` or ``[1, 1, 1, ...]`` (rank at most
``r``) adds ``k[c]`` per channel as well, so it equals::

    Conv(x, W, b')      b' = b + k.reshape(-1)     (b = 0 when the Conv has no bias;
                                                     a one-element k is broadcast to [C])

The sum is computed in float64 and stored in the Conv's dtype as a new initializer; the result
differs from the original by float re-association only. Note that a ``[C]`` vector is *not*
per-channel for a Conv output: broadcasting aligns it with the last spatial axis, so it is
declined (unless ``C`` is 1). The dtype must be float32 or float64; the bias and ``k`` must be
constants, the weights need not be (they are kept as they are, but their first dimension, the
number of output channels, must be known).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.fusion._channels import not_per_channel
from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Opt, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S
from onnxsmith.passes.rewrite.constants import constant_shape

__all__ = ["FAMILY", "RULES"]

FAMILY = "conv-bias"

_FLOATS = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE})


# Add(Conv(x, W, b?), k) -> Conv(x, W, b + k)      [k constant, per output channel]
@rule("conv-add-to-bias",
      Op("Add", Op("Conv", Var("x", dtype=_FLOATS), Var("w"), Opt(Const("b", shape=S.PER_CHANNEL)), _name="conv"),
         Const("k", shape=S.ANY)))
def conv_add_to_bias(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Add(Conv(x, W, b?), k) -> Conv(x, W, b + k)"""
    w = m["w"]
    assert w is not None and m["k"] is not None
    if w.shape is None or not isinstance(w.shape[0], int):
        return Decline("the number of output channels (W's first dimension) is unknown")
    rank, channels = w.shape.rank(), int(w.shape.dims[0])
    why = not_per_channel(constant_shape(m["k"]), rank, channels)
    if why is not None:
        return Decline(f"k {why}")
    k = m.const("k")
    bias = m.const("b")
    assert k is not None
    old_b = np.zeros(channels) if bias is None else bias.astype(np.float64)
    new_b = old_b + np.broadcast_to(k.astype(np.float64).reshape(-1), (channels,))
    conv = m.node("conv")
    return op.Conv(m["x"], w, op.initializer(new_b.astype(k.dtype), f"{conv.name or 'conv'}_bias"),
                   **m.attributes(conv))


RULES = RuleSet([conv_add_to_bias])
