"""Which values to calibrate: float activations around the ops a quantizer may quantize.

By default a value is calibrated when it is a non-constant floating-point value of the main
graph (a graph input or a node output) that is an input or output of a node whose op type is in
:data:`QUANTIZABLE_OP_TYPES`. ``op_types=None`` takes every float activation (what onnxruntime's
calibrators do by default). Values whose element type is not yet known are kept; collection drops
those that onnxruntime reports as non-float.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import onnx_ir as ir

from onnxsmith.calibration.identity import constant_values
from onnxsmith.errors import OnnxsmithError, closest
from onnxsmith.ir.queries import op_key

__all__ = ["FLOAT_TYPES", "QUANTIZABLE_OP_TYPES", "REARRANGING_OP_TYPES", "check_values", "rearranged_values",
           "select_values"]

#: Ops with quantized forms in onnxruntime: the QDQ registry of onnxruntime.quantization plus the
#: QLinear* element-wise, pooling and activation kernels.
QUANTIZABLE_OP_TYPES: frozenset[str] = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Attention", "com.microsoft::Attention",
    "Relu", "Clip", "LeakyRelu", "Sigmoid", "Softmax",
    "Add", "Mul", "Concat", "Where",
    "MaxPool", "AveragePool", "GlobalAveragePool", "Resize", "Pad",
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Split",
    "Gather", "GatherElements", "TopK", "CumSum",
    "InstanceNormalization", "LayerNormalization", "BatchNormalization",
})

#: Ops whose output holds exactly the elements of their first input, rearranged.
REARRANGING_OP_TYPES: frozenset[str] = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"})

#: Element types a range is computed for.
FLOAT_TYPES: frozenset[ir.DataType] = frozenset({
    ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE})


def _values(graph: ir.Graph) -> Iterable[ir.Value]:
    """Graph inputs, then each node's inputs and outputs, in graph order (with repeats)."""
    yield from graph.inputs
    for node in graph:
        yield from (v for v in (*node.inputs, *node.outputs) if v is not None)


def select_values(model: ir.Model, op_types: Collection[str] | None = QUANTIZABLE_OP_TYPES) -> list[str]:
    """Names of the values to calibrate, in graph order (graph inputs first).

    Args:
        model: The model.
        op_types: Op types (``domain::Op`` outside the default domain) whose inputs and outputs
            are calibrated; None for every float activation.
    """
    graph = model.graph
    constants = constant_values(graph)
    wanted = None if op_types is None else frozenset(op_types)
    touching: set[str] = set()
    if wanted is not None:
        for node in graph:
            if op_key(node) in wanted:
                touching.update(v.name for v in (*node.inputs, *node.outputs) if v is not None)
    chosen: dict[str, None] = {}
    for value in _values(graph):
        name = value.name
        if not name or name in constants or name in chosen:
            continue
        if value.dtype is not None and value.dtype not in FLOAT_TYPES:
            continue
        if wanted is None or name in touching:
            chosen[name] = None
    return list(chosen)


def check_values(model: ir.Model, names: Iterable[str]) -> list[str]:
    """Checks caller-chosen value names: each must be a non-constant float value of the main graph.

    Raises:
        OnnxsmithError: Naming the first value that does not qualify.
    """
    graph = model.graph
    known = {value.name: value for value in _values(graph) if value.name}
    constants = constant_values(graph)
    out = []
    for name in dict.fromkeys(names):
        value = known.get(name)
        if value is None:
            hint = closest(name, list(known))
            raise OnnxsmithError(f"no value named '{name}' in the main graph",
                                 f"did you mean '{hint}'?" if hint else "check the value name against the model")
        if name in constants:
            raise OnnxsmithError(f"value '{name}' is computed from constants only; it has no activation range",
                                 "calibrate activations; weights are quantized from their own values")
        if value.dtype is not None and value.dtype not in FLOAT_TYPES:
            raise OnnxsmithError(f"value '{name}' is {value.dtype.name.lower()}, not floating point",
                                 "only float activations are calibrated")
        out.append(name)
    return out


def rearranged_values(model: ir.Model, names: Iterable[str]) -> dict[str, str]:
    """Values of ``names`` that only rearrange another value of ``names``, each with that value's name.

    A value qualifies when it comes out of a chain of :data:`REARRANGING_OP_TYPES` (default
    domain) from a value of ``names`` (the topmost such value is named): in every run it holds
    the same elements, so any per-tensor summary of it (extremes, histogram, counts) is the other
    value's. A per-channel summary is not: the channel axis moves.
    """
    producers: dict[str, str] = {}
    for node in model.graph:
        if node.op_type in REARRANGING_OP_TYPES and node.domain in ("", "ai.onnx") and node.inputs and node.inputs[0]:
            producers[node.outputs[0].name] = node.inputs[0].name
    wanted = set(names)
    found: dict[str, str] = {}
    for name in wanted:
        root, current = name, producers.get(name)
        while current is not None:
            if current in wanted:
                root = current
            current = producers.get(current)
        if root != name:
            found[name] = root
    return found
