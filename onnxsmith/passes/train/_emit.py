"""``Emitter``: appends forward fragments (losses, optimizer updates) to an existing graph.

Node and value names are derived from a prefix and made unique in the graph; small constants
are shared. Gradient rules use :class:`~onnxsmith.passes.train.context.GradContext` instead,
which also knows the node being differentiated. Both draw names from :class:`GraphNames`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.ir.names import GraphNames

__all__ = ["Emitter", "GraphNames"]


class Emitter:
    """Appends default-domain nodes, constants and inputs to ``graph``.

    Args:
        graph: The graph to extend.
        prefix: Start of the generated node names (e.g. ``"loss"``, ``"sgd"``).
    """

    def __init__(self, graph: ir.Graph, prefix: str) -> None:
        self.graph = graph
        self.prefix = prefix
        self.nodes: list[ir.Node] = []
        self._names = GraphNames(graph)
        self._constants: dict[tuple, ir.Value] = {}

    def fresh(self, base: str) -> str:
        """A name unused in the graph, ``base`` itself when free."""
        return self._names.fresh(base)

    def taken(self, name: str) -> bool:
        """Whether a value or node of the graph already has ``name``."""
        return name in self._names

    def op(self, op_type: str, *inputs: ir.Value | None, **attributes: Any) -> ir.Value:
        """Appends a node with one output and returns the output."""
        attrs = ir.convenience.convert_attributes({k: v for k, v in attributes.items() if v is not None})
        name = self.fresh(f"{self.prefix}_{op_type}")
        node = ir.Node("", op_type, inputs, attributes=attrs, name=name)
        node.outputs[0].name = name
        self.graph.append(node)
        self.nodes.append(node)
        return node.outputs[0]

    def const(self, array: Any, dtype: ir.DataType | None = None) -> ir.Value:
        """A Constant node (equal small constants are shared).

        Constant nodes rather than initializers: float initializers are the parameters that
        ``build-gradients`` trains by default, and a loss's temperature is not one.
        """
        data = np.asarray(array, dtype=dtype.numpy() if dtype is not None else None)
        key = (data.dtype.str, data.shape, data.tobytes()) if data.size <= 64 else None
        if key is not None and key in self._constants:
            return self._constants[key]
        value = self.op("Constant", value=ir.tensor(data))
        value.type, value.shape = ir.TensorType(ir.DataType.from_numpy(data.dtype)), ir.Shape(data.shape)
        if key is not None:
            self._constants[key] = value
        return value

    def scalar(self, number: float, dtype: ir.DataType) -> ir.Value:
        """A 0-d constant of ``dtype``."""
        return self.const(np.asarray(number), dtype=dtype)

    def ints(self, values: list[int]) -> ir.Value:
        """A 1-D int64 constant (axes, shapes)."""
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1))

    def input(self, name: str, dtype: ir.DataType, dims: list[int | str | None] | None) -> ir.Value:
        """Appends a graph input named exactly ``name`` (the caller checked that it is free)."""
        self._names.add(name)
        value = ir.Value(name=name, type=ir.TensorType(dtype), shape=ir.Shape(dims) if dims is not None else None)
        self.graph.inputs.append(value)
        return value
