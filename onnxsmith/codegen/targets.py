"""The built-in targets and their registry: ``get_target``, ``list_targets``, ``target_of``.

- ``generic``: standard ONNX only (the installed ``onnx`` package's schemas); runs anywhere.
- ``cpu``: onnxruntime's CPUExecutionProvider. Op table and quantization types are read from the
  installed onnxruntime's kernel registry on first use, so they always match the runtime.
- ``cuda`` and ``tensorrt``: data only (their lowering comes later). The installed onnxruntime is
  CPU-only, so their tables are written by hand from the sources cited next to the data; they are
  approximations that ``ep_check`` replaces with onnxruntime's own placement where the provider exists.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import onnx_ir as ir

from onnxsmith.codegen.fusion_families import FUSION_FAMILIES, STANDARD_FUSIONS
from onnxsmith.codegen.optable import OpTable, declared_table, kernel_registry_table, standard_table
from onnxsmith.codegen.quant import QuantConstraints, dtype_of
from onnxsmith.codegen.target import Target, op_name
from onnxsmith.errors import OnnxsmithError, closest

if TYPE_CHECKING:
    from onnxsmith.passes.base import PassContext

__all__ = ["UnknownTargetError", "get_target", "list_targets", "target_of"]

_T = ir.DataType
_ACTIVATION_TYPES = frozenset({_T.UINT8, _T.INT8, _T.UINT16, _T.INT16})
_WEIGHT_TYPES = frozenset({_T.UINT8, _T.INT8, _T.UINT4, _T.INT4})


class UnknownTargetError(OnnxsmithError):
    """A target name that is not registered."""


# --- generic -------------------------------------------------------------------------------------

def _generic_quant() -> QuantConstraints:
    return QuantConstraints(
        formats=frozenset({"qdq"}),
        activation_dtypes=_ACTIVATION_TYPES,
        weight_dtypes=_WEIGHT_TYPES,
        preferred_activation=_T.INT8,  # symmetric-capable int8/int8 is what every runtime accepts
        preferred_weight=_T.INT8,
        blockwise_weights=True,
        notes=("QDQ only: which integer kernels run is up to the runtime that loads the model",),
    )


GENERIC = Target(
    name="generic",
    provider="CPUExecutionProvider",
    description="standard ONNX only; runs anywhere",
    fusions=STANDARD_FUSIONS,
    op_table_source=standard_table,
    quant_source=functools.cache(_generic_quant),
)


# --- cpu: derived from the installed onnxruntime ------------------------------------------------

CPU_PROVIDER = "CPUExecutionProvider"

#: Ops that compute in integers, kept where the installed onnxruntime registers a CPU kernel.
_INTEGER_OP_CANDIDATES = (
    "ConvInteger", "DynamicQuantizeLinear", "MatMulInteger", "QLinearConv", "QLinearMatMul",
    "com.microsoft::DynamicQuantizeLSTM", "com.microsoft::DynamicQuantizeMatMul",
    "com.microsoft::GatherBlockQuantized", "com.microsoft::MatMulInteger16", "com.microsoft::MatMulIntegerToFloat",
    "com.microsoft::MatMulNBits", "com.microsoft::NhwcMaxPool", "com.microsoft::QAttention",
    "com.microsoft::QEmbedLayerNormalization", "com.microsoft::QGemm", "com.microsoft::QLinearAdd",
    "com.microsoft::QLinearAveragePool", "com.microsoft::QLinearConcat", "com.microsoft::QLinearConv",
    "com.microsoft::QLinearGlobalAveragePool", "com.microsoft::QLinearLeakyRelu", "com.microsoft::QLinearMul",
    "com.microsoft::QLinearSigmoid", "com.microsoft::QLinearSoftmax", "com.microsoft::QLinearWhere",
)


def _cpu_table() -> OpTable:
    return kernel_registry_table(CPU_PROVIDER)


def _kernel_types(table: OpTable, op_type: str) -> frozenset[ir.DataType]:
    """Every tensor type any kernel of ``op_type`` (default and com.microsoft domains) accepts."""
    names = {t for domain in ("", "com.microsoft") for k in table.kernels.get((domain, op_type), ())
             for _, types in k.type_constraints for t in types}
    return frozenset(dtype_of(n) for n in names if n.startswith("tensor("))


@functools.cache
def _cpu_quant() -> QuantConstraints:
    table = _cpu_table()
    registered = {op_name(d, op) for d, op in table.kernels}
    return QuantConstraints(
        formats=frozenset({"qdq", "qoperator"}),
        activation_dtypes=_kernel_types(table, "QuantizeLinear") & _ACTIVATION_TYPES,
        weight_dtypes=_kernel_types(table, "DequantizeLinear") & _WEIGHT_TYPES,
        # u8 activations / s8 weights: the pair whose QDQ groups onnxruntime fuses into QLinear* kernels
        # everywhere; symmetric s8 activations left some MatMuls unfused (../shared/QUANT-NOTES.md).
        preferred_activation=_T.UINT8,
        preferred_weight=_T.INT8,
        blockwise_weights=True,
        integer_ops=frozenset(op for op in _INTEGER_OP_CANDIDATES if op in registered),
        notes=("com.microsoft QuantizeLinear/DequantizeLinear carry 16- and 4-bit types below opset 21",
               "4-bit weight-only MatMul runs as com.microsoft::MatMulNBits (blockwise)"),
    )


#: Measured slower on onnxruntime 1.32's CPU kernels than the unfused graph, one thread:
#: all-MiniLM-L6-v2 at batch 8, sequence 53: Attention 121 ms, MultiHeadAttention 128 ms, unfused
#: 100 ms (no difference at batch 1; QAttention gained nothing over DynamicQuantizeMatMul projections
#: either); SkipLayerNormalization on [8, 53, 384]: 0.79 ms against 0.17 ms for Add +
#: LayerNormalization (0.043 against 0.010 ms on [1, 22, 384]).
#: com.microsoft FusedConv (conv-activation): the residual digits CNN at batch 8 on two threads ran
#: 0.78 ms against 0.55 ms with Conv + Relu, which onnxruntime fuses itself at load (one thread and
#: ResNet-18: no difference).
_CPU_SLOWER_FUSIONS = frozenset({"attention", "multi-head-attention", "skip-layer-norm", "conv-activation"})

CPU = Target(
    name="cpu",
    provider=CPU_PROVIDER,
    description="onnxruntime CPUExecutionProvider (contrib ops allowed)",
    fusions=frozenset(FUSION_FAMILIES) - _CPU_SLOWER_FUSIONS,
    opt_in_fusions=_CPU_SLOWER_FUSIONS,
    op_table_source=_cpu_table,
    quant_source=_cpu_quant,
)


# --- cuda: hand-written data ----------------------------------------------------------------------

# Source: onnxruntime docs/OperatorKernels.md, "Operators implemented by CUDAExecutionProvider".
# Standard domain: all standard ops except the integer QOperator ops below (absent from that table);
# com.microsoft: the contrib kernels relevant to fusion and quantization.
_CUDA_EXCLUDED = ("QLinearConv", "QLinearMatMul")
_CUDA_CONTRIB = {
    "": ("LayerNormalization", "SimplifiedLayerNormalization"),  # onnxruntime kernels in the ONNX domain, since v1
    "com.microsoft": (
        "Attention", "BiasAdd", "BiasGelu", "BiasSoftmax", "BiasSplitGelu", "DecoderMaskedMultiHeadAttention",
        "DequantizeLinear", "DequantizeWithOrder", "EmbedLayerNormalization", "FastGelu", "FusedConv",
        "FusedMatMul", "GatherBlockQuantized", "Gelu", "GroupNorm", "GroupQueryAttention", "MatMulBnb4",
        "MatMulNBits", "MoE", "MultiHeadAttention", "NhwcConv", "PackedAttention", "PackedMultiHeadAttention",
        "QAttention", "QMoE", "QOrderedAttention", "QOrderedGelu", "QOrderedLayerNormalization", "QOrderedMatMul",
        "QuantizeLinear", "QuantizeWithOrder", "QuickGelu", "RotaryEmbedding", "SkipGroupNorm",
        "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "TransposeMatMul",
    ),
}


@functools.cache
def _cuda_table() -> OpTable:
    return declared_table("onnxruntime CUDAExecutionProvider (hand-written from docs/OperatorKernels.md)",
                          exclude=_CUDA_EXCLUDED, contrib=_CUDA_CONTRIB)


def _cuda_quant() -> QuantConstraints:
    return QuantConstraints(
        formats=frozenset({"qdq"}),  # no QLinearConv/QLinearMatMul CUDA kernels
        activation_dtypes=frozenset({_T.INT8, _T.UINT8}),  # CUDA QuantizeLinear outputs (4-bit only for weights)
        weight_dtypes=frozenset({_T.INT8, _T.UINT8, _T.INT4, _T.UINT4}),
        preferred_activation=_T.INT8,  # CUDA MatMulInteger and QAttention take int8 x int8 only
        preferred_weight=_T.INT8,
        blockwise_weights=True,
        integer_ops=frozenset({"MatMulInteger", "com.microsoft::QAttention", "com.microsoft::MatMulNBits",
                               "com.microsoft::GatherBlockQuantized", "com.microsoft::QOrderedMatMul",
                               "com.microsoft::QOrderedAttention"}),
        notes=("source: onnxruntime docs/OperatorKernels.md (CUDAExecutionProvider)",),
    )


CUDA = Target(
    name="cuda",
    provider="CUDAExecutionProvider",
    description="onnxruntime CUDAExecutionProvider (data only; lowering not yet implemented)",
    # each emitted contrib op has a CUDA kernel (see _CUDA_CONTRIB); residual-sum and masked-softmax are
    # CPU-kernel lowerings
    fusions=frozenset(FUSION_FAMILIES) - {"residual-sum", "masked-softmax"},
    op_table_source=_cuda_table,
    quant_source=functools.cache(_cuda_quant),
)


# --- tensorrt: hand-written data ------------------------------------------------------------------

# Source: onnx/onnx-tensorrt docs/operators.md (TensorRT 8.5 parser, opsets <= 17): ops marked
# unsupported there. Newer TensorRT releases parse more; ep_check with the real provider is authoritative.
_TENSORRT_EXCLUDED = (
    "Bernoulli", "BitShift", "BlackmanWindow", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det",
    "DynamicQuantizeLinear", "HammingWindow", "HannWindow", "Hardmax", "IsInf", "LayerNormalization",
    "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial", "NegativeLogLikelihoodLoss",
    "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv", "QLinearMatMul", "STFT", "SequenceAt",
    "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength", "SequenceMap",
    "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringNormalizer", "TfIdfVectorizer", "Unique",
)
# No com.microsoft ops except EPContext, the node onnxruntime's TensorRT EP writes to embed a built engine.
_TENSORRT_CONTRIB = {"com.microsoft": ("EPContext",)}


@functools.cache
def _tensorrt_table() -> OpTable:
    return declared_table("TensorRT (hand-written from onnx-tensorrt docs/operators.md, TensorRT 8.5)",
                          exclude=_TENSORRT_EXCLUDED, contrib=_TENSORRT_CONTRIB, inlines_functions=False)


def _tensorrt_quant() -> QuantConstraints:
    return QuantConstraints(
        formats=frozenset({"qdq"}),  # TensorRT consumes Q/DQ itself; it has no QLinear*/MatMulInteger
        activation_dtypes=frozenset({_T.INT8}),
        weight_dtypes=frozenset({_T.INT8, _T.INT4}),
        preferred_activation=_T.INT8,
        preferred_weight=_T.INT8,
        # "y_zero_point must be 0" / "x_zero_point must be zero" (onnx-tensorrt docs/operators.md)
        symmetric_activations=True,
        symmetric_weights=True,
        blockwise_weights=True,  # INT4 block-wise weight-only, TensorRT >= 10 (TensorRT Model Optimizer docs)
        notes=("per-channel weights on the output-channel axis, per-tensor activations",
               "int8 weights are expected in [-127, 127]"),
    )


TENSORRT = Target(
    name="tensorrt",
    provider="TensorrtExecutionProvider",
    description="onnxruntime TensorrtExecutionProvider (data only; lowering not yet implemented)",
    fusions=frozenset({"conv-bn", "gemm"}),  # TensorRT fuses the rest itself; contrib ops would leave it
    op_table_source=_tensorrt_table,
    quant_source=functools.cache(_tensorrt_quant),
)


# --- registry -------------------------------------------------------------------------------------

_TARGETS: dict[str, Target] = {t.name: t for t in (GENERIC, CPU, CUDA, TENSORRT)}


def list_targets() -> list[str]:
    """Names of the registered targets, most portable first."""
    return list(_TARGETS)


def get_target(name: str) -> Target:
    """The target registered as ``name``.

    Raises:
        UnknownTargetError: No such target (the message suggests the closest name).
    """
    try:
        return _TARGETS[name]
    except KeyError:
        best = closest(name, list(_TARGETS))
        hint = f"did you mean '{best}'?" if best else f"known targets: {', '.join(_TARGETS)}"
        raise UnknownTargetError(f"unknown target '{name}'", hint) from None


def target_of(ctx: PassContext) -> Target:
    """The target a pass should lower for: ``get_target(ctx.target)`` for a ``PassContext``."""
    return get_target(ctx.target)
