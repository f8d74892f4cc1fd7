"""When an ONNX node's first output is exactly its first input: one predicate per op type.

Each rule answers "is ``y = op(x, ...)`` equal to ``x`` (same values, shape and dtype) for every
possible ``x``?" using only attributes, small constant inputs and *static* shape facts; an
unknown fact means "no". The rules:

- Identity; Dropout in inference mode (or with a constant ratio of 0); Cast/CastLike to the
  input's own dtype; Concat, Sum, Mean, Max, Min of a single input; Split into one output.
- Transpose with the identity permutation.
- Reshape whose target keeps every dimension: each entry is 0 (copy, without ``allowzero``) or
  the input's static size, with at most one -1 standing for the one remaining dimension.
- Flatten of a rank-2 input at axis 1; Expand to a shape of ones no longer than the input's
  rank; Tile by ones; Pad by zeros; Slice taking everything (start 0, end past the end, step 1);
  Squeeze without axes of an input with no dimension of size 1.
- Reshape/Squeeze/Unsqueeze/Flatten/Expand/Tile whose static output shape equals the static
  input shape (they only move data around, so equal shapes mean equal tensors).
- ``x + 0``, ``0 + x``, ``x - 0``, ``x * 1``, ``1 * x``, ``x / 1`` when the constant is small,
  has x's dtype, and broadcasting it does not change x's shape. Floating-point caveat, accepted
  on purpose (as onnxruntime's own optimizer does): ``-0.0 + 0.0`` is ``+0.0``, so removing
  ``x + 0`` may flip the sign of a zero; the values still compare equal.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.cleanup._constants import constant_array, constant_tensor, dropout_is_inference, static_dims

__all__ = ["RULES", "passthrough_input"]

#: ``rule(node, opset) -> index``: the input that output 0 equals, or None.
Rule = Callable[[ir.Node, int], int | None]
RULES: dict[str, Rule] = {}

#: Slice ends at or beyond this are "to the end" whatever the dimension (exporters use INT_MAX/INT64_MAX).
_END_OF_AXIS = 2**31 - 1
_DATA_MOVEMENT = ("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Expand", "Tile")


def _rule(*op_types: str) -> Callable[[Callable[[ir.Node, int], bool]], Rule]:
    """Registers a predicate "output 0 equals input 0" for the op types."""

    def register(predicate: Callable[[ir.Node, int], bool]) -> Rule:
        def rule(node: ir.Node, opset: int) -> int | None:
            return 0 if predicate(node, opset) else None

        for op_type in op_types:
            RULES[op_type] = rule
        return rule

    return register


def passthrough_input(node: ir.Node, opset: int) -> int | None:
    """The index of the input that the default-domain ``node``'s first output equals, or None."""
    rule = RULES.get(node.op_type)
    if rule is None and node.op_type not in _DATA_MOVEMENT:
        return None
    if not node.inputs or node.inputs[0] is None or not node.outputs:
        return None
    attributes = node.attributes.data  # the plain dict behind the UserDict: cheaper on big graphs
    if attributes and any(attr.is_ref() for attr in attributes.values()):
        return None
    index = rule(node, opset) if rule is not None else None
    if index is None and node.op_type in _DATA_MOVEMENT and _same_static_shape(node):
        index = 0
    return index


def _dims(value: ir.Value | None) -> list[int | str | None] | None:
    """Dimensions with ints for static sizes and None for anything symbolic or unknown."""
    if value is None or value.shape is None:
        return None
    return [d if isinstance(d, int) else None for d in value.shape.dims]


def _same_static_shape(node: ir.Node) -> bool:
    x, y = node.inputs[0], node.outputs[0]
    dims = static_dims(x)
    return dims is not None and dims == static_dims(y) and x.dtype is not None and x.dtype == y.dtype


def _ints(value: ir.Value | None) -> list[int] | None:
    array = constant_array(value)
    if array is None or array.dtype.kind not in "iu":
        return None
    return [int(v) for v in array.reshape(-1)]


@_rule("Identity")
def _identity(node: ir.Node, opset: int) -> bool:
    return True


@_rule("Dropout")
def _dropout(node: ir.Node, opset: int) -> bool:
    return dropout_is_inference(node)


@_rule("Cast")
def _cast(node: ir.Node, opset: int) -> bool:
    x = node.inputs[0]
    return x.dtype is not None and node.attributes.get_int("to", -1) == int(x.dtype)


@_rule("CastLike")
def _cast_like(node: ir.Node, opset: int) -> bool:
    x, like = node.inputs[0], node.inputs[1]
    return x.dtype is not None and like is not None and like.dtype == x.dtype


@_rule("Concat", "Sum", "Mean", "Max", "Min")
def _single_input(node: ir.Node, opset: int) -> bool:
    return len(node.inputs) == 1


@_rule("Split")
def _split(node: ir.Node, opset: int) -> bool:
    return len(node.outputs) == 1


