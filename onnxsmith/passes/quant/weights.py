"""``quantize-weights``: weight-only int4/int8 for MatMul weights and embedding tables (blockwise, RTN).

The weight ``W [K, N]`` is cut into blocks of ``block-size`` rows along ``K`` (the reduction axis)
and each block of each column gets its own scale (and zero point when asymmetric); every element
is rounded to the nearest level (RTN, no calibration data)::

    W'[k, n] = (q[k, n] - zp[b, n]) * s[b, n]        b = k // block_size
    symmetric:   s = max|W_block| / ((2^bits - 1) / 2)   zero point at the midpoint (8 or 128; 0 signed)
    asymmetric:  s = (max(W_block, 0) - min(W_block, 0)) / (2^bits - 1)

Activations stay in float: ``Y' = A @ W'``. Forms, by target:

- targets that run ``com.microsoft::MatMulNBits`` (``cpu``): one ``MatMulNBits`` node with the
  packed layout of :mod:`~onnxsmith.passes.quant._nbits`; symmetric weights use its default
  zero point and carry none. ``accuracy-level`` is passed through (0 keeps ``A`` in float; 4 lets
  onnxruntime quantize ``A`` to int8 per block, faster and outside the bound below).
- other targets: ``DequantizeLinear`` (opset 21: int4/uint4/int8/uint8, ``axis=0``,
  ``block_size``) feeding the original MatMul; below opset 21 weights stay in float (the
  ``explain`` trace says so).

Embedding tables (``Gather`` of rows of a constant float table ``E [V, H]``) are cut into blocks
of ``block-size`` elements along each row and stored the same way; only the gathered rows are
dequantized (:mod:`~onnxsmith.passes.quant.embedding`, which measures the forms):

- ``cpu``: ``com.microsoft::GatherBlockQuantized`` on uint8 (8 bits, or 4-bit pairs);
- other targets: ``Gather`` of the integer table, then a blockwise ``DequantizeLinear`` (opset
  21) by the gathered scales; 8 bits only, as onnxruntime's Gather has no 4-bit kernel (a 4-bit
  table would have to be dequantized whole on every run).

A fused ``com.microsoft::EmbedLayerNormalization`` (from ``fuse``) gets its tables stored the same
way: it is un-fused into those lookups and a ``SkipLayerNormalization``
(:mod:`~onnxsmith.passes.quant.embed_layer_norm`), ``gamma`` and ``beta`` staying in float.
Their error is ``|E - E'| <= s / 2`` elementwise. ``op-types=Gather,EmbedLayerNormalization``
quantizes only tables: the ``qdq`` pipelines end with ``quantize-weights{bits=8;op-types=...}``
(``annotate-quant`` plans activations and leaves tables in float).

Error bound: inside a block ``|W - W'| <= s / 2`` (round to nearest; the block's own range, so
nothing is clipped), hence for every output element
(:func:`~onnxsmith.passes.quant.scales.matmul_error_bound` with ``A`` exact)::

    |Y - Y'| <= sum_k |A[m, k]| * s[k // block_size, n] / 2

at most ``max|W_block| / 15`` per product term for symmetric int4 (``/ 255`` for int8). The bound
depends on the data, so ``tolerance`` (used by ``--verify numeric`` on random unit-scale inputs)
is a typical-case figure for int4; the tests check the bound itself.

Options: ``op-types`` (MatMul, Gather, EmbedLayerNormalization; all by default), ``bits`` (4 or 8), ``block-size`` (a
power of two >= 16, as MatMulNBits and GatherBlockQuantized require; default 32), ``symmetric``
(default true), ``accuracy-level`` (0-4), ``include`` / ``exclude`` (regular expressions on node
names or op types) and ``explain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxsmith.codegen.targets import target_of
from onnxsmith.passes.base import Pass, PassContext, PassResult, Tolerance
from onnxsmith.passes.quant._apply import apply_traced
from onnxsmith.passes.quant._nbits import pack_blocks, pack_zero_points
from onnxsmith.passes.quant._select import NodeSelection
from onnxsmith.passes.quant.embed_layer_norm import EmbedLayerNormForms, embed_layer_norm_rule
from onnxsmith.passes.quant.embedding import (
    BLOCKWISE_OPSET,
    TableScheme,
    gather_block_quantized,
    gather_dequantize,
    gather_rule,
)
from onnxsmith.passes.quant.scales import quantize_blockwise
from onnxsmith.passes.registry import register_pass
from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S

__all__ = ["QuantizeWeights", "WeightOptions"]

MS_DOMAIN = "com.microsoft"
SUPPORTED_OPS = ("MatMul", "Gather", "EmbedLayerNormalization")

_FLOAT = ir.DataType.FLOAT
_T = ir.DataType
#: bits -> integer type of MatMulNBits (unsigned; symmetric weights sit around the midpoint).
_NBITS_DTYPES = {4: _T.UINT4, 8: _T.UINT8}
#: (bits, symmetric) -> integer type of DequantizeLinear (signed with zero point 0 when symmetric).
_DQ_DTYPES = {(4, True): _T.INT4, (4, False): _T.UINT4, (8, True): _T.INT8, (8, False): _T.UINT8}


@dataclass
class WeightOptions:
    """Options of ``quantize-weights`` (see the module docstring)."""

    op_types: list[str] = field(default_factory=lambda: list(SUPPORTED_OPS))
    bits: int = 4
    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int = 0
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    explain: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.op_types) - set(SUPPORTED_OPS))
        if unknown:
            raise ValueError(f"op-types {', '.join(unknown)} cannot be quantized weight-only "
                             f"(supported: {', '.join(SUPPORTED_OPS)})")
        if self.bits not in (4, 8):
            raise ValueError(f"bits must be 4 or 8, got {self.bits}")
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise ValueError(f"block-size must be a power of two >= 16, got {self.block_size}")
        if not 0 <= self.accuracy_level <= 4:
            raise ValueError(f"accuracy-level must be in 0..4, got {self.accuracy_level}")


@dataclass(frozen=True)
class _Plan:
    selection: NodeSelection
    options: WeightOptions
    nbits: bool  # the target runs com.microsoft::MatMulNBits
    gather_blocks: bool  # the target runs com.microsoft::GatherBlockQuantized
    skip_layer_norm: bool  # the target runs com.microsoft::SkipLayerNormalization
    opset: int  # of the default domain

    @property
    def gather_unavailable(self) -> str | None:
        """Why tables cannot be quantized for this target and model, or None."""
        if self.gather_blocks:
            return None
        if self.options.bits == 4:
            return "onnxruntime's Gather has no 4-bit kernel; quantize tables with bits=8"
        return _opset_reason(self.opset) if self.opset < BLOCKWISE_OPSET else None

    def lower_gather(self, op: RewriterContext, name: str, table: np.ndarray, ids: ir.Value) -> ir.Value | Decline:
        """An embedding lookup of a blockwise table, in the target's form (see the module docstring)."""
        bits, block_size, symmetric = self.options.bits, self.options.block_size, self.options.symmetric
        if self.gather_blocks:
            return gather_block_quantized(op, name, table, ids,
                                          TableScheme(_NBITS_DTYPES[bits], "block", symmetric, block_size))
        return gather_dequantize(op, name, table, ids,
                                 TableScheme(_DQ_DTYPES[bits, symmetric], "block", symmetric, block_size))


