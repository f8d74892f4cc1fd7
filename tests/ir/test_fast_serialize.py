"""The fast model serializer writes the very bytes onnx_ir's serializer writes.

Each test builds models that reach one of the fast path's cases (encoded nodes, value infos and
attributes, their caches) or one of its fallbacks to onnx_ir, and compares the two serializations
byte for byte. The onnx backend models are compared in tests/conformance.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import HealthCheck, given, settings

from onnxsmith.ir import infer_shapes, load, save
from onnxsmith.ir._fast_serialize import serialize_model
from onnxsmith.ir._proto_extras import deserialize
from onnxsmith.verify.strategies import models

FLOAT = ir.DataType.FLOAT


def _same_bytes(model: ir.Model) -> None:
    expected = ir.serde.serialize_model(model).SerializeToString()
    assert serialize_model(model).SerializeToString() == expected


def _model(nodes: list[ir.Node], inputs: list[ir.Value], outputs: list[ir.Value], *, ir_version: int = 10,
           initializers: list[ir.Value] = (), functions: list[ir.Function] = ()) -> ir.Model:
    graph = ir.Graph(inputs, outputs, nodes=nodes, initializers=initializers, opset_imports={"": 18, "local": 1},
                     name="g")
    return ir.Model(graph, ir_version=ir_version, functions=functions, producer_name="test")


def _tensor(name: str, shape: ir.Shape | None = None, dtype: ir.DataType = FLOAT) -> ir.Value:
    return ir.Value(name=name, type=ir.TensorType(dtype), shape=shape)


def test_rich_model(rich_proto: onnx.ModelProto, tmp_path) -> None:
    """Subgraphs, functions, sparse and external tensors, metadata and doc strings everywhere."""
    model = deserialize(rich_proto, tmp_path)
    _same_bytes(model)
    infer_shapes(model)
    _same_bytes(model)


def test_shapes_and_types() -> None:
    """Scalar, negative, large, symbolic and unknown dims; unshaped, untyped and non-tensor values."""
    x = _tensor("x", ir.Shape(["N", 3]))
    shapes = [ir.Shape([]), ir.Shape([-1, 1 << 40, 300]), ir.Shape(["N", None, 3]), None, ir.Shape(["N", 3])]
    outputs, nodes = [], []
    for i, shape in enumerate(shapes):
        node = ir.Node("", "Relu", [x], num_outputs=1)
        node.outputs[0].name, node.outputs[0].type, node.outputs[0].shape = f"v{i}", ir.TensorType(FLOAT), shape
        nodes.append(node)
    odd = {"seq": (ir.SequenceType(ir.TensorType(FLOAT)), None), "sparse": (ir.SparseTensorType(FLOAT), ir.Shape([2])),
           "shape_only": (None, ir.Shape([2])), "untyped": (None, None), "denoted": (ir.TensorType(FLOAT), None)}
    for name, (type_, shape) in odd.items():
        node = ir.Node("", "Identity", [x], num_outputs=1)
        node.outputs[0].name, node.outputs[0].type, node.outputs[0].shape = name, type_, shape
        nodes.append(node)
    nodes[-1].outputs[0].type = ir.TensorType(FLOAT, denotation="IMAGE")
    denoted = ir.Node("", "Relu", [x], num_outputs=1)
    denoted.outputs[0].name, denoted.outputs[0].type = "dim_denoted", ir.TensorType(FLOAT)
    denoted.outputs[0].shape = ir.Shape(["N", 3], denotations=["DATA_BATCH", None])
    nodes.append(denoted)
    documented = ir.Node("", "Relu", [x], num_outputs=1)
    documented.outputs[0].name, documented.outputs[0].type = "documented", ir.TensorType(FLOAT)
    documented.outputs[0].doc_string = "a doc"
    documented.outputs[0].metadata_props["k"] = "v"
    nodes.append(documented)
    unnamed = ir.Node("", "Relu", [x], num_outputs=1)
    unnamed.outputs[0].type = ir.TensorType(FLOAT)
    nodes.append(unnamed)
    outputs.append(nodes[0].outputs[0])
    _same_bytes(_model(nodes, [x], outputs))


def test_node_fields_and_fallbacks() -> None:
    """Names (non-ASCII, long), domains, overloads, missing inputs, unnamed outputs, doc strings, metadata."""
    x = _tensor("x", ir.Shape([2]))
    long_name = "é" * 100  # 200 UTF-8 bytes: a two-byte length
    a = ir.Node("", "Relu", [x], num_outputs=1, name=long_name)
    a.outputs[0].name = long_name + "_out"
    b = ir.Node("com.microsoft", "Custom", [a.outputs[0], None, x], num_outputs=3, name="b", overload="o")
    b.outputs[0].name, b.outputs[1].name, b.outputs[2].name = "b0", "", "b2"  # an unnamed one between named ones
    c = ir.Node("", "Split", [x], num_outputs=3, name="")
    # trailing unnamed outputs ("" or None) are left out
    c.outputs[0].name, c.outputs[1].name, c.outputs[2].name = "c0", "", ""
    d = ir.Node("", "Relu", [c.outputs[0]], num_outputs=1, doc_string="doc")
    d.outputs[0].name = "d0"
    e = ir.Node("", "Relu", [d.outputs[0]], num_outputs=1, name="e")
    e.outputs[0].name = "e0"
    e.metadata_props["k"] = "v"
    f = ir.Node("", "Split", [x], num_outputs=2)  # no named output at all
    _same_bytes(_model([a, b, c, d, e, f], [x], [e.outputs[0]]))


def test_attributes() -> None:
    """Plain attributes share cached bytes only when equal bit for bit (0.0 and -0.0 differ)."""
    x = _tensor("x", ir.Shape([2]))
    values = [0.0, -0.0, 0.0, float("nan"), float("inf"), 1.5]
    nodes = []
    for i, f in enumerate(values):
        attrs = [ir.AttrFloat32("alpha", f), ir.AttrFloat32s("fs", [f, -f]), ir.AttrInt64("i", i % 2),
                 ir.AttrInt64s("is", [-1, i, 1 << 40]), ir.AttrString("s", "é" * i), ir.AttrStrings("ss", ["a", ""])]
        nodes.append(ir.Node("", "Custom", [x], attributes=attrs, num_outputs=1, name=f"n{i}"))
        nodes[-1].outputs[0].name = f"y{i}"
    tensor = ir.Node("", "Constant", [], attributes=[ir.AttrTensor("value", ir.tensor(np.arange(3.0)))],
                     num_outputs=1)
    tensor.outputs[0].name = "const"
    documented = ir.Node("", "Custom", [x], attributes=[ir.Attr("k", ir.AttributeType.INT, 1, doc_string="d")],
                         num_outputs=1)
    documented.outputs[0].name = "documented"
    nodes += [tensor, documented]
    _same_bytes(_model(nodes, [x], [nodes[0].outputs[0]]))


def test_string_attribute_as_bytes_warns_each_time(caplog) -> None:
    """A bytes-valued string attribute is left to onnx_ir, which warns about it (once per node)."""
    x = _tensor("x", ir.Shape([2]))
    nodes = [ir.Node("", "Custom", [x], attributes=[ir.Attr("s", ir.AttributeType.STRING, b"\xff")], num_outputs=1)
             for _ in range(2)]
    for i, node in enumerate(nodes):
        node.outputs[0].name = f"y{i}"
    model = _model(nodes, [x], [nodes[0].outputs[0]])
    with caplog.at_level(logging.WARNING, logger="onnx_ir"):
        serialize_model(model)
    assert sum("should be a string" in r.getMessage() for r in caplog.records) == 2
    _same_bytes(model)


def test_quantization_annotations_and_initializers() -> None:
    x = _tensor("x", ir.Shape([2]))
    w = _tensor("w", ir.Shape([2]))
    w.const_value = ir.tensor(np.ones(2, np.float32), name="w")
    bare = ir.Value(name="bare")
    bare.const_value = ir.tensor(np.zeros(1, np.float32), name="other")  # renamed to the value's name
    node = ir.Node("", "Add", [x, w], num_outputs=1, name="add")
    node.outputs[0].name, node.outputs[0].type = "y", ir.TensorType(FLOAT)
    for value in (x, w, node.outputs[0]):
        value.meta["quant_parameter_tensor_names"] = {"SCALE_TENSOR": f"{value.name}_scale", "A": "b"}
    out = ir.Node("", "Relu", [node.outputs[0]], num_outputs=1)
    out.outputs[0].name = "out"
    out.outputs[0].meta["quant_parameter_tensor_names"] = {"SCALE_TENSOR": "s"}
    _same_bytes(_model([node, out], [x], [out.outputs[0]], initializers=[w, bare]))


@pytest.mark.parametrize("ir_version", [8, 10])
def test_functions_and_subgraphs(ir_version: int) -> None:
    """Functions (whose value infos go to the main graph below IR 10) and an If with subgraphs."""
    fx = _tensor("fx", ir.Shape([2]))
    inner = ir.Node("", "Relu", [fx], num_outputs=1)
    inner.outputs[0].name, inner.outputs[0].type = "fy", ir.TensorType(FLOAT)
    ref = ir.Node("", "LeakyRelu", [inner.outputs[0]], attributes=[ir.RefAttr("alpha", "a", ir.AttributeType.FLOAT)],
                  num_outputs=1)
    ref.outputs[0].name = "fz"
    function = ir.Function("local", "f", "", graph=ir.Graph([fx], [ref.outputs[0]], nodes=[inner, ref],
                                                          opset_imports={"": 18}),
                           attributes=[ir.Attr("a", ir.AttributeType.FLOAT, None)])
    x = _tensor("x", ir.Shape([2]))
    cond = _tensor("cond", ir.Shape([]), ir.DataType.BOOL)
    call = ir.Node("local", "f", [x], num_outputs=1, attributes=[ir.AttrFloat32("a", 0.1)])
    call.outputs[0].name = "called"
    branch_node = ir.Node("", "Identity", [call.outputs[0]], num_outputs=1)
    branch_node.outputs[0].name, branch_node.outputs[0].type = "branch", ir.TensorType(FLOAT)
    branch = ir.Graph([], [branch_node.outputs[0]], nodes=[branch_node], name="branch")
    if_node = ir.Node("", "If", [cond], attributes=[ir.AttrGraph("then_branch", branch),
                                                   ir.AttrGraph("else_branch", branch)], num_outputs=1)
    if_node.outputs[0].name = "chosen"
    _same_bytes(_model([call, if_node], [x, cond], [if_node.outputs[0]], ir_version=ir_version,
                       functions=[function]))


def test_model_fields() -> None:
    x = _tensor("x", ir.Shape([2]))
    node = ir.Node("", "Relu", [x], num_outputs=1)
    node.outputs[0].name = "y"
    model = _model([node], [x], [node.outputs[0]])
    model.producer_version, model.domain, model.model_version, model.doc_string = "1", "d", 3, "doc"
    model.metadata_props.update({"b": "2", "a": "1"})
    model.graph.doc_string = "graph doc"
    model.graph.metadata_props["k"] = "v"
    _same_bytes(model)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models(max_nodes=14, dtypes=("float32", "int64")))
def test_random_models(model: ir.Model) -> None:
    """As drawn, and after shape inference has typed every value."""
    _same_bytes(model)
    infer_shapes(model)
    _same_bytes(model)


def test_save_writes_onnx_ir_bytes(rich_proto: onnx.ModelProto, tmp_path) -> None:
    """``save`` (which uses the fast serializer) round-trips the rich model as before."""
    source, target = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(rich_proto, source)
    model = load(source)
    save(model, target)
    again = load(target)
    _same_bytes(again)
    save(again, tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == target.read_bytes()


def test_a_name_that_is_not_a_string_fails_as_in_onnx_ir() -> None:
    x = _tensor("x", ir.Shape([2]))
    node = ir.Node("", "Relu", [x], num_outputs=1)
    node.outputs[0].name = "y"
    model = _model([node], [x], [node.outputs[0]])
    node.outputs[0]._name = 3  # corrupt on purpose: the fast path must leave it to onnx_ir
    with pytest.raises(Exception) as fast:
        serialize_model(model)
    with pytest.raises(Exception) as reference:
        ir.serde.serialize_model(model)
    assert type(fast.value) is type(reference.value)



def _initializer(name: str, tensor: ir.TensorProtocol) -> ir.Value:
    value = ir.Value(name=name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(tensor.shape.dims))
    value.const_value = tensor
    return value


def test_initializer_tensors() -> None:
    """Every element type in memory and in a proto; scalars, empty and large tensors, doc strings, metadata."""
    initializers = []
    for dtype in ir.DataType:
        if dtype in (ir.DataType.UNDEFINED, ir.DataType.STRING):
            continue
        array = np.arange(6).reshape(2, 3).astype(dtype.numpy())
        tensor = ir.Tensor(array, dtype=dtype, name="stale name")  # the value's name wins
        initializers.append(_initializer(f"mem_{dtype.name}", tensor))
        initializers.append(_initializer(f"proto_{dtype.name}", ir.serde.TensorProtoTensor(
            ir.serde.serialize_tensor(tensor))))
    initializers += [_initializer("scalar", ir.tensor(np.float32(2.5))),
                     _initializer("empty", ir.tensor(np.zeros((0, 3), np.int64))),
                     _initializer("large", ir.tensor(np.ones(1 << 15, np.float32))),
                     _initializer("strings", ir.StringTensor(np.array([b"a", b"bc"]))),
                     _initializer("documented", ir.Tensor(np.ones(2, np.float32), doc_string="doc"))]
    initializers[-1].const_value.metadata_props["k"] = "v"
    x = _tensor("x", ir.Shape([2]))
    node = ir.Node("", "Relu", [x], num_outputs=1)
    node.outputs[0].name = "y"
    _same_bytes(_model([node], [x], [node.outputs[0]], initializers=initializers))
