"""Gradients of onnxruntime's com.microsoft Attention and MultiHeadAttention, in the forms ``fuse`` writes.

Both compute, with ``N`` heads of size ``H`` (``hidden = N * H``), projections ``q [B, Sq, hidden]``
and ``k``, ``v [B, Sk, hidden]`` split into heads ``Q [B, N, Sq, H]``, ``K``, ``V [B, N, Sk, H]``::

    P = Softmax(scale * Q @ K^T + A)        A[b, :, :, j] = mask_filter_value where mask[b, j] == 0
    y = merge_heads(P @ V)

Attention projects ``x [B, S, D]`` with packed weights: ``[q | k | v] = x @ W + b`` (``W [D, 3 *
hidden]``); MultiHeadAttention reads ``q``, ``k``, ``v`` and adds the packed ``bias`` itself. The
rules recompute ``Q``, ``K``, ``V`` and ``P`` (the kernels keep none of them) and, with ``dC`` the
gradient of ``P @ V`` split into heads::

    dV = P^T @ dC        dP = dC @ V^T        dS = scale * P * (dP - rowsum(dP * P))
    dQ = dS @ K          dK = dS^T @ Q

then merge the heads back; Attention adds ``dW = x^T @ [dq | dk | dv]``, ``db`` (their sum over
batch and sequence) and ``dx = [dq | dk | dv] @ W^T``. ``scale`` defaults to ``1 / sqrt(H)`` and
``mask_filter_value`` to -10000. Supported: a raw ``[B, Sk]`` key mask or none, no past state or
attention bias, ``unidirectional=0``, equal Q/K/V hidden sizes; anything else is refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import onnx_ir as ir

from onnxsmith.ir.queries import dims_of
from onnxsmith.passes.train.context import GradContext
from onnxsmith.passes.train.registry import MS_DOMAIN, gradient

Grads = Sequence[ir.Value | None]

_MASK_FILTER = -10000.0  # the contrib ops' default mask_filter_value


@gradient("Attention", domain=MS_DOMAIN, nondifferentiable=[3, 4, 5, 6])
def attention(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    _refuse_unsupported(ctx, node, extra_inputs=range(4, len(node.inputs)), extra_attrs=("qkv_hidden_sizes",))
    x, w, bias = node.inputs[:3]
    mask = node.inputs[3] if len(node.inputs) > 3 else None
    width = _static_last(ctx, w, "weights")
    if width % 3:
        raise ctx.fail(f"packed weights of width {width} do not split into Q, K and V")
    hidden = width // 3
    qkv = ctx.op("MatMul", x, w)
    if bias is not None:
        qkv = ctx.op("Add", qkv, bias)
    q, k, v = ctx.op("Split", qkv, ctx.ints([hidden] * 3), axis=-1, outputs=3)
    dq, dk, dv = _core(ctx, node, q, k, v, mask, hidden, output_grads[0])
    dqkv = ctx.op("Concat", dq, dk, dv, axis=-1)  # [B, S, 3 * hidden]
    grads: list[ir.Value | None] = [None] * len(node.inputs)
    if ctx.needs(0):
        grads[0] = ctx.op("MatMul", dqkv, ctx.op("Transpose", w, perm=[1, 0]))
    if ctx.needs(1):
        rows = ctx.op("Reshape", x, ctx.ints([-1, _static_last(ctx, x, "input")]))
        grads[1] = ctx.op("Gemm", rows, ctx.op("Reshape", dqkv, ctx.ints([-1, width])), transA=1)
    if bias is not None and ctx.needs(2):
        grads[2] = ctx.reduce("ReduceSum", dqkv, [0, 1], keepdims=False)
    return grads


@gradient("MultiHeadAttention", domain=MS_DOMAIN, nondifferentiable=[4, 5, 6, 7, 8, 9])
def multi_head_attention(ctx: GradContext, node: ir.Node, output_grads: Grads) -> Grads:
    if len(node.outputs) > 1 and any(g is not None for g in output_grads[1:]):
        raise ctx.fail("the loss depends on its present key/value outputs")
    _refuse_unsupported(ctx, node, extra_inputs=range(5, len(node.inputs)), extra_attrs=())
    query, key, value, bias, mask = (list(node.inputs) + [None] * 5)[:5]
    if key is None or value is None or any(ctx.rank(t) != 3 for t in (query, key, value)):
        raise ctx.fail("only separate 3-D query, key and value ([B, S, hidden]) are supported")
    hidden = _static_last(ctx, query, "query")
    q, k, v = query, key, value
    if bias is not None:
        bq, bk, bv = ctx.op("Split", bias, ctx.ints([hidden] * 3), axis=0, outputs=3)
        q, k, v = ctx.op("Add", query, bq), ctx.op("Add", key, bk), ctx.op("Add", value, bv)
    dq, dk, dv = _core(ctx, node, q, k, v, mask, hidden, output_grads[0])
    grads: list[ir.Value | None] = [None] * len(node.inputs)
    for i, d in enumerate((dq, dk, dv)):
        if ctx.needs(i):
            grads[i] = d
    if bias is not None and ctx.needs(3):
        sums = [ctx.reduce("ReduceSum", d, [0, 1], keepdims=False) for d in (dq, dk, dv)]
        grads[3] = ctx.op("Concat", *sums, axis=0)
    return grads


def _core(ctx: GradContext, node: ir.Node, q: ir.Value, k: ir.Value, v: ir.Value, mask: ir.Value | None,
          hidden: int, dy: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
    """``dq``, ``dk``, ``dv`` (``[B, S, hidden]``) of the scaled dot-product attention (module docstring)."""
    like = node.outputs[0]
    heads = node.attributes.get_int("num_heads", 0)
    if heads < 1 or hidden % heads:
        raise ctx.fail(f"num_heads={heads} does not divide the hidden size {hidden}")
    size = hidden // heads
    scale = node.attributes.get_float("scale", 0.0) or 1.0 / math.sqrt(size)

    def split(t: ir.Value) -> ir.Value:  # [B, S, hidden] -> [B, N, S, H]
        return ctx.op("Transpose", ctx.op("Reshape", t, ctx.ints([0, 0, heads, size])), perm=[0, 2, 1, 3])

    def merge(t: ir.Value) -> ir.Value:  # [B, N, S, H] -> [B, S, hidden]
        return ctx.op("Reshape", ctx.op("Transpose", t, perm=[0, 2, 1, 3]), ctx.ints([0, 0, hidden]))

    def swap(t: ir.Value) -> ir.Value:
        return ctx.op("Transpose", t, perm=[0, 1, 3, 2])

    qh, kh, vh = split(q), split(k), split(v)
    scores = ctx.op("Mul", ctx.op("MatMul", qh, swap(kh)), ctx.scalar(scale, like))
    if mask is not None:
        if ctx.rank(mask) != 2:
            raise ctx.fail("only a raw [batch, key sequence] mask is supported")
        filler = node.attributes.get_float("mask_filter_value", _MASK_FILTER)
        masked = ctx.op("Equal", mask, ctx.const(0, dtype=ctx.dtype(mask)))
        additive = ctx.op("Where", masked, ctx.scalar(filler, like), ctx.scalar(0.0, like))
        scores = ctx.op("Add", scores, ctx.unsqueeze(additive, [1, 2]))
    p = ctx.op("Softmax", scores, axis=-1)
    dc = split(dy)
    dv = ctx.op("MatMul", swap(p), dc)
    dp = ctx.op("MatMul", dc, swap(vh))
    row = ctx.op("ReduceSum", ctx.op("Mul", dp, p), ctx.ints([-1]), keepdims=1)
    ds = ctx.op("Mul", ctx.op("Mul", p, ctx.op("Sub", dp, row)), ctx.scalar(scale, like))
    dq = ctx.op("MatMul", ds, kh)
    dk = ctx.op("MatMul", swap(ds), qh)
    return merge(dq), merge(dk), merge(dv)


def _refuse_unsupported(ctx: GradContext, node: ir.Node, *, extra_inputs: range, extra_attrs: tuple[str, ...]) -> None:
    """Refuses past state, attention bias and the like, causal masking and unequal head sizes."""
    present = [i for i in extra_inputs if i < len(node.inputs) and node.inputs[i] is not None]
    if present:
        raise ctx.fail(f"inputs {present} (past state, attention bias, ...) are not supported")
    if node.attributes.get_int("unidirectional", 0):
        raise ctx.fail("causal attention (unidirectional=1) is not supported")
    for name in extra_attrs:
        if name in node.attributes:
            raise ctx.fail(f"attribute '{name}' is not supported")


def _static_last(ctx: GradContext, value: ir.Value, what: str) -> int:
    """The static size of ``value``'s last axis."""
    last = (dims_of(value) or [None])[-1]
    if not isinstance(last, int):
        raise ctx.fail(f"the {what} '{value.name}' needs a static last dimension")
    return last