def _opset_reason(opset: int) -> str:
    return (f"blockwise DequantizeLinear needs opset {BLOCKWISE_OPSET}, the model imports {opset} (convert it "
            "with onnx.version_converter, or use --target cpu)")


def _matmul_nbits(op: RewriterContext, a: ir.Value, name: str, w: np.ndarray, options: WeightOptions) -> ir.Value:
    bits, block_size = options.bits, options.block_size
    q, params = quantize_blockwise(w, _NBITS_DTYPES[bits], axis=0, block_size=block_size,
                                   symmetric=options.symmetric)
    packed = op.initializer(pack_blocks(q, bits, block_size, params.zero_point), f"{name}_q{bits}")
    scales = op.initializer(np.ascontiguousarray(params.scale.T), f"{name}_scales")
    zero_points = None if options.symmetric else op.initializer(
        pack_zero_points(params.zero_point, bits), f"{name}_zero_points")
    op.import_opset(MS_DOMAIN, 1)
    k, n = w.shape
    return op.MatMulNBits(a, packed, scales, zero_points, _domain=MS_DOMAIN, K=k, N=n, bits=bits,
                          block_size=block_size, accuracy_level=options.accuracy_level or None)


def _blockwise_dequantize(op: RewriterContext, name: str, w: np.ndarray, options: WeightOptions) -> ir.Value:
    dtype = _DQ_DTYPES[options.bits, options.symmetric]
    q, params = quantize_blockwise(w, dtype, axis=0, block_size=options.block_size, symmetric=options.symmetric)
    stored = op.initializer(ir.tensor(q, dtype=dtype), f"{name}_q{options.bits}")
    scale = op.initializer(params.scale, f"{name}_scale")
    zero = None if options.symmetric else op.initializer(ir.tensor(params.zero_point, dtype=dtype),
                                                         f"{name}_zero_point")
    return op.DequantizeLinear(stored, scale, zero, axis=0, block_size=options.block_size)


