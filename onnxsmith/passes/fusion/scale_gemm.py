"""Family ``scale-into-gemm``: a constant Mul or Add after a Gemm, or Mul after a MatMul, folded into it.

``Gemm(A, B, C)`` computes ``Y = alpha * A' @ B' + beta * C`` of shape ``[M, N]`` (``B' = B.T``
when ``transB``). A constant ``s`` or ``k`` that is *per column* (rank at most 2, every dimension 1
except possibly the last, which is ``N``) or a single number broadcasts along the rows without
changing ``Y``'s shape, and::

    Mul(Gemm(A, B, C), s) = Gemm(A, B, C, alpha * s, beta * s)     [s a single number]
    Mul(Gemm(A, B, C), s) = Gemm(A, B * s, C * s)                  [s per column: column n of B' scaled]
    Add(Gemm(A, B, C), k) = Gemm(A, B, beta * C + k, beta = 1)      [k per column or a single number]

(no ``C`` stays no ``C`` under Mul, and is ``k`` under Add). ``MatMul(x, W)`` by a constant ``[K, N]``
matrix, at any rank of ``x``, likewise takes a per-column scale into its weights::

    Mul(MatMul(x, W), s) = MatMul(x, W * s)

when ``s``'s rank does not exceed the output's (else broadcasting would add axes). New constants
are computed in float64 and stored in the weights' dtype as new initializers; the results differ
from the original by float re-association only (scaling before instead of after the sum).

Declined when the constant is not per column or a single number, the weights (or ``C``) that a
per-column constant must go into are not constants, the dtype is not float32/float64, or the
Gemm/MatMul output is used elsewhere (the engine's shared-intermediate check).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Opt, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S
from onnxsmith.passes.rewrite.constants import constant_shape, non_constant_reason

__all__ = ["FAMILY", "RULES"]

FAMILY = "scale-into-gemm"

_FLOATS = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE})


def _not_per_column(k: tuple[int, ...], columns: int | None, max_rank: int = 2) -> str | None:
    """Why a constant of shape ``k`` does not act per column on a ``[..., N]`` output (``N = columns``)."""
    if len(k) > max_rank or any(d != 1 for d in k[:-1]) or (k and k[-1] not in (1, columns)):
        n = "N" if columns is None else columns
        return f"has shape {list(k)}, expected ones except possibly a last dimension of {n} (at most rank {max_rank})"
    return None


def _gemm_columns(m: Match) -> int | None:
    """``N``, the Gemm's output columns, from ``B``'s static shape (None if unknown)."""
    w = m["w"]
    assert w is not None
    if w.shape is None or w.shape.rank() != 2:
        return None
    dim = w.shape[0] if m.attr("gemm", "transB", 0) else w.shape[1]
    return dim if isinstance(dim, int) else None


def _constant(m: Match, name: str, what: str) -> np.ndarray | Decline:
    """The data of captured value ``name``, or why it is not a constant of a supported dtype."""
    value = m[name]
    assert value is not None
    why = non_constant_reason(value)
    if why is not None:
        return Decline(f"{what} {why}")
    array = m.const(name)
    assert array is not None
    if array.dtype not in (np.float32, np.float64):
        return Decline(f"{what} is {array.dtype}, not float32/float64")
    return array


def _gemm() -> Op:
    return Op("Gemm", Var("a"), Var("w"), Opt(Var("c")), _name="gemm")


# Mul(Gemm(A, B, C?), s) -> Gemm(A, B, C?, alpha * s, beta * s)  or  Gemm(A, B * s, C? * s)
@rule("gemm-mul-into-weights", Op("Mul", _gemm(), Const("s", shape=S.ANY, dtype=_FLOATS)))
def gemm_mul_into_weights(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Mul(Gemm(A, B, C?), s) -> Gemm(A, B * s, C? * s)  (alpha * s, beta * s for a single number)"""
    assert m["s"] is not None
    shape = constant_shape(m["s"])
    columns = _gemm_columns(m)
    why = _not_per_column(shape, columns)
    if why is not None:
        return Decline(f"s {why}")
    s = m.const("s")
    assert s is not None
    attributes = m.attributes("gemm")
    if s.size == 1:
        factor = float(s.reshape(()))
        attributes["alpha"] = float(m.attr("gemm", "alpha", 1.0)) * factor
        attributes["beta"] = float(m.attr("gemm", "beta", 1.0)) * factor
        return op.Gemm(m["a"], m["w"], m["c"], **attributes)
    w = _constant(m, "w", "B")
    if isinstance(w, Decline):
        return w
    column = s.astype(np.float64).reshape(-1)
    new_w = w * (column[:, None] if m.attr("gemm", "transB", 0) else column[None, :])
    c = None if m["c"] is None else _constant(m, "c", "C")
    if isinstance(c, Decline):
        return c
    base = m.node("gemm").name or "gemm"
    weight = op.initializer(new_w.astype(w.dtype), f"{base}_scaled_weight")
    new_c = None if c is None else op.initializer((c * s.astype(np.float64)).astype(c.dtype), f"{base}_scaled_bias")
    return op.Gemm(m["a"], weight, new_c, **attributes)


