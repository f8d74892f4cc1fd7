"""``quantize-dynamic``: MatMul, Gemm and Attention with constant weights as dynamic int8; embeddings as int8.

Weights are quantized once, here; activations are quantized at run time, per tensor, from their
own range (onnxruntime's ``DynamicQuantizeLinear``: uint8, asymmetric, range widened to hold 0)::

    s_a = (max(A, 0) - min(A, 0)) / 255      A' = (saturate(round(A / s_a) + zp_a) - zp_a) * s_a
    W'  = (round(W / s_w) - zp_w) * s_w      s_w per output column (per-channel, the default) or per tensor
    Y'  = A' @ W'                            computed as (A_q - zp_a) @ (W_q - zp_w) in int32, times s_a * s_w

Forms, by target:

- targets that run ``com.microsoft::DynamicQuantizeMatMul`` (``cpu``): one node,
  ``DynamicQuantizeMatMul(A, W_q, s_w, zp_w, bias?)``; a following ``Add`` of a ``[N]`` constant
  is folded into its ``bias`` input (rule ``dynamic-matmul-bias``, which also folds into such
  nodes already in the model). Where several read one activation (a transformer's query, key
  and value projections), it is quantized once: one ``DynamicQuantizeLinear`` feeding a
  ``com.microsoft::MatMulIntegerToFloat`` per reader
  (:mod:`~onnxsmith.passes.quant.shared_activation`; the standard form below shares its
  ``DynamicQuantizeLinear`` the same way). ``com.microsoft::Attention`` becomes ``QAttention`` with its
  input through ``DynamicQuantizeLinear`` and its merged QKV weight quantized per column, as
  ``onnxruntime.quantization`` does.
- other targets: standard ONNX, ``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(s_a * s_w)``
  (plus ``Add`` for a Gemm bias), the pattern onnxruntime itself fuses into its integer kernels.

Embedding tables (``Gather`` of rows of a constant float table) are stored as int8 too, as
``onnxruntime.quantization.quantize_dynamic`` does (there: per tensor, uint8, dequantized after the
Gather), which is where most of a small transformer's bytes are (MiniLM: 45 of 86 MiB). Here they
are per row when ``per-channel`` (every row in its own range), per tensor otherwise, in the
weight scheme of the options; only the gathered rows are dequantized
(:mod:`~onnxsmith.passes.quant.embedding`): per row as ``com.microsoft::GatherBlockQuantized`` on
targets that run it (``cpu``), else ``Gather -> Cast -> Mul`` by the gathered row scales; per
tensor as ``Gather -> DequantizeLinear``. Their error is ``|E - E'| <= s_row / 2`` elementwise.
A fused ``com.microsoft::EmbedLayerNormalization`` (from ``fuse``) gets its tables quantized too
(:mod:`~onnxsmith.passes.quant.embed_layer_norm`): per row, it is un-fused into those lookups and
a ``SkipLayerNormalization`` (measured closer to fp32, within the latency noise); per tensor it becomes
``com.microsoft::QEmbedLayerNormalization`` (tables, gamma and beta asymmetric 8-bit per tensor,
the operator's contract and onnxruntime's form).

Only float32 weights are quantized (the ops' inputs share one type, so ``A`` is float32 too; its
type need not be inferred). Gemm is handled when ``transA = 0``: ``alpha`` is folded into the
weight before quantization, ``transB`` into its layout, and ``beta * C`` becomes the bias when
``C`` is absent or a constant scalar / ``[N]`` / ``[1, N]``.

Error bound: ``|A - A'| <= s_a / 2`` and ``|W - W'| <= s_w / 2`` elementwise (round to nearest;
``A``'s range is its own, so nothing is clipped), hence for every output element
(:func:`~onnxsmith.passes.quant.scales.matmul_error_bound`)::

    |Y - Y'| <= s_a / 2 * sum_k |W[k, n]| + sum_k (|A[m, k]| + s_a / 2) * s_w[n] / 2

that is at most ``max|A| / 255 * sum_k |W[k, n]| + max_k |W[k, n]| / 254 * sum_k (|A[m, k]| + s_a / 2)``
for narrow symmetric int8 weights per column. The bound depends on the data, so ``tolerance`` (used
by ``--verify numeric`` on random unit-scale inputs) is a typical-case figure; the tests check the
bound itself.

Conv is not quantized dynamically: onnxruntime runs it as ``ConvInteger`` plus a separate
``DynamicQuantizeLinear`` and float rescaling, which measured 3.2x slower than float on magika
(../shared/QUANT-NOTES.md); static quantization (``qdq``) is the way to quantize convolutions.
Options: ``op-types`` (MatMul, Gemm, Attention, Gather, EmbedLayerNormalization), ``per-channel``
(default true: the largest fidelity lever measured, at no speed cost), ``weight-dtype`` (int8 or
uint8), ``symmetric`` (default true; int8 weights are then narrow, in [-127, 127]), ``include`` /
``exclude`` (regular expressions on node names or op types) and ``explain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx_ir as ir

from onnxsmith.codegen.targets import target_of
from onnxsmith.passes.base import Pass, PassContext, PassResult, Tolerance
from onnxsmith.passes.quant._apply import apply_traced
from onnxsmith.passes.quant._select import NodeSelection
from onnxsmith.passes.quant.embed_layer_norm import EmbedLayerNormForms, embed_layer_norm_rule
from onnxsmith.passes.quant.embedding import (
    TableScheme,
    gather_block_quantized,
    gather_dequantize,
    gather_rule,
    gather_scaled_rows,
)
from onnxsmith.passes.quant.scales import QuantParams, quantize_weight
from onnxsmith.passes.quant.shared_activation import share_activation_quantization
from onnxsmith.passes.registry import register_pass
from onnxsmith.passes.rewrite import (
    Const,
    Decline,
    Match,
    Op,
    Opt,
    Replacement,
    RewriterContext,
    RuleSet,
    Var,
    rule,
)
from onnxsmith.passes.rewrite import ShapePolicy as S

__all__ = ["DynamicOptions", "QuantizeDynamic"]

MS_DOMAIN = "com.microsoft"
SUPPORTED_OPS = ("MatMul", "Gemm", "Attention", "Gather", "EmbedLayerNormalization")

_FLOAT = ir.DataType.FLOAT
_WEIGHT_DTYPES = {"int8": ir.DataType.INT8, "uint8": ir.DataType.UINT8}
#: Attention attributes QAttention does not have: such nodes stay in float.
_ATTENTION_ONLY = ("qkv_hidden_sizes", "rotary_embedding_dim")


@dataclass
class DynamicOptions:
    """Options of ``quantize-dynamic`` (see the module docstring)."""

    op_types: list[str] = field(default_factory=lambda: list(SUPPORTED_OPS))
    per_channel: bool = True
    weight_dtype: Literal["int8", "uint8"] = "int8"
    symmetric: bool = True
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    explain: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.op_types) - set(SUPPORTED_OPS))
        if "Conv" in unknown:
            raise ValueError("Conv is not quantized dynamically (onnxruntime runs it as ConvInteger, slower "
                             "than float); quantize it statically with qdq")
        if unknown:
            raise ValueError(f"op-types {', '.join(unknown)} cannot be quantized dynamically "
                             f"(supported: {', '.join(SUPPORTED_OPS)})")


@dataclass(frozen=True)
class _Plan:
    """What the rules need to know: selection, weight scheme and the forms the target runs."""

    selection: NodeSelection
    per_channel: bool
    weight_dtype: ir.DataType
    symmetric: bool
    fused_matmul: bool  # com.microsoft::DynamicQuantizeMatMul
    attention: bool  # com.microsoft::QAttention
    gather_blocks: bool  # com.microsoft::GatherBlockQuantized
    quantized_embed: bool  # com.microsoft::QEmbedLayerNormalization
    skip_layer_norm: bool  # com.microsoft::SkipLayerNormalization

    def weight(self, w: np.ndarray) -> tuple[np.ndarray, QuantParams]:
        """``W [K, N]`` quantized per column (axis 1) or per tensor."""
        narrow = self.symmetric and self.weight_dtype == ir.DataType.INT8
        return quantize_weight(w, self.weight_dtype, axis=1 if self.per_channel else None,
                               symmetric=self.symmetric, narrow=narrow)

    @property
    def table(self) -> TableScheme:
        """Embedding tables: per row (per-channel) or per tensor, in the weight scheme."""
        narrow = self.symmetric and self.weight_dtype == ir.DataType.INT8
        return TableScheme(self.weight_dtype, "row" if self.per_channel else "tensor", self.symmetric, narrow=narrow)

    def lower_gather(self, op: RewriterContext, name: str, table: np.ndarray, ids: ir.Value) -> ir.Value | Decline:
        """The form of a quantized embedding lookup for this target (see the module docstring)."""
        if not self.per_channel:
            return gather_dequantize(op, name, table, ids, self.table)
        if self.gather_blocks:
            return gather_block_quantized(op, name, table, ids, self.table)
        return gather_scaled_rows(op, name, table, ids, self.table)

    @property
    def embed_layer_norm(self) -> EmbedLayerNormForms:
        """EmbedLayerNormalization: un-fused per row (per-channel), QEmbedLayerNormalization per tensor."""
        return EmbedLayerNormForms(per_row=self.per_channel, dtype=self.weight_dtype, lower=self.lower_gather,
                                   quantized_kernel=self.quantized_embed, skip_layer_norm=self.skip_layer_norm)


def _weight_inputs(op: RewriterContext, name: str, q: np.ndarray, params: QuantParams) -> tuple[ir.Value, ...]:
    """Initializers for the quantized weight, its scale and its zero point."""
    return (op.initializer(q, f"{name}_quantized"), op.initializer(params.scale, f"{name}_scale"),
            op.initializer(params.zero_point, f"{name}_zero_point"))


def _integer_matmul(op: RewriterContext, a: ir.Value, weight: tuple[ir.Value, ...]) -> ir.Value:
    """``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(s_a * s_w)`` (standard ONNX)."""
    w_q, w_scale, w_zero = weight
    a_q, a_scale, a_zero = op.DynamicQuantizeLinear(a, _outputs=3)
    accumulated = op.MatMulInteger(a_q, w_q, a_zero, w_zero)
    return op.Mul(op.Cast(accumulated, to=_FLOAT), op.Mul(a_scale, w_scale))


def _standard_opset_reason(m: Match) -> Decline | None:
    opset = m.opset("")
    if opset is not None and opset < 11:
        return Decline(f"DynamicQuantizeLinear needs opset 11, the model imports {opset}")
    return None


def _common_reason(plan: _Plan, m: Match, node: str) -> Decline | None:
    """Selection and the standard form's opset, shared by MatMul and Gemm."""
    reason = plan.selection.why_not(m.node(node))
    if reason is not None:
        return Decline(reason)
    return None if plan.fused_matmul else _standard_opset_reason(m)


