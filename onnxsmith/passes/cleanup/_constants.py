"""Which values are constants, reading them (cheaply), and which ops must never be folded or merged.

A value is *constant* when it is an initializer that is not also a graph input (an input with a
default can be overridden at run time) or the output of a ``Constant`` node. Reading a constant
is done through the tensor's header first (dtype, shape, byte size), so callers can decide from
sizes alone and never touch the bytes of large or external weights they do not need.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.ir.queries import nbytes

__all__ = [
    "NONDETERMINISTIC_OPS",
    "constant_array",
    "constant_node_tensor",
    "constant_tensor",
    "dropout_is_inference",
    "is_default_domain",
    "is_nondeterministic",
    "static_dims",
    "string_items",
    "tensor_nbytes",
]

#: ONNX ops whose result is random: never folded, never merged.
NONDETERMINISTIC_OPS = frozenset({
    "Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
})

#: Dtypes of the Constant attributes that hold plain numbers.
_NUMBER_ATTRS = {"value_float": np.float32, "value_int": np.int64, "value_floats": np.float32, "value_ints": np.int64}


def is_default_domain(node: ir.Node) -> bool:
    return node.domain in ("", "ai.onnx")


def is_nondeterministic(node: ir.Node) -> bool:
    """Random ops, and Dropout unless it is known to run in inference mode."""
    if not is_default_domain(node):
        return False
    if node.op_type in NONDETERMINISTIC_OPS:
        return True
    return node.op_type == "Dropout" and not dropout_is_inference(node)


def dropout_is_inference(node: ir.Node) -> bool:
    """True when a Dropout node certainly runs in inference mode (its output equals its input).

    Opset 12+ reads the optional ``training_mode`` input (absent or constant false); opsets 7-11
    are always inference; an ``is_test`` attribute (opsets 1-6) is honoured when present. A
    ``ratio`` that is a constant 0 also makes training mode an identity.
    """
    is_test = node.attributes.get("is_test")
    if is_test is not None:
        return not is_test.is_ref() and bool(is_test.as_int())
    training = node.inputs[2] if len(node.inputs) > 2 else None
    if training is None:
        return True
    flag = constant_array(training)
    if flag is not None and flag.size == 1 and not bool(flag.reshape(-1)[0]):
        return True
    ratio = node.inputs[1] if len(node.inputs) > 1 else None
    ratio_value = constant_array(ratio) if ratio is not None else None
    return ratio_value is not None and ratio_value.size == 1 and float(ratio_value.reshape(-1)[0]) == 0.0


def constant_node_tensor(node: ir.Node) -> ir.TensorProtocol | None:
    """The tensor a ``Constant`` node produces, or None (sparse or attribute-reference values)."""
    attributes = node.attributes.data  # the plain dict behind the UserDict: cheaper on big graphs
    if node.op_type != "Constant" or not is_default_domain(node) or len(attributes) != 1:
        return None
    name, attr = next(iter(attributes.items()))
    if attr.is_ref():
        return None
    if name == "value" and attr.type == ir.AttributeType.TENSOR:
        return attr.value  # not as_tensor(): its runtime protocol check is slow on big graphs
    if name in _NUMBER_ATTRS:
        return ir.Tensor(np.array(attr.value, dtype=_NUMBER_ATTRS[name]))
    if name == "value_string":
        return ir.StringTensor(np.array(_as_bytes(attr.value), dtype=object))
    if name == "value_strings":
        return ir.StringTensor(np.array([_as_bytes(s) for s in attr.value], dtype=object))
    return None


def _as_bytes(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else text


def constant_tensor(value: ir.Value | None) -> ir.TensorProtocol | None:
    """The constant tensor behind ``value`` (initializer or Constant node), without reading its data."""
    if value is None:
        return None
    if value.is_initializer():
        return None if value.is_graph_input() else value.const_value
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant":
        return constant_node_tensor(producer)
    return None


def tensor_nbytes(tensor: ir.TensorProtocol) -> int:
    """Bytes of a tensor's data from its header (string tensors: the bytes of their strings)."""
    try:
        return int(nbytes(tensor))
    except TypeError:  # plain Tensor of strings has no item size
        return sum(len(s) for s in string_items(tensor))


def string_items(tensor: ir.TensorProtocol) -> list[bytes]:
    """The strings of a string tensor, flattened (string tensors have no raw bytes)."""
    return [s.encode() if isinstance(s, str) else bytes(s) for s in tensor.numpy().reshape(-1)]


def constant_array(value: ir.Value | None, *, max_bytes: int = 1 << 16) -> np.ndarray | None:
    """The value as a numpy array when it is a constant of at most ``max_bytes`` bytes."""
    tensor = constant_tensor(value)
    if tensor is None or tensor_nbytes(tensor) > max_bytes:
        return None
    return tensor.numpy()


def static_dims(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's shape when every dimension is a known integer, else None."""
    if value is None or value.shape is None:
        return None
    dims = value.shape.dims
    if not all(isinstance(d, int) for d in dims):
        return None
    return tuple(dims)  # type: ignore[arg-type]
