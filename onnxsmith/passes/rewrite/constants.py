"""What counts as a constant in a pattern, and its shape without reading its data.

A value is a constant when it is an initializer that is not also a graph input (an initializer
listed as an input is only a default: the caller may override it), or the output of a ``Constant``
node of the default domain holding a dense value (not ``sparse_value``, not a reference to a
function attribute). Shapes come
from tensor headers and attributes, so matching a shape policy never reads weights; only a rule
that asks for the value (``Const(value=...)``, ``Const(where=...)``, ``Match.const``) reads it.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

__all__ = ["constant_array", "constant_dtype", "constant_shape", "non_constant_reason"]

_SCALAR_ATTRS = {"value_float", "value_int", "value_string"}
_LIST_ATTRS = {"value_floats", "value_ints", "value_strings"}
_DENSE_ATTRS = _SCALAR_ATTRS | _LIST_ATTRS | {"value"}


def _constant_node(value: ir.Value) -> ir.Node | None:
    node = value.producer()
    if node is None or node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    if len(node.attributes) != 1:
        return None
    name, attr = next(iter(node.attributes.items()))
    if name not in _DENSE_ATTRS or attr.is_ref():
        return None
    return node


def non_constant_reason(value: ir.Value) -> str | None:
    """Why ``value`` is not a constant (a message fragment), or None if it is one."""
    if value.is_initializer():
        if value.is_graph_input():
            return "is an initializer that is also a graph input (callers may override it)"
        return None
    if _constant_node(value) is not None:
        return None
    producer = value.producer()
    if producer is None:
        return "is a graph input, not a constant"
    if producer.op_type == "Constant":
        return "is a Constant whose value is sparse or a function attribute reference"
    return "is not a constant"


def constant_shape(value: ir.Value) -> tuple[int, ...]:
    """Shape of a constant (see :func:`non_constant_reason`) from headers and attributes only."""
    if value.is_initializer():
        assert value.const_value is not None
        return tuple(value.const_value.shape.dims)
    node = _constant_node(value)
    assert node is not None, "not a constant"
    name, attr = next(iter(node.attributes.items()))
    if name in _SCALAR_ATTRS:
        return ()
    if name in _LIST_ATTRS:
        return (len(attr.value),)
    return tuple(attr.value.shape.dims)


def constant_dtype(value: ir.Value) -> ir.DataType:
    """Element type of a constant, without reading its data."""
    if value.is_initializer():
        assert value.const_value is not None
        return value.const_value.dtype
    node = _constant_node(value)
    assert node is not None, "not a constant"
    name, attr = next(iter(node.attributes.items()))
    if name in ("value_float", "value_floats"):
        return ir.DataType.FLOAT
    if name in ("value_int", "value_ints"):
        return ir.DataType.INT64
    if name in ("value_string", "value_strings"):
        return ir.DataType.STRING
    return attr.value.dtype


def constant_array(value: ir.Value) -> np.ndarray:
    """The data of a constant as a numpy array (this reads external data).

    Reading never changes the graph: ``get_const_tensor`` renames the tensor of a Constant node's
    ``value`` attribute after the node's output, so that tensor is read directly.
    """
    node = value.producer() if value.const_value is None else None
    if node is not None and node.op_type == "Constant" and node.domain == "" and "value" in node.attributes:
        attr = node.attributes["value"]
        if not attr.is_ref():
            return attr.as_tensor().numpy()
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is None:
        raise ValueError(f"value '{value.name}' is not a constant with readable data")
    return tensor.numpy()
