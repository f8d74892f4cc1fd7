"""Gradients of MatMul and Gemm (``dy`` is the gradient of the product ``y``).

MatMul ``y = a @ b`` (numpy semantics, batch dimensions broadcast):
``da = dy @ b^T`` and ``db = a^T @ dy``, each summed over the batch axes its operand was
broadcast along; a 1-D operand is treated as a row (``a``) or column (``b``) vector. The common
linear layer, ``a`` of shape ``[..., K]`` times a 2-D weight ``[K, N]``, is kept 2-D (rows
flattened) and written with Gemm's transpose flags, which onnxruntime runs fastest:
``db = Gemm(a2, dy2, transA=1)``, ``da = Gemm(dy2, b, transB=1)``.

Gemm ``y = alpha * A' @ B' + beta * C`` with ``A' = A^T if transA`` (and likewise for ``B``):

- ``dA = alpha * dy @ B'^T``, i.e. ``Gemm(dy, B, transB=1-transB)``, or transposed when ``transA``:
  ``Gemm(B, dy, transA=transB, transB=1)``;
- ``dB = alpha * A'^T @ dy``, i.e. ``Gemm(A, dy, transA=1-transA)``, or transposed when ``transB``:
  ``Gemm(dy, A, transA=1, transB=transA)``;
- ``dC = beta * dy`` summed over the axes ``C`` was broadcast along.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from onnxsmith.passes.train.context import Dim, GradContext, dims_of
from onnxsmith.passes.train.registry import gradient

Grads = Sequence[ir.Value | None]


@gradient("MatMul")
def matmul(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    a, b = node.inputs
    b_dims = dims_of(b)
    if ctx.rank(a) >= 2 and b_dims is not None and len(b_dims) == 2 and all(isinstance(d, int) for d in b_dims):
        return _linear(ctx, a, b, output_grads[0], b_dims)  # type: ignore[arg-type]
    return _batched(ctx, node, output_grads[0])


def _linear(ctx: GradContext, a: ir.Value, b: ir.Value, dy: ir.Value, b_dims: list[int]) -> Grads:
    """``[..., K] @ [K, N]`` with flattened rows and Gemm."""
    k, n = b_dims
    flat = ctx.rank(a) > 2
    a2 = ctx.op("Reshape", a, ctx.ints([-1, k])) if flat else a
    dy2 = ctx.op("Reshape", dy, ctx.ints([-1, n])) if flat else dy
    da = db = None
    if ctx.needs(0):
        da = ctx.op("Gemm", dy2, b, transB=1)
        da = ctx.reshape_like(da, a) if flat else da
    if ctx.needs(1):
        db = ctx.op("Gemm", a2, dy2, transA=1)
    return [da, db]


def _batched(ctx: GradContext, node: ir.Node, dy: ir.Value) -> Grads:
    """General numpy-style MatMul with broadcast batch axes and 1-D operands."""
    a, b = node.inputs
    ra, rb = ctx.rank(a), ctx.rank(b)
    a_dims, b_dims, y_dims = dims_of(a), dims_of(b), dims_of(node.outputs[0])
    assert a_dims is not None and b_dims is not None and y_dims is not None  # ranks checked above
    inserted = ([-2] if ra == 1 else []) + ([-1] if rb == 1 else [])
    a_m = ctx.unsqueeze(a, [0]) if ra == 1 else a
    b_m = ctx.unsqueeze(b, [1]) if rb == 1 else b
    dy_m = ctx.unsqueeze(dy, inserted) if inserted else dy
    batch: list[Dim] = y_dims[: len(y_dims) - (2 - len(inserted))]
    m: Dim = a_dims[-2] if ra >= 2 else 1
    k: Dim = a_dims[-1]
    n: Dim = b_dims[-1] if rb >= 2 else 1
    da = db = None
    if ctx.needs(0):
        da = ctx.op("MatMul", dy_m, _swap_last(ctx, b_m, max(rb, 2)))
        if ra == 1:
            da, da_dims = ctx.squeeze(da, [-2]), [*batch, k]
        else:
            da_dims = [*batch, m, k]
        da = ctx.unbroadcast(da, a, da_dims)
    if ctx.needs(1):
        db = ctx.op("MatMul", _swap_last(ctx, a_m, max(ra, 2)), dy_m)
        if rb == 1:
            db, db_dims = ctx.squeeze(db, [-1]), [*batch, k]
        else:
            db_dims = [*batch, k, n]
        db = ctx.unbroadcast(db, b, db_dims)
    return [da, db]


def _swap_last(ctx: GradContext, x: ir.Value, rank: int) -> ir.Value:
    return ctx.op("Transpose", x, perm=[*range(rank - 2), rank - 1, rank - 2])


@gradient("Gemm")
def gemm(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    a, b = node.inputs[:2]
    dy = output_grads[0]
    alpha = node.attributes.get_float("alpha", 1.0)
    beta = node.attributes.get_float("beta", 1.0)
    trans_a = node.attributes.get_int("transA", 0)
    trans_b = node.attributes.get_int("transB", 0)
    scale = alpha if alpha != 1.0 else None
    grads: list[ir.Value | None] = [None, None]
    if ctx.needs(0):
        grads[0] = (ctx.op("Gemm", b, dy, alpha=scale, transA=trans_b, transB=1) if trans_a
                    else ctx.op("Gemm", dy, b, alpha=scale, transB=1 - trans_b))
    if ctx.needs(1):
        grads[1] = (ctx.op("Gemm", dy, a, alpha=scale, transA=1, transB=trans_a) if trans_b
                    else ctx.op("Gemm", a, dy, alpha=scale, transA=1 - trans_a))
    if len(node.inputs) > 2:
        c = node.inputs[2]
        dc = None
        if ctx.needs(2):
            dc = ctx.unbroadcast(dy if beta == 1.0 else ctx.op("Mul", dy, ctx.scalar(beta, c)), c)
        grads.append(dc)
    return grads
