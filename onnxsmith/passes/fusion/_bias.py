"""A constant bias added along the last axis, as the ``[H]`` vector that contrib ops take.

onnxruntime's ``BiasGelu``, ``FastGelu`` and ``SkipLayerNormalization`` take their bias as a 1-D
``[H]`` tensor added along the last axis of ``x`` (shape ``[..., H]``). ``Add(x, b)`` computes the
same when ``b`` is ``[H]`` or ``[1, ..., 1, H]`` of rank at most ``x``'s, and ``x``'s last
dimension is statically ``H`` (otherwise the Add could broadcast ``x`` itself).
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.passes.rewrite import Decline, Match, RewriterContext
from onnxsmith.passes.rewrite.constants import constant_shape

__all__ = ["last_axis_bias"]


def last_axis_bias(op: RewriterContext, m: Match, x_name: str = "x", bias_name: str = "bias") -> ir.Value | Decline:
    """The bias captured as ``bias_name`` as a ``[H]`` value (a new initializer if it needs a reshape).

    Declines when ``x``'s shape is unknown, ``x``'s last dimension is not the bias length, or the
    bias is not ``[H]``/``[1, ..., 1, H]`` of rank at most ``x``'s.
    """
    x, bias = m[x_name], m[bias_name]
    assert x is not None and bias is not None
    dims = constant_shape(bias)
    if x.shape is None:
        return Decline(f"the shape of '{x.name}' is unknown (run cleanup's shape inference first)")
    rank, hidden = x.shape.rank(), x.shape[-1] if x.shape.rank() else None
    if not dims or any(d != 1 for d in dims[:-1]) or len(dims) > rank:
        return Decline(f"bias '{bias.name}' has shape {list(dims)}, expected [H] or [1, ..., H] of rank <= {rank}")
    if not isinstance(hidden, int) or hidden != dims[-1]:
        return Decline(f"bias '{bias.name}' has {dims[-1]} elements but the last dimension of '{x.name}' is {hidden}")
    if len(dims) == 1:
        return bias
    array = m.const(bias_name)
    assert array is not None
    return op.initializer(array.reshape(dims[-1]), f"{bias.name}_vector")