def _gemm_bias(c: np.ndarray | None, beta: float, columns: int) -> np.ndarray | Decline | None:
    """``beta * C`` as a ``[N]`` vector, None without C, Decline when C varies along rows."""
    if c is None:
        return None
    if c.size not in (1, columns) or c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
        return Decline(f"C has shape {list(c.shape)}: only a scalar, [N] or [1, N] bias folds")
    return np.broadcast_to(c.reshape(-1) * np.float32(beta), (columns,)).astype(np.float32)


def _rules(plan: _Plan) -> RuleSet:
    """The rules of one run of ``quantize-dynamic`` for ``plan``."""

    # MatMul(A, W) -> DynamicQuantizeMatMul(A, W_q, s_w, zp_w)  |  DQL -> MatMulInteger -> Cast -> Mul
    @rule("dynamic-matmul", Op("MatMul", Var("a"), Const("w", shape=S.ANY, dtype=_FLOAT), _name="mm"))
    def dynamic_matmul(op: RewriterContext, m: Match) -> Replacement | Decline:
        """MatMul(A, W) -> dynamic int8 MatMul"""
        reason = _common_reason(plan, m, "mm")
        if reason is not None:
            return reason
        w = m.const("w")
        assert w is not None
        if w.ndim != 2:
            return Decline(f"weight has shape {list(w.shape)}, expected [K, N]")
        a_shape = m["a"].shape
        if a_shape is not None and a_shape.rank() < 2:
            return Decline("A is 1-D")
        q, params = plan.weight(w)
        weight = _weight_inputs(op, m["w"].name or "weight", q, params)
        if plan.fused_matmul:
            op.import_opset(MS_DOMAIN, 1)
            return op.DynamicQuantizeMatMul(m["a"], *weight, _domain=MS_DOMAIN)
        return _integer_matmul(op, m["a"], weight)

    # Gemm(A, W, C?) -> DynamicQuantizeMatMul(A, alpha * W(^T)_q, s_w, zp_w, beta * C)  |  standard form + Add
    @rule("dynamic-gemm", Op("Gemm", Var("a"), Const("w", shape=S.ANY, dtype=_FLOAT),
                             Opt(Const("c", shape=S.ANY, dtype=_FLOAT)), _name="gemm"))
    def dynamic_gemm(op: RewriterContext, m: Match) -> Replacement | Decline:
        """Gemm(A, W, C?) -> dynamic int8 MatMul with bias"""
        reason = _common_reason(plan, m, "gemm")
        if reason is not None:
            return reason
        if m.attr("gemm", "transA", 0):
            return Decline("transA is set")
        w = m.const("w")
        assert w is not None
        if m.attr("gemm", "transB", 0):
            w = w.T
        w = w * np.float32(m.attr("gemm", "alpha", 1.0))
        bias = _gemm_bias(m.const("c"), float(m.attr("gemm", "beta", 1.0)), w.shape[1])
        if isinstance(bias, Decline):
            return bias
        q, params = plan.weight(w)
        name = m["w"].name or "weight"
        weight = _weight_inputs(op, name, q, params)
        bias_value = None if bias is None else op.initializer(bias, f"{name}_bias")
        if plan.fused_matmul:
            op.import_opset(MS_DOMAIN, 1)
            return op.DynamicQuantizeMatMul(m["a"], *weight, bias_value, _domain=MS_DOMAIN)
        product = _integer_matmul(op, m["a"], weight)
        return product if bias_value is None else op.Add(product, bias_value)

    # Add(DynamicQuantizeMatMul(A, W_q, s_w, zp_w), b) -> DynamicQuantizeMatMul(A, W_q, s_w, zp_w, b)
    @rule("dynamic-matmul-bias",
          Op("Add", Op("DynamicQuantizeMatMul", Var("a"), Var("w"), Var("scale"), Opt(Var("zero")),
                       _domain=MS_DOMAIN, _name="dq"),
             Const("b", shape=S.PER_CHANNEL, dtype=_FLOAT), _name="add"))
    def dynamic_matmul_bias(op: RewriterContext, m: Match) -> Replacement | Decline:
        """Add(DynamicQuantizeMatMul(A, W_q, s, zp), b) -> DynamicQuantizeMatMul(A, W_q, s, zp, b)"""
        w_shape = m["w"].shape
        b_shape = m["b"].shape
        assert b_shape is not None
        if w_shape is None or w_shape.rank() != 2 or w_shape[1] != b_shape[0]:
            return Decline(f"bias [{b_shape[0]}] does not match the weight's columns")
        return op.DynamicQuantizeMatMul(m["a"], m["w"], m["scale"], m["zero"], m["b"], _domain=MS_DOMAIN)

    # Attention(X, W, b?, mask?, past?) -> QAttention(DQL(X), W_q, b, s_x, s_w, mask, zp_x, zp_w, past)
    @rule("dynamic-attention",
          Op("Attention", Var("x"), Const("w", shape=S.ANY, dtype=_FLOAT),
             Opt(Const("b", shape=S.PER_CHANNEL, dtype=_FLOAT)), Opt(Var("mask")), Opt(Var("past")),
             _domain=MS_DOMAIN, _name="attention"))
    def dynamic_attention(op: RewriterContext, m: Match) -> Replacement | Decline:
        """Attention(X, W, b?, mask?, past?) -> QAttention(DynamicQuantizeLinear(X), W_q, ...)"""
        reason = plan.selection.why_not(m.node("attention"))
        if reason is not None:
            return Decline(reason)
        if not plan.attention:
            return Decline("the target has no com.microsoft::QAttention kernel")
        attributes = m.attributes("attention")
        present = [name for name in _ATTENTION_ONLY if name in attributes]
        if present:
            return Decline(f"QAttention has no attribute {present[0]}")
        w = m.const("w")
        assert w is not None
        if w.ndim != 2:
            return Decline(f"weight has shape {list(w.shape)}, expected [hidden, 3 * hidden]")
        bias = m["b"] if m["b"] is not None else op.initializer(np.zeros(w.shape[1], np.float32), "qkv_bias")
        q, params = plan.weight(w)
        w_q, w_scale, w_zero = _weight_inputs(op, m["w"].name or "qkv_weight", q, params)
        x_q, x_scale, x_zero = op.DynamicQuantizeLinear(m["x"], _outputs=3)
        outputs = len(m.root.outputs)
        op.import_opset(MS_DOMAIN, 1)
        result = op.QAttention(x_q, w_q, bias, x_scale, w_scale, m["mask"], x_zero, w_zero, m["past"],
                               _domain=MS_DOMAIN, _outputs=outputs, **attributes)
        return result if outputs == 1 else list(result)

    rules = [dynamic_matmul, dynamic_gemm, dynamic_attention,
             gather_rule("dynamic-gather", plan.selection, plan.lower_gather),
             embed_layer_norm_rule("dynamic-embed-layer-norm", plan.selection.why_not, plan.embed_layer_norm)]
    if plan.fused_matmul:
        rules.insert(2, dynamic_matmul_bias)
    return RuleSet(rules)


