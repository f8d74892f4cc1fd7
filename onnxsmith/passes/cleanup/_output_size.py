"""How many bytes a node's outputs will take, known before evaluating it.

Constant folding must decide from sizes alone whether to evaluate a node (an Expand or a
ConstantOfShape can ask for gigabytes). For the ops that constant subgraphs are mostly made of,
the answer follows from the input tensors' headers: elementwise ops produce the broadcast shape of
their inputs, data-movement ops keep the element count, Concat sums it, Gather replaces one axis by
the indices' shape, Slice and Split never exceed their input. Other ops return None and the caller
falls back to ONNX shape inference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

__all__ = ["quick_output_bytes"]

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


def quick_output_bytes(node: ir.Node, tensors: Sequence[ir.TensorProtocol | None]) -> int | None:
    """Bytes of all outputs of a default-domain node whose inputs are the constant ``tensors``.

    Args:
        node: The node; its outputs' declared dtypes are used when known.
        tensors: The node's inputs by position (None for a missing optional input).

    Returns:
        An exact size or an upper bound, or None when this op is not covered.
    """
    present = [t for t in tensors if t is not None]
    if not present:
        return None
    shapes = [tuple(t.shape.dims) for t in present]
    op = node.op_type
    if op in _ELEMENTWISE:
        try:
            numel = math.prod(np.broadcast_shapes(*shapes))
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
