"""How many bytes a node's outputs will take, known before evaluating it.

Constant folding must decide from sizes alone whether to evaluate a node (an Expand or a
ConstantOfShape can ask for gigabytes). The answer comes from, in order:

1. the outputs' annotated dtypes and static shapes (after ``infer-shapes``);
2. the constant inputs' headers, for the ops constant subgraphs are mostly made of: elementwise
   ops produce the broadcast shape of their inputs, data-movement ops keep the element count,
   Concat sums it, Gather replaces one axis by the indices' shape, Slice and Split never exceed
   their input (an upper bound);
3. ONNX shape inference on the node alone, with its small constant inputs given as data.

When none of them gives static shapes the size is unknown (None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import logging

import numpy as np
import onnx
import onnx_ir as ir

from onnxsmith.ir.queries import header_dims
from onnxsmith.passes.cleanup._constants import static_dims, tensor_nbytes
from onnxsmith.passes.cleanup._single_node import input_names, single_node_model

__all__ = ["output_bytes"]

log = logging.getLogger(__name__)

#: Constant inputs up to this size are given to ONNX shape inference as data (shape tensors,
#: axes, pads, scalars); larger ones only by type and shape.
_INFERENCE_DATA_BYTES = 1 << 16

_ELEMENTWISE = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "Asin", "Asinh", "Atan", "Atanh", "BitShift", "BitwiseAnd", "BitwiseNot",
    "BitwiseOr", "BitwiseXor", "Ceil", "Clip", "Cos", "Cosh", "Div", "Elu", "Equal", "Erf", "Exp", "Floor",
    "Greater", "GreaterOrEqual", "HardSigmoid", "IsInf", "IsNaN", "LeakyRelu", "Less", "LessOrEqual", "Log", "Max",
    "Mean", "Min", "Mod", "Mul", "Neg", "Not", "Or", "Pow", "PRelu", "Reciprocal", "Relu", "Round", "Selu",
    "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Sqrt", "Sub", "Sum", "Tan", "Tanh", "Where", "Xor",
})
_BOOLEAN_RESULT = frozenset({
    "And", "Equal", "Greater", "GreaterOrEqual", "IsInf", "IsNaN", "Less", "LessOrEqual", "Not", "Or", "Xor",
})
_SAME_COUNT = frozenset({
    "Cast", "CastLike", "Dropout", "Flatten", "Identity", "Reshape", "Squeeze", "Transpose", "Unsqueeze",
})
#: Outputs together hold at most as many elements as the first input.
_AT_MOST_INPUT = frozenset({"Slice", "Split"})


def output_bytes(node: ir.Node, tensors: Sequence[ir.TensorProtocol | None], opset_imports: dict[str, int],
                 ir_version: int) -> int | None:
    """Bytes of all outputs of ``node`` whose inputs are the constant ``tensors``, or None if unknown.

    Args:
        node: The node; its outputs' annotations are used when they are static.
        tensors: The node's inputs by position (None for a missing optional input).
        opset_imports: Opset imports for a one-node model of the node.
        ir_version: IR version for that model.

    Returns:
        An exact size or an upper bound, or None.
    """
    declared = [_bytes(out.dtype, static_dims(out)) for out in node.outputs]
    if all(b is not None for b in declared):
        return sum(declared)  # type: ignore[arg-type]
    if node.domain in ("", "ai.onnx"):
        quick = _from_input_headers(node, tensors)
        if quick is not None:
            return quick
    inferred = _infer_output_types(node, tensors, opset_imports, ir_version)
    if inferred is None:
        return None
    sizes = [_bytes(dtype, dims) for dtype, dims in inferred]
    return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]


def _bytes(dtype: ir.DataType | None, dims: tuple[int, ...] | None) -> int | None:
    if dtype is None or dims is None or dtype == ir.DataType.STRING:
        return None
    try:
        return math.ceil(math.prod(dims) * dtype.itemsize)
    except TypeError:  # a dtype without a fixed item size
        return None


def _from_input_headers(node: ir.Node, tensors: Sequence[ir.TensorProtocol | None]) -> int | None:
    """Output bytes of the common default-domain ops from their inputs' shapes; None if not covered."""
    present = [t for t in tensors if t is not None]
    if not present:
        return None
    shapes = [header_dims(t) for t in present]
    op = node.op_type
    if op in _ELEMENTWISE:
        try:
            numel = math.prod(shapes[0] if shapes.count(shapes[0]) == len(shapes) else np.broadcast_shapes(*shapes))
        except ValueError:
            return None
    elif op in _SAME_COUNT or op in _AT_MOST_INPUT:
        numel = math.prod(shapes[0])
    elif op == "Concat":
        numel = sum(math.prod(s) for s in shapes)
    elif op == "Gather" and len(present) == 2:
        numel = _gather_numel(node, shapes[0], shapes[1])
        if numel is None:
            return None
    else:
        return None
    itemsize = _itemsize(node, present)
    outputs = 1 if op in _AT_MOST_INPUT else len(node.outputs)  # Dropout's mask: an upper bound
    return None if itemsize is None else math.ceil(numel * itemsize * outputs)