@_rule("Transpose")
def _transpose(node: ir.Node, opset: int) -> bool:
    perm = node.attributes.get_ints("perm")
    if perm is None:
        dims = _dims(node.inputs[0])
        return dims is not None and len(dims) <= 1
    return list(perm) == list(range(len(perm)))


@_rule("Reshape")
def _reshape(node: ir.Node, opset: int) -> bool:
    if opset < 5:
        return False
    dims, target = _dims(node.inputs[0]), _ints(node.inputs[1])
    if dims is None or target is None or len(dims) != len(target) or 0 in dims:
        return False
    allowzero = node.attributes.get_int("allowzero", 0)
    unmatched = 0
    for dim, want in zip(dims, target):
        if (want == 0 and not allowzero) or (dim is not None and want == dim):
            continue
        if want != -1:
            return False
        unmatched += 1
    return unmatched <= 1


@_rule("Flatten")
def _flatten(node: ir.Node, opset: int) -> bool:
    dims = _dims(node.inputs[0])
    return dims is not None and len(dims) == 2 and node.attributes.get_int("axis", 1) in (1, -1)


@_rule("Expand")
def _expand(node: ir.Node, opset: int) -> bool:
    dims, shape = _dims(node.inputs[0]), _ints(node.inputs[1])
    return dims is not None and shape is not None and len(shape) <= len(dims) and all(s == 1 for s in shape)


@_rule("Tile")
def _tile(node: ir.Node, opset: int) -> bool:
    repeats = _ints(node.inputs[1])
    return repeats is not None and all(r == 1 for r in repeats)


@_rule("Pad")
def _pad(node: ir.Node, opset: int) -> bool:
    if opset < 11:
        pads = node.attributes.get_ints("pads", node.attributes.get_ints("paddings"))
        pads = None if pads is None else list(pads)
    else:
        pads = _ints(node.inputs[1]) if len(node.inputs) > 1 else None
    return pads is not None and all(p == 0 for p in pads)


@_rule("Squeeze")
def _squeeze(node: ir.Node, opset: int) -> bool:
    has_axes = node.attributes.get("axes") is not None if opset < 13 else (
        len(node.inputs) > 1 and node.inputs[1] is not None)
    dims = static_dims(node.inputs[0])
    return not has_axes and dims is not None and 1 not in dims


@_rule("Slice")
def _slice(node: ir.Node, opset: int) -> bool:
    dims = _dims(node.inputs[0])
    if dims is None:
        return False
    if opset < 10:
        starts, ends = node.attributes.get_ints("starts"), node.attributes.get_ints("ends")
        axes, steps = node.attributes.get_ints("axes"), None
    else:
        inputs = list(node.inputs) + [None] * (5 - len(node.inputs))
        starts, ends = _ints(inputs[1]), _ints(inputs[2])
        axes = _ints(inputs[3]) if inputs[3] is not None else None
        steps = _ints(inputs[4]) if inputs[4] is not None else None
        if (inputs[3] is not None and axes is None) or (inputs[4] is not None and steps is None):
            return False
    if starts is None or ends is None or len(starts) != len(ends):
        return False
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else list(steps)
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if not -len(dims) <= axis < len(dims) or step != 1:
            return False
        dim = dims[axis]
        takes_from_start = start == 0 or (dim is not None and start <= -dim)
        takes_to_end = end >= _END_OF_AXIS or (dim is not None and end >= dim)
        if not (takes_from_start and takes_to_end):
            return False
    return True


def _neutral_operand(node: ir.Node, x_index: int, neutral: float) -> bool:
    """Whether input ``1 - x_index`` is a constant filled with ``neutral`` that leaves x's shape as is."""
    x, c = node.inputs[x_index], node.inputs[1 - x_index]
    dims = _dims(x)
    if dims is None or x.dtype is None:  # x is not None when it has dims
        return False
    tensor = constant_tensor(c)  # header checks before the data is read
    if tensor is None or tensor.dtype != x.dtype:
        return False
    array = constant_array(c)
    if array is None or array.ndim > len(dims) or array.dtype == object:
        return False
    if array.size == 0 or not np.all(array == neutral):
        return False
    aligned = dims[len(dims) - array.ndim:]
    return all(size == 1 or size == dim for size, dim in zip(array.shape, aligned))


def _commutative_identity(neutral: float) -> Rule:
    def rule(node: ir.Node, opset: int) -> int | None:
        if len(node.inputs) != 2 or node.inputs[1] is None:
            return None
        if _neutral_operand(node, 0, neutral):
            return 0
        return 1 if _neutral_operand(node, 1, neutral) else None

    return rule


RULES["Add"] = _commutative_identity(0)
RULES["Mul"] = _commutative_identity(1)


@_rule("Sub")
def _sub(node: ir.Node, opset: int) -> bool:
    return len(node.inputs) == 2 and _neutral_operand(node, 0, 0)


@_rule("Div")
def _div(node: ir.Node, opset: int) -> bool:
    return len(node.inputs) == 2 and _neutral_operand(node, 0, 1)
