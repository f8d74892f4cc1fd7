"""QuantizeLinear/DequantizeLinear nodes: building them from a spec, and reading their parameters.

Scales and zero points are initializers shared by every node with the same parameters (one
``scale``/``zero_point`` pair per distinct quantization), named after the value they were first
made for. A per-channel pair carries the ``axis`` attribute (opset 13, or com.microsoft).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.quant.plan import ValueSpec
from onnxsmith.passes.quant.scales import INTEGER_BOUNDS, QuantParams, channel_ranges, params_for_range
from onnxsmith.passes.rewrite.scope import Namer

__all__ = ["QDQ_OPS", "QDQBuilder", "constant_array", "params_for_spec", "read_params", "same_params"]

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_QDQ_DOMAINS = frozenset({"", "ai.onnx", "com.microsoft"})


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The numpy value of an initializer or Constant-node output, else None."""
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and producer.domain in ("", "ai.onnx"):
        attr = producer.attributes.get("value")
        if attr is not None and attr.type == ir.AttributeType.TENSOR:
            return attr.as_tensor().numpy()
    return None


def params_for_spec(spec: ValueSpec, value: ir.Value) -> QuantParams:
    """Quantization parameters of ``value`` under ``spec``: from the range, or from the constant's values."""
    dtype = ir.DataType[spec.dtype.upper()]
    if spec.range is not None:
        return params_for_range(spec.range[0], spec.range[1], dtype, symmetric=spec.symmetric)
    array = constant_array(value)
    if array is None:
        raise ValueError(f"'{value.name}' has neither a range nor a constant value to quantize from")
    array = array.astype(np.float64)
    if spec.axis is None:
        return params_for_range(array.min(initial=0.0), array.max(initial=0.0), dtype, symmetric=spec.symmetric,
                                narrow=spec.narrow)
    low, high = channel_ranges(array, spec.axis)
    return params_for_range(low, high, dtype, symmetric=spec.symmetric, narrow=spec.narrow, axis=spec.axis)


def read_params(node: ir.Node) -> QuantParams | None:
    """The constant parameters of a QuantizeLinear/DequantizeLinear node, or None if not constant."""
    if node.op_type not in QDQ_OPS or node.domain not in _QDQ_DOMAINS or len(node.inputs) < 2:
        return None
    scale = constant_array(node.inputs[1])
    zero_value = node.inputs[2] if len(node.inputs) > 2 else None
    zero = constant_array(zero_value)
    if scale is None or (zero_value is not None and zero is None):
        return None
    if zero is None:
        dtype = ir.DataType.UINT8
        zero = np.zeros(scale.shape, np.uint8)
    else:
        dtype = ir.DataType.from_numpy(zero.dtype)
    if dtype not in INTEGER_BOUNDS and dtype != ir.DataType.INT32:
        return None
    if node.attributes.get("block_size") is not None and node.attributes["block_size"].as_int() > 0:
        return None
    axis_attr = node.attributes.get("axis")
    axis = (axis_attr.as_int() if axis_attr is not None else 1) if scale.ndim == 1 and scale.size > 1 else None
    return QuantParams(scale.astype(np.float32), zero, dtype, axis)


def same_params(a: QuantParams, b: QuantParams) -> bool:
    """Bitwise-equal scales and zero points of the same type and axis."""
    return (a.dtype == b.dtype and a.axis == b.axis and a.scale.shape == b.scale.shape
            and np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point))


class QDQBuilder:
    """Makes Q/DQ nodes and their parameter initializers in one graph, with unique names."""

    def __init__(self, graph: ir.Graph, domain: str = "") -> None:
        self.graph = graph
        self.domain = domain
        self._namer = Namer.for_graph(graph)
        self._constants: dict[Any, tuple[ir.Value, ir.Value]] = {}

    def fresh(self, base: str) -> str:
        """A value name not yet in the graph, starting from ``base``."""
        return self._namer.value(base)

    def _node_name(self, base: str) -> str:
        return self._namer.node(base)

    def initializer(self, array: np.ndarray, base: str) -> ir.Value:
        """Registers a new initializer named from ``base``."""
        name = self.fresh(base)
        tensor = ir.tensor(array, name=name)
        value = ir.Value(name=name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(array.shape),
                         const_value=tensor)
        self.graph.register_initializer(value)
        return value

    def parameters(self, params: QuantParams, float_dtype: ir.DataType, base: str) -> tuple[ir.Value, ir.Value]:
        """The (scale, zero point) initializers for ``params``, shared with earlier identical ones."""
        scale = params.scale.astype(float_dtype.numpy())
        key = (scale.tobytes(), scale.shape, params.zero_point.tobytes(), params.dtype, str(scale.dtype))
        if key not in self._constants:
            self._constants[key] = (self.initializer(scale, f"{base}_scale"),
                                    self.initializer(params.zero_point, f"{base}_zero_point"))
        return self._constants[key]

    def _node(self, op_type: str, inputs: list[ir.Value], params: QuantParams, output_name: str,
              output_dtype: ir.DataType, shape: ir.Shape | None) -> ir.Node:
        attributes = [ir.AttrInt64("axis", params.axis)] if params.axis is not None else []
        node = ir.Node(self.domain, op_type, inputs, attributes=attributes, num_outputs=1,
                       name=self._node_name(output_name))
        out = node.outputs[0]
        out.name = output_name
        out.type = ir.TensorType(output_dtype)
        out.shape = ir.Shape(shape) if shape is not None else None
        return node

    def quantize(self, value: ir.Value, params: QuantParams, base: str) -> ir.Node:
        """``QuantizeLinear(value)`` (not inserted), output named ``<base>_quantized``."""
        assert value.dtype is not None
        scale, zero = self.parameters(params, value.dtype, base)
        return self._node("QuantizeLinear", [value, scale, zero], params, self.fresh(f"{base}_quantized"),
                          params.dtype, value.shape)

    def dequantize(self, quantized: ir.Value, params: QuantParams, float_dtype: ir.DataType, base: str,
                   output_name: str | None = None) -> ir.Node:
        """``DequantizeLinear(quantized)`` (not inserted) to ``float_dtype``."""
        scale, zero = self.parameters(params, float_dtype, base)
        return self._node("DequantizeLinear", [quantized, scale, zero], params,
                          output_name or self.fresh(f"{base}_dequantized"), float_dtype, quantized.shape)