# Add(Gemm(A, B, C?), k) -> Gemm(A, B, beta * C + k, beta = 1)
@rule("gemm-add-into-bias", Op("Add", _gemm(), Const("k", shape=S.ANY, dtype=_FLOATS)))
def gemm_add_into_bias(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Add(Gemm(A, B, C?), k) -> Gemm(A, B, beta * C + k, beta = 1)"""
    assert m["k"] is not None
    shape = constant_shape(m["k"])
    columns = _gemm_columns(m)
    if columns is None and shape and shape[-1] != 1:
        return Decline("the Gemm's number of output columns is unknown (B's shape is not static)")
    why = _not_per_column(shape, columns)
    if why is not None:
        return Decline(f"k {why}")
    k = m.const("k")
    assert k is not None
    bias = k.astype(np.float64)
    if m["c"] is not None:
        c = _constant(m, "c", "C")
        if isinstance(c, Decline):
            return c
        bias = float(m.attr("gemm", "beta", 1.0)) * c.astype(np.float64) + bias
    attributes = {**m.attributes("gemm"), "beta": None}
    base = m.node("gemm").name or "gemm"
    return op.Gemm(m["a"], m["w"], op.initializer(bias.astype(k.dtype), f"{base}_bias"), **attributes)


# Mul(MatMul(x, W), s) -> MatMul(x, W * s)      [W a constant [K, N], s per column]
@rule("matmul-mul-into-weights",
      Op("Mul", Op("MatMul", Var("x"), Const("w", shape=S.ANY, dtype=_FLOATS), _name="mm"),
         Const("s", shape=S.ANY, dtype=_FLOATS)))
def matmul_mul_into_weights(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Mul(MatMul(x, W), s) -> MatMul(x, W * s)"""
    x, w, s = m["x"], m.const("w"), m.const("s")
    assert x is not None and w is not None and s is not None
    if w.ndim != 2:
        return Decline(f"W has shape {list(w.shape)}, not 2-D")
    why = _not_per_column(s.shape, w.shape[1], max_rank=s.ndim)
    if why is not None:
        return Decline(f"s {why}")
    out_rank = None if x.shape is None else 1 if x.shape.rank() == 1 else max(x.shape.rank(), 2)
    if s.ndim > 1 and (out_rank is None or s.ndim > out_rank):
        return Decline(f"s has rank {s.ndim}, which may exceed the MatMul output's rank "
                       f"({'unknown' if out_rank is None else out_rank}) and broadcast it")
    column = np.broadcast_to(s.astype(np.float64).reshape(-1), (w.shape[1],))
    base = m.node("mm").name or "matmul"
    return op.MatMul(x, op.initializer((w * column).astype(w.dtype), f"{base}_scaled_weight"))


RULES = RuleSet([gemm_mul_into_weights, gemm_add_into_bias, matmul_mul_into_weights])