def _rules(plan: _Plan) -> RuleSet:
    """The rules of one run of ``quantize-weights`` for ``plan``."""

    # MatMul(A, W) -> MatMulNBits(A, pack(W_q), s, zp?)  |  MatMul(A, DequantizeLinear(W_q, s, zp?, block_size))
    @rule("weights-matmul", Op("MatMul", Var("a"), Const("w", shape=S.ANY, dtype=_FLOAT), _name="mm"))
    def weights_matmul(op: RewriterContext, m: Match) -> Replacement | Decline:
        """MatMul(A, W) -> MatMul with a blockwise int4/int8 weight"""
        reason = plan.selection.why_not(m.node("mm"))
        if reason is not None:
            return Decline(reason)
        if not plan.nbits and plan.opset < BLOCKWISE_OPSET:
            return Decline(_opset_reason(plan.opset))
        w = m.const("w")
        assert w is not None
        if w.ndim != 2:
            return Decline(f"weight has shape {list(w.shape)}, expected [K, N]")
        a_shape = m["a"].shape
        if a_shape is not None and a_shape.rank() < 2:
            return Decline("A is 1-D")
        name = m["w"].name or "weight"
        if plan.nbits:
            return _matmul_nbits(op, m["a"], name, w, plan.options)
        return op.MatMul(m["a"], _blockwise_dequantize(op, name, w, plan.options))

    def embed_reason(node: ir.Node) -> str | None:
        return plan.selection.why_not(node) or plan.gather_unavailable

    # the tables' lookups are the blockwise Gathers above, the normalisation un-fused (per-row form)
    embed_forms = EmbedLayerNormForms(per_row=True, dtype=_NBITS_DTYPES[plan.options.bits], lower=plan.lower_gather,
                                      quantized_kernel=False, skip_layer_norm=plan.skip_layer_norm)
    return RuleSet([weights_matmul,
                    gather_rule("weights-gather", plan.selection, plan.lower_gather, plan.gather_unavailable),
                    embed_layer_norm_rule("weights-embed-layer-norm", embed_reason, embed_forms)])


@register_pass
class QuantizeWeights(Pass):
    """Quantize MatMul weights and embedding tables to int4/int8 blocks, activations stay float (no calibration)."""

    name = "quantize-weights"
    Options = WeightOptions
    tolerance = Tolerance(rtol=0.1, atol=0.5)
    idempotent = True

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        options: WeightOptions = self.options
        target = target_of(ctx)
        plan = _Plan(NodeSelection.from_options(self.name, options.op_types, options.include, options.exclude),
                     options, nbits=target.supports_op(MS_DOMAIN, "MatMulNBits", 1),
                     gather_blocks=target.supports_op(MS_DOMAIN, "GatherBlockQuantized", 1),
                     skip_layer_norm=target.supports_op(MS_DOMAIN, "SkipLayerNormalization", 1),
                     opset=model.opset_imports.get("", 0))
        return apply_traced(self.name, model, _rules(plan), ctx, explain=options.explain)