def _gather_numel(node: ir.Node, data: tuple[int, ...], indices: tuple[int, ...]) -> int | None:
    axis = node.attributes.get_int("axis", 0)
    if not data or not -len(data) <= axis < len(data) or data[axis] == 0:
        return None
    return math.prod(data) // data[axis] * math.prod(indices)


def _itemsize(node: ir.Node, inputs: list[ir.TensorProtocol]) -> float | None:
    """Item size of the outputs: declared, implied by the op, or the widest input's."""
    try:
        declared = {out.dtype for out in node.outputs if out.dtype is not None}
        if len(declared) == len(node.outputs) == 1:
            return next(iter(declared)).itemsize
        if node.op_type == "Cast":
            return ir.DataType(node.attributes.get_int("to", 0)).itemsize
        if node.op_type == "CastLike":
            return inputs[1].dtype.itemsize
        if node.op_type in _BOOLEAN_RESULT:
            return 1
        return max(t.dtype.itemsize for t in inputs)
    except (TypeError, ValueError, IndexError):  # strings, undefined types
        return None


def _infer_output_types(node: ir.Node, tensors: Sequence[ir.TensorProtocol | None], opset_imports: dict[str, int],
                        ir_version: int) -> list[tuple[ir.DataType | None, tuple[int, ...] | None]] | None:
    """Output dtypes and static dims from ONNX shape inference on the node alone."""
    inputs, initializers = [], []
    for name, tensor in zip(input_names(node), tensors):
        if tensor is None:
            continue
        inputs.append(onnx.helper.make_tensor_value_info(name, int(tensor.dtype), list(tensor.shape.dims)))
        if tensor_nbytes(tensor) <= _INFERENCE_DATA_BYTES:
            data = ir.serde.serialize_tensor(tensor)
            data.name = name
            initializers.append(data)
    model = single_node_model(node, inputs, opset_imports, ir_version, initializers=initializers)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:  # onnx raises several exception types for bad nodes
        log.debug("shape inference failed for %s: %s", node.op_type, e)
        return None
    types = {vi.name: vi.type for vi in (*inferred.graph.value_info, *inferred.graph.output)}
    result = []
    for i in range(len(node.outputs)):
        type_proto = types.get(f"out{i}")
        if type_proto is None or not type_proto.HasField("tensor_type"):
            return None
        tensor_type = type_proto.tensor_type
        dtype = ir.DataType(tensor_type.elem_type) if tensor_type.elem_type else None
        dims = None
        if tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in tensor_type.shape.dim):
            dims = tuple(d.dim_value for d in tensor_type.shape.dim)
        result.append((dtype, dims))
    return result
