"""``infer_shapes``' inference proto holds what onnx_ir writes, less what inference does not read.

Its nodes are onnx_ir's NodeProtos without name, doc string and metadata; its small initializers
are onnx_ir's TensorProtos under their values' names; its value infos are onnx_ir's without doc
string and metadata. Types written back are fresh, mutable shapes.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from hypothesis import HealthCheck, given, settings

from onnxsmith.ir import infer_shapes
from onnxsmith.ir._fast_shape import new_shape
from onnxsmith.ir._proto_extras import deserialize
from onnxsmith.ir.shapes import _DATA_LIMIT_BYTES, _inference_proto
from onnxsmith.verify.strategies import models

_NOT_READ = ("name", "doc_string", "metadata_props", "device_configurations")


def _stripped(message, fields=_NOT_READ) -> bytes:
    for field in fields:
        if field in message.DESCRIPTOR.fields_by_name:
            message.ClearField(field)
    return message.SerializeToString()


def _expected(model: ir.Model) -> tuple[list[bytes], list[bytes], list[bytes]]:
    graph = model.graph
    nodes = [_stripped(ir.serde.serialize_node(node)) for node in graph]
    small = [v for v in graph.initializers.values()
             if v.const_value is not None and v.const_value.dtype != ir.DataType.STRING
             and v.const_value.nbytes <= _DATA_LIMIT_BYTES]
    tensors = []
    for value in small:
        tensor = ir.serde.serialize_tensor(value.const_value)
        tensor.name = value.name
        tensors.append(tensor.SerializeToString())
    typed = [v for v in small if v.type is not None or v.shape is not None]
    typed += [v for node in graph for v in node.outputs
              if v.name and (v.type is not None or v.shape is not None) and not v.is_graph_output()]
    infos = [_stripped(ir.serde.serialize_value(v), ("doc_string", "metadata_props")) for v in typed]
    return nodes, tensors, infos


def _assert_proto_holds_onnx_ir_pieces(model: ir.Model) -> None:
    graph = _inference_proto(model).graph
    nodes, tensors, infos = _expected(model)
    assert [n.SerializeToString() for n in graph.node] == nodes
    assert [t.SerializeToString() for t in graph.initializer] == tensors
    assert [i.SerializeToString() for i in graph.value_info] == infos


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models(max_nodes=12, dtypes=("float32", "int64")))
def test_random_models(model: ir.Model) -> None:
    _assert_proto_holds_onnx_ir_pieces(model)
    infer_shapes(model)
    _assert_proto_holds_onnx_ir_pieces(model)


def test_rich_model(rich_proto: onnx.ModelProto, tmp_path) -> None:
    model = deserialize(rich_proto, tmp_path)
    _assert_proto_holds_onnx_ir_pieces(model)
    infer_shapes(model)
    _assert_proto_holds_onnx_ir_pieces(model)


def test_documented_nodes_long_names_and_proto_initializers() -> None:
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(["N", 2]))
    weight = ir.Value(name="w", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2]))
    weight.const_value = ir.serde.TensorProtoTensor(ir.serde.serialize_tensor(
        ir.tensor(np.ones(2, np.float32), name="stale")))  # written under the value's name
    add = ir.Node("", "Add", [x, weight], num_outputs=1, name="add", doc_string="doc",
                  attributes=[ir.AttrFloat32("unused", -0.0)])
    add.metadata_props["k"] = "v"
    add.outputs[0].name, add.outputs[0].type = "sum" * 50, ir.TensorType(ir.DataType.FLOAT)  # a two-byte length
    add.outputs[0].doc_string = "a doc"
    add.outputs[0].metadata_props["k"] = "v"
    relu = ir.Node("", "Relu", [add.outputs[0]], num_outputs=1)
    relu.outputs[0].name = "y"
    short = ir.Node("", "Relu", [add.outputs[0]], num_outputs=1)
    short.outputs[0].name = "r"  # a one-byte length
    graph = ir.Graph([x], [relu.outputs[0]], nodes=[add, relu, short], initializers=[weight], opset_imports={"": 18})
    model = ir.Model(graph, ir_version=10)
    _assert_proto_holds_onnx_ir_pieces(model)
    assert infer_shapes(model)
    assert add.outputs[0].shape == ir.Shape(["N", 2]) and short.outputs[0].shape == ir.Shape(["N", 2])
    _assert_proto_holds_onnx_ir_pieces(model)


def test_written_shapes_are_fresh_and_mutable() -> None:
    dims = (1, ir.SymbolicDim("N"), ir.SymbolicDim(None))
    shape, other = new_shape(dims), new_shape(dims)
    assert shape == ir.Shape(dims) and shape is not other and not shape.frozen
    assert [shape.get_denotation(i) for i in range(3)] == [None, None, None]
    shape[0] = 5
    assert other.dims == dims and shape.dims == (5, *dims[1:])


def test_new_shape_falls_back_to_the_constructor_when_the_layout_differs(monkeypatch) -> None:
    from onnxsmith.ir import _fast_shape
    from onnxsmith.ir._private import agrees

    assert _fast_shape.new_shape is _fast_shape._direct  # this onnx_ir: the direct path is checked and used
    monkeypatch.setattr(_fast_shape, "_direct", lambda dims: ir.Shape(list(dims)[:-1]))
    assert not agrees(_fast_shape._same_layout)
