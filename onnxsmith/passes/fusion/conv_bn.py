"""Family ``conv-bn``: an inference BatchNormalization folded into the preceding linear op's constants.

In inference form BatchNormalization computes, per channel ``c`` (axis 1)::

    y[:, c] = (x[:, c] - mean[c]) * f[c] + beta[c]          f = gamma / sqrt(var + eps)

which is a per-channel scale and shift. When ``x`` is the output of a linear op whose output
channel ``c`` is ``sum(u * W[c]) + b[c]``, the scale goes into the weights of channel ``c`` and
the shift into the bias, ``b'[c] = (b[c] - mean[c]) * f[c] + beta[c]`` (``b = 0`` when absent):

- ``Conv``: ``W`` is ``[C_out, C_in/group, k...]``; output channel ``c`` reads ``W[c]`` whatever the
  group, so ``W'[c] = W[c] * f[c]``.
- ``ConvTranspose``: ``W`` is ``[C_in, C_out/group, k...]``; output channel ``c = g * C_out/group + j``
  reads ``W[i, j]`` for the input channels ``i`` of group ``g`` only, so, viewing ``W`` as
  ``[group, C_in/group, C_out/group, k...]``, ``W'[g, :, j] = W[g, :, j] * f[g * C_out/group + j]``.
- ``Gemm(A, B, C)`` computes ``alpha * A' @ B' + beta * C`` (``B' = B.T`` when ``transB``); output
  column ``n`` is scaled through column ``n`` of ``B'`` and the new bias is
  ``C' = (beta * C - mean) * f + beta_bn``, with the new Gemm's ``beta = 1``. A bias ``C`` of any
  shape that broadcasts to ``[M, N]`` stays one (the result broadcasts ``C`` with ``[N]``).
- ``MatMul(x, W)`` with ``x`` 2-D and ``W`` a constant ``[K, N]``: BatchNormalization's axis 1 is
  then the feature axis ``N`` and the pair is ``Gemm(x, W * f, beta_bn - mean * f)``. On a higher
  rank output, axis 1 is not the feature axis and the rule declines.

The new constants are computed in float64 and stored in the op's dtype as new initializers (the
old ones may be shared). The results differ from the original only by float re-association
(scaling the weights before instead of after the sum).

The rules apply only when the weights, the bias and all four BatchNormalization parameters are
constants, the dtype is float32 or float64 (rounding folded float16 weights would cost more than
the pass's tolerance), the parameters are ``[C]`` vectors with ``C`` the output channels,
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
_PARAMS = ("gamma", "beta", "mean", "var")


def _batch_norm(producer: Op) -> Op:
    """BatchNormalization of ``producer``'s output with four constant ``[C]`` parameters."""
    return Op("BatchNormalization", producer, *(Const(name, shape=S.PER_CHANNEL) for name in _PARAMS), _name="bn")


def _scale_shift(m: Match, channels: int, dtype: np.dtype, bias: str | None = "b"
                 ) -> tuple[np.ndarray, np.ndarray] | Decline:
    """BatchNormalization's per-channel ``(f, beta - mean * f)`` in float64, or why it cannot fold.

    Args:
        m: The match, capturing the node ``bn`` and the constants ``gamma, beta, mean, var``.
        channels: The producer's number of output channels.
        dtype: The weights' dtype, which every parameter must share.
        bias: Capture name of the producer's ``[C]`` bias to check with the parameters (None: none).
    """
    bn = m.node("bn")
    if m.attr(bn, "training_mode", 0):
        return Decline("BatchNormalization is in training mode")
    if any(out.uses() or out.is_graph_output() for out in bn.outputs[1:]):
        return Decline("BatchNormalization's running statistics are used")
    arrays = {name: m.const(name) for name in _PARAMS}
    if bias is not None:
        arrays[bias] = m.const(bias)
    for name, array in arrays.items():
        if array is not None and array.shape != (channels,):
            return Decline(f"{name} has shape {list(array.shape)}, expected [{channels}] (output channels)")
        if array is not None and array.dtype != dtype:
            return Decline(f"{name} is {array.dtype}, the weights are {dtype}")
    eps = float(m.attr(bn, "epsilon", 1e-5))
    factor = arrays["gamma"].astype(np.float64) / np.sqrt(arrays["var"].astype(np.float64) + eps)
    return factor, arrays["beta"] - arrays["mean"].astype(np.float64) * factor


def _replace_bn(m: Match, value: ir.Value) -> Replacement:
    """``value`` for BatchNormalization's output; its unused running statistics go away."""
    return [value] + [None] * (len(m.node("bn").outputs) - 1)


def _refolded_conv(op: RewriterContext, m: Match, new_w: np.ndarray, factor: np.ndarray,
                   shift: np.ndarray) -> Replacement:
    """The matched ``conv`` (Conv or ConvTranspose) with weights ``new_w`` and bias ``b * factor + shift``."""
    w, bias, conv = m.const("w"), m.const("b"), m.node("conv")
    assert w is not None
    new_b = shift if bias is None else bias * factor + shift
    name = conv.name or "conv"
    fused = op.add_node(conv.op_type, m["x"], op.initializer(new_w.astype(w.dtype), f"{name}_bn_weight"),
                        op.initializer(new_b.astype(w.dtype), f"{name}_bn_bias"), **m.attributes(conv))
    return _replace_bn(m, fused)


