"""A small builder for writing graphs in code (tests, demos, synthetic benchmarks).

Example::

    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 4])
    w = b.initializer("w", np.ones((4, 3), np.float32))
    y = b.Relu(b.MatMul(x, w))
    b.output(y, "y")
    model = b.build()

``b.OpType(*inputs, _outputs=1, _domain="", **attributes)`` appends a node and returns its
output value (a tuple when ``_outputs > 1``). Attribute values are converted by onnx_ir
(ints, floats, strings, lists, numpy arrays as tensors, ``ir.Graph`` as subgraphs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

__all__ = ["GraphBuilder", "dtype_of", "to_tensor"]


def dtype_of(dtype: Any) -> ir.DataType:
    """Converts a numpy dtype, a name ('float32', 'int64') or an ``ir.DataType``."""
    if isinstance(dtype, ir.DataType):
        return dtype
    return ir.DataType.from_numpy(np.dtype(dtype))


def to_tensor(array: np.ndarray, name: str | None = None) -> ir.TensorProtocol:
    """An IR tensor for a numpy array; string arrays become ``ir.StringTensor``."""
    if array.dtype.kind in "OUS":
        encoded = np.array([s if isinstance(s, bytes) else str(s).encode() for s in array.flat], dtype=object)
        return ir.StringTensor(encoded.reshape(array.shape), name=name)
    return ir.tensor(array, name=name)


class GraphBuilder:
    """Builds an ``onnx_ir.Model`` node by node."""

    def __init__(self, opset: int = 17, *, name: str = "main", ir_version: int = 9,
                 opsets: dict[str, int] | None = None) -> None:
        self.opset_imports: dict[str, int] = {"": opset, **(opsets or {})}
        self.name = name
        self.ir_version = ir_version
        self.inputs: list[ir.Value] = []
        self.outputs: list[ir.Value] = []
        self.initializers: list[ir.Value] = []
        self.nodes: list[ir.Node] = []
        self._counter = 0

    def _fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    def input(self, name: str, dtype: Any = "float32", shape: Sequence[int | str | None] | None = None) -> ir.Value:
        """Adds a graph input; string dims are symbolic, None is unknown."""
        value = ir.Value(
            name=name,
            type=ir.TensorType(dtype_of(dtype)),
            shape=ir.Shape(shape) if shape is not None else None,
        )
        self.inputs.append(value)
        return value

    def initializer(self, name: str, array: np.ndarray | ir.TensorProtocol) -> ir.Value:
        """Adds a constant weight."""
        tensor = array if isinstance(array, ir.TensorProtocol) and not isinstance(array, np.ndarray) else (
            to_tensor(np.asarray(array), name))
        value = ir.Value(name=name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(tensor.shape.dims),
                         const_value=tensor)
        self.initializers.append(value)
        return value

    def const(self, array: Any, name: str | None = None) -> ir.Value:
        """Adds an initializer with a generated name (numpy array or Python scalar/list)."""
        return self.initializer(name or self._fresh("const"), np.asarray(array))

    def op(self, op_type: str, *inputs: ir.Value | None, _outputs: int = 1, _domain: str = "",
           _name: str | None = None, **attributes: Any) -> Any:
        """Appends a node; returns its single output or a tuple of outputs."""
        attrs = {k: to_tensor(v) if isinstance(v, np.ndarray) else v
                 for k, v in attributes.items() if v is not None}
        node = ir.Node(_domain, op_type, inputs, attributes=ir.convenience.convert_attributes(attrs),
                       num_outputs=_outputs, name=_name or self._fresh(op_type))
        for i, out in enumerate(node.outputs):
            out.name = f"{node.name}_out{i}" if _outputs > 1 else f"{node.name}_out"
        self.nodes.append(node)
        return node.outputs[0] if _outputs == 1 else tuple(node.outputs)

    def __getattr__(self, op_type: str):
        if not op_type[:1].isupper():
            raise AttributeError(op_type)
        return lambda *inputs, **attrs: self.op(op_type, *inputs, **attrs)

    def output(self, value: ir.Value, name: str | None = None, dtype: Any = None,
               shape: Sequence[int | str | None] | None = None) -> ir.Value:
        """Marks a value as graph output, optionally renaming it and setting its type."""
        if name:
            value.name = name
        if dtype is not None:
            value.type = ir.TensorType(dtype_of(dtype))
        if shape is not None:
            value.shape = ir.Shape(shape)
        self.outputs.append(value)
        return value

    def build(self, *, infer_types: bool = True) -> ir.Model:
        """Returns the model; output types are inferred with ONNX shape inference if unknown."""
        graph = ir.Graph(self.inputs, self.outputs, nodes=self.nodes, initializers=self.initializers,
                         opset_imports=dict(self.opset_imports), name=self.name)
        model = ir.Model(graph, ir_version=self.ir_version, producer_name="onnxsmith")
        if infer_types:
            from onnxsmith.ir.shapes import infer_shapes

            infer_shapes(model)
        return model
