"""A one-node ONNX model around a node of the IR, for onnxruntime and ONNX shape inference.

Inputs are named ``in0, in1, ...`` (missing optional inputs stay empty) and outputs ``out0, ...``,
so the node's own value names never matter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx
import onnx_ir as ir

__all__ = ["MAX_IR_VERSION", "input_names", "single_node_model"]

#: Newest IR version the one-node models are written with (onnxruntime rejects newer ones).
MAX_IR_VERSION = 10


def input_names(node: ir.Node) -> list[str]:
    """The one-node model's input names, position by position ("" for a missing input)."""
    return [f"in{i}" if v is not None else "" for i, v in enumerate(node.inputs)]


def single_node_model(node: ir.Node, inputs: Sequence[onnx.ValueInfoProto], opset_imports: Mapping[str, int],
                      ir_version: int, *, initializers: Sequence[onnx.TensorProto] = ()) -> onnx.ModelProto:
    """The node alone in a model whose graph inputs are ``inputs`` and whose outputs are untyped."""
    proto = ir.serde.serialize_node(node)
    del proto.input[:]
    proto.input.extend(input_names(node))
    outputs = [f"out{i}" for i in range(len(node.outputs))]
    del proto.output[:]
    proto.output.extend(outputs)
    graph = onnx.helper.make_graph([proto], "single_node", list(inputs),
                                   [onnx.helper.make_value_info(n, onnx.TypeProto()) for n in outputs],
                                   list(initializers))
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opset_imports.items()],
                                  ir_version=min(ir_version, MAX_IR_VERSION))