# BatchNormalization(Conv(x, W, b?), gamma, beta, mean, var) -> Conv(x, W', b')
@rule("conv-bn", _batch_norm(Op("Conv", Var("x"), Const("w", shape=S.ANY, dtype=_FLOATS),
                                Opt(Const("b", shape=S.PER_CHANNEL)), _name="conv")))
def conv_bn(op: RewriterContext, m: Match) -> Replacement | Decline:
    """BatchNormalization(Conv(x, W, b?), gamma, beta, mean, var) -> Conv(x, W', b')"""
    w = m.const("w")
    assert w is not None
    channels = w.shape[0]
    folded = _scale_shift(m, channels, w.dtype)
    if isinstance(folded, Decline):
        return folded
    factor, shift = folded
    new_w = w.astype(np.float64) * factor.reshape((channels,) + (1,) * (w.ndim - 1))
    return _refolded_conv(op, m, new_w, factor, shift)


# BatchNormalization(ConvTranspose(x, W, b?), gamma, beta, mean, var) -> ConvTranspose(x, W', b')
@rule("conv-transpose-bn", _batch_norm(Op("ConvTranspose", Var("x"), Const("w", shape=S.ANY, dtype=_FLOATS),
                                          Opt(Const("b", shape=S.PER_CHANNEL)), _name="conv")))
def conv_transpose_bn(op: RewriterContext, m: Match) -> Replacement | Decline:
    """BatchNormalization(ConvTranspose(x, W, b?), gamma, beta, mean, var) -> ConvTranspose(x, W', b')"""
    w = m.const("w")
    assert w is not None
    group = int(m.attr("conv", "group", 1))
    if w.ndim < 2 or w.shape[0] % group:
        return Decline(f"W has shape {list(w.shape)}, whose first dimension is not a multiple of group {group}")
    per_group = w.shape[1]
    channels = per_group * group
    folded = _scale_shift(m, channels, w.dtype)
    if isinstance(folded, Decline):
        return folded
    factor, shift = folded
    grouped = w.astype(np.float64).reshape((group, w.shape[0] // group) + w.shape[1:])
    scale = factor.reshape((group, 1, per_group) + (1,) * (w.ndim - 2))
    return _refolded_conv(op, m, (grouped * scale).reshape(w.shape), factor, shift)


# BatchNormalization(Gemm(A, B, C?), gamma, beta, mean, var) -> Gemm(A, B', C', beta=1)
@rule("gemm-bn", _batch_norm(Op("Gemm", Var("a"), Const("w", shape=S.ANY, dtype=_FLOATS),
                                Opt(Const("c", shape=S.ANY)), _name="gemm")))
def gemm_bn(op: RewriterContext, m: Match) -> Replacement | Decline:
    """BatchNormalization(Gemm(A, B, C?), gamma, beta, mean, var) -> Gemm(A, B', C', beta=1)"""
    w = m.const("w")
    assert w is not None
    if w.ndim != 2:
        return Decline(f"B has shape {list(w.shape)}, not 2-D")
    trans_b = bool(m.attr("gemm", "transB", 0))
    channels = w.shape[0] if trans_b else w.shape[1]
    folded = _scale_shift(m, channels, w.dtype, bias=None)
    if isinstance(folded, Decline):
        return folded
    factor, shift = folded
    new_w = w.astype(np.float64) * (factor[:, None] if trans_b else factor[None, :])
    c = m.const("c")
    if c is not None and (c.ndim > 2 or c.dtype != w.dtype):
        return Decline(f"C is {c.dtype}{list(c.shape)}, expected {w.dtype} of rank at most 2")
    beta = float(m.attr("gemm", "beta", 1.0))
    new_c = shift if c is None else beta * c.astype(np.float64) * factor + shift
    gemm = m.node("gemm")
    base = gemm.name or "gemm"
    attributes = {**m.attributes(gemm), "beta": None}
    fused = op.Gemm(m["a"], op.initializer(new_w.astype(w.dtype), f"{base}_bn_weight"),
                    op.initializer(new_c.astype(w.dtype), f"{base}_bn_bias"), **attributes)
    return _replace_bn(m, fused)


# BatchNormalization(MatMul(x, W), gamma, beta, mean, var) -> Gemm(x, W * f, beta - mean * f)      [x 2-D]
@rule("matmul-bn", _batch_norm(Op("MatMul", Var("x"), Const("w", shape=S.ANY, dtype=_FLOATS), _name="mm")))
def matmul_bn(op: RewriterContext, m: Match) -> Replacement | Decline:
    """BatchNormalization(MatMul(x, W), gamma, beta, mean, var) -> Gemm(x, W * f, beta - mean * f)"""
    x, w = m["x"], m.const("w")
    assert x is not None and w is not None
    if x.shape is None or x.shape.rank() != 2:
        rank = "unknown" if x.shape is None else str(x.shape.rank())
        return Decline(f"x has rank {rank}: only on a 2-D MatMul is BatchNormalization's axis 1 the feature axis")
    if w.ndim != 2:
        return Decline(f"W has shape {list(w.shape)}, not 2-D")
    folded = _scale_shift(m, w.shape[1], w.dtype, bias=None)
    if isinstance(folded, Decline):
        return folded
    factor, shift = folded
    base = m.node("mm").name or "matmul"
    fused = op.Gemm(x, op.initializer((w.astype(np.float64) * factor).astype(w.dtype), f"{base}_bn_weight"),
                    op.initializer(shift.astype(w.dtype), f"{base}_bn_bias"))
    return _replace_bn(m, fused)


RULES = RuleSet([conv_bn, conv_transpose_bn, gemm_bn, matmul_bn])
