"""Small BERT-style self-attention blocks as the TorchScript and dynamo exporters write them.

hidden 8, 2 heads of size 4, dynamic ``[batch, seq]``. Variants: how the scores are scaled
(Mul or Div on the scores, or Mul on Q and K separately), how K is transposed (one Transpose or
two), the additive mask (none; ``(1 - m) * min``; ``Where`` over a GatherND lookup (dynamo); or
over a flattened Gather lookup (TorchScript)), and whether the Reshape shapes are constants or
computed from ``Shape`` at run time. The raw mask must hold 0/1 (the contract of
com.microsoft Attention's mask_index); random-input tests compute it as ``int64(s > 0)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxsmith.ir import GraphBuilder

HIDDEN, HEADS, HEAD = 8, 2, 4
LOWEST = float(np.finfo(np.float32).min)


@dataclass(frozen=True)
class Block:
    """Which exporter pattern a test block reproduces."""

    scale: str = "mul"           # "mul", "div" or "qk" (sqrt(sqrt(H)) on Q and K)
    mask: str | None = "classic"  # None, "classic", "gathernd", "flat"
    k_transposes: int = 1         # 1: perm [0,2,3,1]; 2: [0,2,1,3] then [0,1,3,2]
    dynamic_shapes: bool = False  # Reshape shapes from Shape -> Gather -> Concat
    cross: bool = False           # K and V from a second input (MultiHeadAttention)
    mask_from_scores: bool = False  # the 0/1 mask is computed as int64(s > 0) from a float input s


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _grid(b: GraphBuilder, size: ir.Value, axes: list[int]) -> ir.Value:
    """Range(0, size, 1) unsqueezed at ``axes``."""
    return b.Unsqueeze(b.Range(b.const(np.int64(0)), size, b.const(np.int64(1))), b.const(_i64(*axes)))


def _key_lookup(b: GraphBuilder, mask: ir.Value, form: str) -> ir.Value:
    """A bool ``[B, 1, 1, S]`` tensor equal to ``mask[b, j]``, built as the exporter builds it."""
    flag = b.Cast(mask, to=ir.DataType.BOOL)
    shape = b.Shape(mask)
    batch = b.Gather(shape, b.const(np.int64(0)), axis=0)
    seq = b.Gather(shape, b.const(np.int64(1)), axis=0)
    rows, cols = _grid(b, batch, [1, 2, 3]), _grid(b, seq, [0, 1, 2])
    if form == "gathernd":
        grid = b.Shape(b.Max(rows, cols))
        index = b.Concat(b.Unsqueeze(b.Expand(rows, grid), b.const(_i64(-1))),
                         b.Unsqueeze(b.Expand(cols, grid), b.const(_i64(-1))), axis=-1)
        return b.GatherND(flag, index, batch_dims=0)
    stride = b.Gather(b.Shape(flag), b.const(_i64(1)), axis=0)
    index = b.Add(cols, b.Mul(rows, stride))
    picked = b.Gather(b.Flatten(flag, axis=2), index, axis=0)
    return b.Reshape(b.Reshape(picked, b.const(_i64(-1))), b.Shape(index))


def _additive_mask(b: GraphBuilder, mask: ir.Value, form: str) -> ir.Value:
    if form == "classic":
        expanded = b.Cast(b.Unsqueeze(mask, b.const(_i64(1, 2))), to=ir.DataType.FLOAT)
        return b.Mul(b.Sub(b.const(np.float32(1.0)), expanded), b.const(np.float32(LOWEST)))
    seq = b.Gather(b.Shape(mask), b.const(np.int64(1)), axis=0)
    rows_ok = b.And(b.const(np.array(True)), b.GreaterOrEqual(_grid(b, seq, [0, 1, 3]), b.const(np.int64(0))))
    keep = b.And(rows_ok, _key_lookup(b, mask, form))
    return b.Where(keep, b.const(np.float32(0.0)), b.const(np.float32(LOWEST)))


def _split_shape(b: GraphBuilder, source: ir.Value, dynamic: bool, tail: list[int]) -> ir.Value:
    if not dynamic:
        return b.const(_i64(0, 0, *tail))
    shape = b.Shape(source)
    dims = [b.Unsqueeze(b.Gather(shape, b.const(np.int64(i)), axis=0), b.const(_i64(0))) for i in (0, 1)]
    return b.Concat(*dims, b.const(_i64(*tail)), axis=0)


def build(block: Block, seed: int = 0) -> ir.Model:
    """The attention block as a model ``(x, [y], [mask]) -> out``."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["batch", "seq", HIDDEN])
    kv = b.input("y", "float32", ["batch", "kv_seq", HIDDEN]) if block.cross else x
    mask_dims = ["batch", "kv_seq" if block.cross else "seq"]
    mask = None
    if block.mask and block.mask_from_scores:
        logits = b.input("mask", "float32", mask_dims)
        mask = b.Cast(b.Greater(logits, b.const(np.float32(0.0))), to=ir.DataType.INT64)
    elif block.mask:
        mask = b.input("mask", "int64", mask_dims)

    def heads(source: ir.Value, perm: list[int]) -> ir.Value:
        w = b.const(rng.normal(0, 0.5, (HIDDEN, HIDDEN)).astype(np.float32))
        bias = b.const(rng.normal(0, 0.5, HIDDEN).astype(np.float32))
        projected = b.Add(b.MatMul(source, w), bias)
        return b.Transpose(b.Reshape(projected, _split_shape(b, source, block.dynamic_shapes, [-1, HEAD])), perm=perm)

    q = heads(x, [0, 2, 1, 3])
    if block.k_transposes == 1:
        k = heads(kv, [0, 2, 3, 1])
    else:
        k = b.Transpose(heads(kv, [0, 2, 1, 3]), perm=[0, 1, 3, 2])
    v = heads(kv, [0, 2, 1, 3])
    if block.scale == "qk":
        root = np.float32(HEAD ** -0.25)
        scores = b.MatMul(b.Mul(q, b.const(root)), b.Mul(k, b.const(root)))
    elif block.scale == "div":
        scores = b.Div(b.MatMul(q, k), b.const(np.float32(np.sqrt(HEAD))))
    else:
        scores = b.Mul(b.MatMul(q, k), b.const(np.float32(1 / np.sqrt(HEAD))))
    if mask is not None:
        scores = b.Add(scores, _additive_mask(b, mask, block.mask))
    context = b.MatMul(b.Softmax(scores, axis=-1), v)
    merged = b.Transpose(context, perm=[0, 2, 1, 3])
    tail = [-1] if block.dynamic_shapes else [HIDDEN]
    b.output(b.Reshape(merged, _split_shape(b, x, block.dynamic_shapes, tail)), "out")
    return b.build()


def inputs(block: Block, batch: int = 3, seq: int = 5, seed: int = 1) -> dict[str, np.ndarray]:
    """Random hidden states and a right-padded 0/1 mask with at least one real token per row."""
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.normal(size=(batch, seq, HIDDEN)).astype(np.float32)}
    kv_seq = seq + 2 if block.cross else seq
    if block.cross:
        feeds["y"] = rng.normal(size=(batch, kv_seq, HIDDEN)).astype(np.float32)
    if block.mask:
        lengths = rng.integers(1, kv_seq + 1, size=batch)
        lengths[0] = kv_seq
        feeds["mask"] = (np.arange(kv_seq)[None, :] < lengths[:, None]).astype(np.int64)
    return feeds
