"""The per-op table of static quantization: which ops get integer kernels, and which keep a scale.

*Linear ops* (Conv, ConvTranspose, MatMul, Gemm) are the ops whose integer kernels buy speed: a
QDQ group ``DequantizeLinear -> op (-> QuantizeLinear)`` becomes QLinearConv, QLinearMatMul,
MatMulIntegerToFloat or QGemm in onnxruntime. Their float inputs are quantized as activations
(per tensor) and their constant inputs as weights (per channel on the output-channel axis); a
constant bias becomes int32 with scale ``s_input * s_weight``. Conv needs its output quantized
too (QLinearConv writes integers; there is no integer Conv with a float output); MatMul and Gemm
do not (MatMulIntegerToFloat and QGemm write floats), so their outputs are quantized only when the
consumers want integers.

Which linear ops a target runs in integers is read from its :class:`~onnxsmith.codegen.QuantConstraints`:
on ``cpu`` only those with an onnxruntime kernel (no ConvTranspose), elsewhere all of them (the
runtime or TensorRT fuses the QDQ groups itself).

*Scale-preserving ops* move or select elements without computing new ones (Reshape, Transpose,
MaxPool, Slice, Squeeze, Unsqueeze, Flatten...): ``op(DQ(q, s, z)) == DQ(op(q), s, z)``, so a
Q/DQ pair on each side with the *same* parameters lets onnxruntime drop both and run the op on
integers.

*Integer element-wise ops* (Add, Mul) have integer kernels on some targets (onnxruntime's QDQ
selectors turn ``DQ, DQ -> Add -> Q`` into com.microsoft QLinearAdd on ``cpu``), but quantizing
them buys no speed by itself (../shared/QUANT-NOTES.md): the planner quantizes one only where it
sits between integer kernels (:mod:`~onnxsmith.passes.quant.integer_elementwise`).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from onnxsmith.codegen.target import Target
from onnxsmith.ir.queries import op_key

__all__ = ["ELEMENTWISE_OPS", "FUSABLE_ACTIVATIONS", "LINEAR_OPS", "SCALE_PRESERVING_OPS", "LinearOp",
           "elementwise_ops_for", "fused_activation", "is_channel_bias", "linear_ops_for", "weight_axis",
           "writes_integers"]


@dataclass(frozen=True)
class LinearOp:
    """How one linear op is quantized.

    Attributes:
        inputs: Indices of the inputs quantized (as activations, or as weights when constant).
        bias: Index of the bias input, if the op has one.
        output_quantized: The integer kernel writes integers, so the output must be quantized.
        kernel: The integer op that onnxruntime's ``cpu`` provider must have for it.
    """

    inputs: tuple[int, ...]
    bias: int | None
    output_quantized: bool
    kernel: str


#: Linear ops with integer kernels.
LINEAR_OPS: dict[str, LinearOp] = {
    "Conv": LinearOp((0, 1), 2, True, "QLinearConv"),
    "ConvTranspose": LinearOp((0, 1), 2, True, "com.microsoft::QLinearConvTranspose"),
    "MatMul": LinearOp((0, 1), None, False, "com.microsoft::MatMulIntegerToFloat"),
    "Gemm": LinearOp((0, 1), 2, False, "com.microsoft::QGemm"),
}

#: Ops whose output takes the scale and zero point of input 0 (data movement and selection).
SCALE_PRESERVING_OPS: frozenset[str] = frozenset({
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice", "MaxPool", "GlobalMaxPool",
    "Gather", "Expand", "Identity", "SpaceToDepth", "DepthToSpace",
})


#: Element-wise ops with an integer kernel, and that kernel (``domain::Op``).
ELEMENTWISE_OPS: dict[str, str] = {
    "Add": "com.microsoft::QLinearAdd",
    "Mul": "com.microsoft::QLinearMul",
}


#: Activations onnxruntime removes before a QuantizeLinear whose range they do not cut (Relu with the
#: zero point at the type's minimum, Clip with the range inside its bounds): the integer kernel
#: before them writes the quantized activation directly.
FUSABLE_ACTIVATIONS: frozenset[str] = frozenset({"Relu", "Clip"})


def linear_ops_for(target: Target) -> frozenset[str]:
    """The linear ops ``target`` runs with integer kernels (all of them where it fuses QDQ itself)."""
    if "qoperator" not in target.quant.formats:
        return frozenset(LINEAR_OPS)
    return frozenset(op for op, role in LINEAR_OPS.items() if role.kernel in target.quant.integer_ops)


def elementwise_ops_for(target: Target) -> frozenset[str]:
    """The element-wise ops whose integer kernel ``target``'s provider has (none where it fuses QDQ itself)."""
    return frozenset(op for op, kernel in ELEMENTWISE_OPS.items() if kernel in target.quant.integer_ops)


def writes_integers(node: ir.Node) -> bool:
    """Whether ``node``, quantized, writes integers: every op but MatMul and Gemm, whose kernels write floats."""
    role = LINEAR_OPS.get(op_key(node))
    return role.output_quantized if role is not None else True


def fused_activation(node: ir.Node) -> ir.Node | None:
    """The Relu/Clip that alone reads the output of a linear or integer element-wise node (its
    integer kernel absorbs it: the activation's output is quantized in place of the node's)."""
    out = node.outputs[0]
    uses = out.uses()
    op = op_key(node)
    if (op not in LINEAR_OPS and op not in ELEMENTWISE_OPS) or len(uses) != 1 or out.is_graph_output() or uses[0].idx:
        return None
    return uses[0].node if op_key(uses[0].node) in FUSABLE_ACTIVATIONS else None


def weight_axis(node: ir.Node, index: int, rank: int) -> int | None:
    """Output-channel axis of the constant input ``index`` of a linear node, None for per-tensor.

    Conv weights are ``[M, C/g, k...]`` (axis 0); ConvTranspose ``[C, M/g, k...]`` (axis 1, one
    group only); MatMul's right operand ``[..., K, N]`` (the last axis, for 2-D weights); Gemm's B
    is ``[K, N]`` or ``[N, K]`` with ``transB``. A constant left operand has no channel axis.
    """
    op = op_key(node)
    if op == "Conv" and index == 1:
        return 0
    if op == "ConvTranspose" and index == 1:
        group = node.attributes.get("group")
        return 1 if group is None or group.as_int() == 1 else None
    if op == "MatMul" and index == 1 and rank == 2:
        return 1
    if op == "Gemm" and index == 1:
        trans = node.attributes.get("transB")
        return 0 if trans is not None and trans.as_int() else 1
    return None


def is_channel_bias(node: ir.Node, shape: tuple[int, ...]) -> bool:
    """Whether a constant bias of ``shape`` holds one value per output channel of ``node``.

    A ``[C]`` vector always does; so does Gemm's row vector ``[1, N]``, which broadcasts over the
    rows of the ``[M, N]`` output exactly as ``[N]`` does (``fuse`` writes MatMul + Add biases so).
    A Gemm must also have ``alpha = beta = 1``: onnxruntime's QGemm reads its int32 bias with the
    scale ``alpha / beta * s_a * s_b``, and its QDQ selector takes a bias only with ``beta = 1``.
    """
    if op_key(node) == "Gemm":
        scaled = any(node.attributes.get(a) is not None and node.attributes[a].as_float() != 1.0
                     for a in ("alpha", "beta"))
        return not scaled and (len(shape) == 1 or (len(shape) == 2 and shape[0] == 1))
    return len(shape) == 1
