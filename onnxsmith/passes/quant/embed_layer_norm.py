"""``com.microsoft::EmbedLayerNormalization`` with its embedding tables stored as 8-bit integers.

The ``fuse`` pass turns a BERT embedding layer into one ``EmbedLayerNormalization`` (see
:mod:`onnxsmith.passes.fusion.embed_layer_norm`)::

    y[b, s] = LayerNorm(W[ids[b, s]] + P[s] (+ T[seg[b, s]])) * gamma + beta

whose word table ``W`` is most of a small transformer's bytes (MiniLM: 45 of 86 MiB). Two forms
quantize it; both dequantize only the rows a lookup reads:

- :func:`quantized_embed_layer_norm`: ``com.microsoft::QEmbedLayerNormalization``, the form of
  ``onnxruntime.quantization.quantize_dynamic``. Its contract (schema and CPU kernel, onnxruntime
  1.32) takes ``W``, ``P``, ``T``, ``gamma`` and ``beta`` all as one 8-bit type, each with a
  single scale and zero point: per tensor only, and ``gamma``/``beta`` cannot stay in float. The
  kernel dequantizes every element, so a zero point costs nothing: all five are asymmetric (a
  range widened to hold 0 uses every level, where symmetric would leave half of them to the side
  ``gamma`` never takes).
- :func:`unfused_embedding`: the lookups as the embedding-table rule quantizes lone Gathers
  (:mod:`~onnxsmith.passes.quant.embedding`: per row, ``GatherBlockQuantized`` on ``cpu``), the
  position rows read by ``Range(0, S)``, and the sum normalised by
  ``com.microsoft::SkipLayerNormalization`` with the ``[S, H]`` position rows as its skip (the
  kernel broadcasts it over the batch); ``gamma`` and ``beta`` stay float32::

      EmbedLayerNormalization(ids, seg, W, P, T, gamma, beta)
          -> SkipLayerNormalization(Gather'(W, ids) + Gather'(T, seg), Gather'(P, Range(0, S)), gamma, beta)

Which form, measured on all-MiniLM-L6-v2 (192 test sentences, cosine of the mean-pooled
embeddings to fp32 with only the embedding layer quantized): per tensor 0.99971 (``gamma``/``beta``
alone: 0.999993; the tables per tensor are the cost: the word table spans [-0.51, 1.05] around
a mean magnitude of 0.043), per row 0.999987, 20x closer; with every MatMul quantized too
(per channel), 0.99315 and 0.99350. The embedding layer alone (onnxruntime 1.32, 1 thread, batch
1, 53 tokens, a loaded machine) took 38 us in float, 53 us as ``QEmbedLayerNormalization`` and
125 us un-fused (eight small nodes): under 1.5% of the whole int8 model (6.9 ms), whose latency
did not tell the two apart. ``quantize-dynamic`` therefore un-fuses when its weights are per
channel (the default) and uses ``QEmbedLayerNormalization`` when they are per tensor, the scheme
that operator implements.

Error: per element of the (de)quantized tables ``|E - E'| <= s / 2`` (and of ``gamma``/``beta``
in the fused form); the normalisation then divides the sum's error by its standard deviation.

Declined when a table, ``gamma`` or ``beta`` is not a float32 constant, the node reads
``position_ids`` or has attributes other than ``epsilon``, or it writes ``embedding_sum``; the
un-fused form also when ``mask_index`` is read (the sum of the mask, which it does not compute).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.quant.embedding import MIN_ROW, Lowering
from onnxsmith.passes.quant.scales import quantize_weight
from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Opt, Replacement, RewriterContext, Rule, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S

__all__ = ["EmbedLayerNormForms", "embed_layer_norm_rule", "quantized_embed_layer_norm", "unfused_embedding"]

MS_DOMAIN = "com.microsoft"

_FLOAT = ir.DataType.FLOAT
_TABLES = ("word", "position", "segment")


@dataclass(frozen=True)
class EmbedLayerNormForms:
    """What the target runs, and the scheme chosen by the options.

    Attributes:
        per_row: Tables per row (un-fused form) rather than per tensor (``QEmbedLayerNormalization``).
        dtype: INT8 or UINT8.
        lower: Quantized lookup of one table, per row (used by the un-fused form).
        quantized_kernel: The target runs ``com.microsoft::QEmbedLayerNormalization``.
        skip_layer_norm: The target runs ``com.microsoft::SkipLayerNormalization``.
    """

    per_row: bool
    dtype: ir.DataType
    lower: Lowering
    quantized_kernel: bool
    skip_layer_norm: bool


def quantized_embed_layer_norm(op: RewriterContext, m: Match, dtype: ir.DataType) -> Replacement:
    """``QEmbedLayerNormalization`` of the matched node, every constant per tensor, asymmetric."""
    quantized: list[ir.Value | None] = []
    scales: list[ir.Value | None] = []
    zero_points: list[ir.Value | None] = []
    for name in (*_TABLES, "gamma", "beta"):
        value, array = m[name], m.const(name)
        if value is None or array is None:  # no segment table: its three inputs stay empty
            for inputs in (quantized, scales, zero_points):
                inputs.append(None)
            continue
        q, params = quantize_weight(array, dtype, symmetric=False)
        hint = value.name or name
        quantized.append(op.initializer(ir.tensor(q, dtype=dtype), f"{hint}_quantized"))
        scales.append(op.initializer(params.scale, f"{hint}_scale"))
        zero_points.append(op.initializer(ir.tensor(params.zero_point, dtype=dtype), f"{hint}_zero_point"))
    op.import_opset(MS_DOMAIN, 1)
    output, mask_index = op.QEmbedLayerNormalization(
        m["ids"], m["segment_ids"], *quantized, m["mask"], *scales, *zero_points, _domain=MS_DOMAIN, _outputs=2,
        epsilon=m.attr("embed", "epsilon"))
    return [output, mask_index]


def unfused_embedding(op: RewriterContext, m: Match, lower: Lowering) -> Replacement | Decline:
    """Per-row quantized lookups summed and normalised by ``SkipLayerNormalization`` (module docstring)."""
    ids = m["ids"]
    assert ids is not None
    one = op.initializer(np.array(1, np.int64), "one")
    length = op.Gather(op.Shape(ids), one)
    positions = op.Range(op.initializer(np.array(0, np.int64), "zero"), length, one)
    rows = {}
    for table, lookup in (("word", ids), ("position", positions), ("segment", m["segment_ids"])):
        value = m[table]
        if value is None:
            continue
        lowered = lower(op, value.name or table, m.const(table), lookup)
        if isinstance(lowered, Decline):
            return Decline(f"{table} table: {lowered.reason}")
        rows[table] = lowered
    summed = rows["word"] if "segment" not in rows else op.Add(rows["word"], rows["segment"])
    _type_like_output(m.node("embed").outputs[0], [rows["word"], rows.get("segment"), summed], rows["position"])
    op.import_opset(MS_DOMAIN, 1)
    output = op.SkipLayerNormalization(summed, rows["position"], m["gamma"], m["beta"], _domain=MS_DOMAIN,
                                       epsilon=m.attr("embed", "epsilon"))
    return [output, None]


def _type_like_output(output: ir.Value, batched: list[ir.Value | None], positions: ir.Value) -> None:
    """Types the new values from the replaced ``[B, S, H]`` output (shape inference does not know the
    contrib lookups): the word and segment rows and their sum as ``[B, S, H]``, the position rows as
    ``[S, H]``. Training reads these types (``build-gradients`` on a QAT model)."""
    if output.type is None or output.shape is None or len(output.shape) != 3:
        return
    for value in batched:
        if value is not None:
            value.type, value.shape = output.type, ir.Shape(list(output.shape.dims))
    positions.type, positions.shape = output.type, ir.Shape(list(output.shape.dims)[1:])


def _node_reason(m: Match, forms: EmbedLayerNormForms) -> str | None:
    """Why the matched node has no quantized form here (None when it has one)."""
    node = m.node("embed")
    extra = sorted(set(node.attributes) - {"epsilon"})
    if extra:
        return f"attribute {extra[0]} has no quantized form"
    if m["position_ids"] is not None:
        return "it reads position_ids"
    if len(node.outputs) > 2 and (node.outputs[2].uses() or node.outputs[2].is_graph_output()):
        return "its embedding_sum output is used"
    shared = sorted({user.name or user.op_type for table in _TABLES if m[table] is not None
                     for user, _ in m[table].uses() if user is not node})
    if shared:
        return f"a table is also used by {', '.join(shared)} (both copies would be kept)"
    if forms.per_row:
        word = m.const("word")
        assert word is not None
        if word.ndim != 2 or word.shape[1] < MIN_ROW:
            return f"the word table has shape {list(word.shape)}, rows shorter than {MIN_ROW} do not gain"
        if not forms.skip_layer_norm:
            return "the target has no com.microsoft::SkipLayerNormalization kernel for the un-fused form"
        mask_index = node.outputs[1] if len(node.outputs) > 1 else None
        if mask_index is not None and (mask_index.uses() or mask_index.is_graph_output()):
            return "its mask_index output is used (the un-fused per-row form does not compute it)"
    elif not forms.quantized_kernel:
        return "the target has no com.microsoft::QEmbedLayerNormalization kernel"
    return None


def embed_layer_norm_rule(name: str, why_not: Callable[[ir.Node], str | None], forms: EmbedLayerNormForms) -> Rule:
    """The rule quantizing ``EmbedLayerNormalization`` in the form ``forms`` picks.

    Args:
        name: The rule's name.
        why_not: Why a node is not selected by the pass's options (None when it is).
        forms: Scheme and target capabilities.
    """

    # EmbedLayerNormalization(ids, seg?, W, P, T?, gamma, beta, mask?, position_ids?)
    #     -> QEmbedLayerNormalization(ids, seg, W_q, P_q, T_q, gamma_q, beta_q, mask, scales..., zero points...)
    #      | SkipLayerNormalization(Gather'(W, ids) + Gather'(T, seg), Gather'(P, Range(0, S)), gamma, beta)
    @rule(name, Op("EmbedLayerNormalization", Var("ids"), Opt(Var("segment_ids")),
                   Const("word", shape=S.ANY, dtype=_FLOAT), Const("position", shape=S.ANY, dtype=_FLOAT),
                   Opt(Const("segment", shape=S.ANY, dtype=_FLOAT)), Const("gamma", shape=S.PER_CHANNEL, dtype=_FLOAT),
                   Const("beta", shape=S.PER_CHANNEL, dtype=_FLOAT), Opt(Var("mask")), Opt(Var("position_ids")),
                   _domain=MS_DOMAIN, _name="embed"))
    def quantize_embed_layer_norm(op: RewriterContext, m: Match) -> Replacement | Decline:
        """EmbedLayerNormalization -> 8-bit tables (QEmbedLayerNormalization per tensor, un-fused per row)"""
        reason = why_not(m.node("embed")) or _node_reason(m, forms)
        if reason is not None:
            return Decline(reason)
        if (m["segment"] is None) != (m["segment_ids"] is None):
            return Decline("segment_ids and segment_embedding are not both given")
        if forms.per_row:
            return unfused_embedding(op, m, forms.lower)
        return quantized_embed_layer_norm(op, m, forms.dtype)

    return quantize_embed_layer_norm
