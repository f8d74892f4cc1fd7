"""Family ``transpose``: consecutive Transposes composed, and Transposes folded into Gemm's flags.

``Transpose(x, perm=p)`` gives ``y.shape[i] = x.shape[p[i]]`` (``p`` defaults to the reversed axes),
so two in a row compose::

    Transpose(Transpose(x, p1), p2) = Transpose(x, q)      q[i] = p1[p2[i]]

and when ``q`` is the identity the pair is just ``x`` (a graph output keeps its name through an
Identity, as the engine does for every existing value standing in for an output). Two Transposes
without ``perm`` cancel even when the rank is unknown.

Gemm computes ``alpha * op(A) @ op(B) + beta * C`` with ``op(B) = B.T`` when ``transB = 1``. A
2-D Transpose is either the identity or ``.T``, so ``Gemm(A, Transpose(W))`` is
``Gemm(A, W, transB = 1 - transB)`` (and likewise for ``A`` with ``transA``). ``W`` itself is
passed on untouched, so a shared initializer is never modified. Both rewrites only move data, so
they are exact.

Declined when a Transpose has no ``perm`` and the rank of its input is unknown, or when a
Transpose output is used elsewhere (the engine's shared-intermediate check).
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.passes.rewrite import Decline, Match, Op, Opt, Replacement, RewriterContext, RuleSet, Var, rule

__all__ = ["FAMILY", "RULES"]

FAMILY = "transpose"


def _perm(m: Match, node: str, value: ir.Value | None) -> list[int] | None:
    """The permutation of Transpose ``node`` reading ``value`` (None if its rank is unknown)."""
    perm = m.attr(node, "perm")
    if perm is not None:
        return [int(p) for p in perm]
    if value is None or value.shape is None:
        return None
    return list(range(value.shape.rank()))[::-1]


# Transpose(Transpose(x, p1), p2) -> Transpose(x, p1[p2])      (or x when that is the identity)
@rule("transpose-transpose",
      Op("Transpose", Op("Transpose", Var("x"), _name="inner"), _name="outer"))
def transpose_transpose(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Transpose(Transpose(x, p1), p2) -> Transpose(x, p1[p2])"""
    inner = _perm(m, "inner", m["x"])
    perm = m.attr("outer", "perm")
    if inner is None and perm is None:
        return m["x"]  # reversing the axes twice, whatever their number
    if inner is None:
        return Decline("the inner Transpose has no perm and the rank of its input is unknown")
    outer = list(range(len(inner)))[::-1] if perm is None else [int(p) for p in perm]
    composed = [inner[p] for p in outer]
    if composed == list(range(len(composed))):
        return m["x"]
    return op.Transpose(m["x"], perm=composed)


def _is_swap(perm: list[int] | None) -> bool | Decline:
    """Whether a 2-D Transpose swaps its axes (False: identity; Decline: rank unknown)."""
    if perm is None:
        return Decline("the Transpose has no perm and the rank of its input is unknown")
    return perm == [1, 0]


# Gemm(A, Transpose(W), C?) -> Gemm(A, W, C?, transB = 1 - transB)
@rule("transpose-into-gemm-b",
      Op("Gemm", Var("a"), Op("Transpose", Var("w"), _name="t"), Opt(Var("c")), _name="gemm"))
def transpose_into_gemm_b(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Gemm(A, Transpose(W), C?) -> Gemm(A, W, C?, transB = 1 - transB)"""
    return _gemm_without_transpose(op, m, "transB", m["a"], m["w"])


# Gemm(Transpose(A), B, C?) -> Gemm(A, B, C?, transA = 1 - transA)
@rule("transpose-into-gemm-a",
      Op("Gemm", Op("Transpose", Var("a"), _name="t"), Var("b"), Opt(Var("c")), _name="gemm"))
def transpose_into_gemm_a(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Gemm(Transpose(A), B, C?) -> Gemm(A, B, C?, transA = 1 - transA)"""
    return _gemm_without_transpose(op, m, "transA", m["a"], m["b"])


def _gemm_without_transpose(op: RewriterContext, m: Match, flag: str, a: ir.Value, b: ir.Value
                            ) -> Replacement | Decline:
    """The matched Gemm reading the Transpose's input directly, with ``flag`` flipped if it swapped axes."""
    transposed = a if flag == "transA" else b
    swap = _is_swap(_perm(m, "t", transposed))
    if isinstance(swap, Decline):
        return swap
    attributes = m.attributes("gemm")
    attributes[flag] = int(m.attr("gemm", flag, 0)) ^ int(swap)
    return op.Gemm(a, b, m["c"], **attributes)


RULES = RuleSet([transpose_transpose, transpose_into_gemm_b, transpose_into_gemm_a])