@register_pass
class QuantizeDynamic(Pass):
    """Quantize MatMul/Gemm/Attention weights and embedding tables to int8, activations at run time (no calibration)."""

    name = "quantize-dynamic"
    Options = DynamicOptions
    tolerance = Tolerance(rtol=0.05, atol=0.1)
    idempotent = True

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        options: DynamicOptions = self.options
        target = target_of(ctx)
        plan = _Plan(
            selection=NodeSelection.from_options(self.name, options.op_types, options.include, options.exclude),
            per_channel=options.per_channel,
            weight_dtype=_WEIGHT_DTYPES[options.weight_dtype],
            symmetric=options.symmetric,
            fused_matmul=target.supports_op(MS_DOMAIN, "DynamicQuantizeMatMul", 1),
            attention=target.supports_op(MS_DOMAIN, "QAttention", 1),
            gather_blocks=target.supports_op(MS_DOMAIN, "GatherBlockQuantized", 1),
            quantized_embed=target.supports_op(MS_DOMAIN, "QEmbedLayerNormalization", 1),
            skip_layer_norm=target.supports_op(MS_DOMAIN, "SkipLayerNormalization", 1),
        )
        result = apply_traced(self.name, model, _rules(plan), ctx, explain=options.explain)
        shared = share_activation_quantization(
            model, fused=plan.fused_matmul and target.supports_op(MS_DOMAIN, "MatMulIntegerToFloat", 1)
            and model.opset_imports.get("", 0) >= 11)
        if shared:
            result.stats["shared-activation-quantization"] = shared
        return PassResult(result.modified or shared > 0, result.stats)
