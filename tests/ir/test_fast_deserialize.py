"""The fast main-graph deserializer builds exactly what onnx_ir's ``deserialize_model`` builds.

Both results are described field by field (nodes with every slot, values with names, types,
shapes, producers, uses in order, graph membership; attributes; the graph's name registry) and
compared, on hand-written models that exercise each fallback and on random models.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import HealthCheck, given, settings
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from onnxsmith.ir import _fast_deserialize
from onnxsmith.ir._fast_deserialize import deserialize_model
from onnxsmith.verify.strategies import models


def _value(v: ir.Value | None, index: dict[int, int]) -> tuple | None:
    if v is None:
        return None
    producer = v.producer()
    return (v.name, repr(v.type), repr(v.shape), v.doc_string, dict(v.metadata_props), dict(v.meta),
            None if producer is None else index.get(id(producer), "outside"), v.index(),
            [(index.get(id(u.node), "outside"), u.idx) for u in v.uses()],
            v.is_graph_input(), v.is_graph_output(), v.is_initializer(),
            None if v.const_value is None else (type(v.const_value).__name__, v.const_value.name))


def _attr(a: ir.Attr) -> tuple:
    value = a.value
    if a.is_ref():
        shown = a.ref_attr_name
    elif a.type == ir.AttributeType.GRAPH:
        shown = _graph(value)
    elif a.type == ir.AttributeType.GRAPHS:
        shown = [_graph(g) for g in value]
    elif a.type in (ir.AttributeType.TENSOR,):
        shown = (type(value).__name__, value.name, value.numpy().tolist())
    else:
        shown = repr(value)
    return type(a).__name__, a.name, a.type, a.doc_string, shown


def _graph(graph: ir.Graph) -> dict:
    nodes = list(graph)
    index = {id(n): i for i, n in enumerate(nodes)}
    described = []
    for node in nodes:
        fields = {slot: getattr(node, slot) for slot in type(node).__slots__
                  if slot not in ("_inputs", "_outputs", "_attributes", "_graph", "_metadata")}
        fields["graph"] = node.graph is graph
        fields["meta"] = dict(node.meta)
        fields["inputs"] = [_value(v, index) for v in node.inputs]
        fields["outputs"] = [_value(v, index) for v in node.outputs]
        fields["attributes"] = [(k, _attr(a)) for k, a in node.attributes.items()]
        fields["attributes_owner"] = node.attributes._owner is node
        described.append(fields)
    authority = graph._name_authority
    return {"nodes": described, "inputs": [_value(v, index) for v in graph.inputs],
            "outputs": [_value(v, index) for v in graph.outputs],
            "initializers": [(k, _value(v, index)) for k, v in graph.initializers.items()],
            "names": (sorted(authority._node_names), sorted(authority._value_names)),
            "fields": (graph.name, graph.doc_string, dict(graph.metadata_props), dict(graph.opset_imports))}


def _model(model: ir.Model) -> dict:
    return {"graph": _graph(model.graph), "functions": sorted(map(repr, model.functions)),
            "fields": (model.ir_version, model.producer_name, model.producer_version, model.domain,
                       model.model_version, model.doc_string, dict(model.metadata_props)),
            "bytes": ir.serde.serialize_model(model).SerializeToString(deterministic=True)}


def assert_same(proto: onnx.ModelProto) -> None:
    expected = ir.serde.deserialize_model(proto)
    assert _model(deserialize_model(proto)) == _model(expected)


def _make(nodes, inputs, outputs, *, initializers=(), value_info=(), functions=(), opset=18, **graph_fields):
    graph = oh.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers), value_info=list(value_info),
                          **graph_fields)
    imports = [oh.make_opsetid("", opset), oh.make_opsetid("local", 1)]
    return oh.make_model(graph, opset_imports=imports, functions=list(functions))


X = oh.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
Y = oh.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])


def test_the_fast_node_path_is_active():
    """This onnx_ir matches the private layout the fast path writes (else every test below is vacuous)."""
    assert _fast_deserialize._FAST_NODES


def test_attributes_of_every_simple_type_doc_strings_metadata_and_overloads():
    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    nodes = [
        oh.make_node("Add", ["x", "w"], ["a"], name="add", doc_string="adds"),
        oh.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones(3, np.float32))),
        oh.make_node("Mul", ["a", "c"], ["m"], domain="ai.onnx"),
        oh.make_node("Custom", ["m"], ["k", "", "k2"], domain="local", i=3, f=0.5, s="text", ints=[1, 2],
                     floats=[0.25], strings=["p", "q"]),
        oh.make_node("Identity", ["k"], ["y"]),
    ]
    nodes[3].attribute[0].doc_string = "an int"
    nodes[4].metadata_props.add(key="origin", value="export")
    nodes[4].overload = "v2"
    model = _make(nodes, [X], [Y], initializers=[weight],
                  value_info=[oh.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3])])
    model.graph.quantization_annotation.add(tensor_name="a").quant_parameter_tensor_names.add(key="SCALE_TENSOR",
                                                                                             value="w")
    model.graph.doc_string = "graph doc"
    model.doc_string = "model doc"
    assert_same(model)


def test_subgraphs_see_the_main_graph_and_values_defined_later():
    then = oh.make_graph([oh.make_node("Add", ["x", "late"], ["t"])], "then", [],
                         [oh.make_tensor_value_info("t", TensorProto.FLOAT, [2, 3])])
    other = oh.make_graph([oh.make_node("Identity", ["x"], ["e"])], "else", [],
                          [oh.make_tensor_value_info("e", TensorProto.FLOAT, [2, 3])])
    nodes = [oh.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True))),
             oh.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other),
             oh.make_node("Identity", ["x"], ["late"])]
    assert_same(_make(nodes, [X], [Y]))


def test_functions_with_reference_attributes_and_undefined_inputs(caplog):
    function = oh.make_function("local", "Scale", ["v"], ["out"],
                                [oh.make_node("Constant", [], ["s"], value_float=2.0),
                                 oh.make_node("Mul", ["v", "s"], ["out"])],
                                [oh.make_opsetid("", 18)], attributes=["alpha"])
    function.node[0].attribute[0].ref_attr_name = "alpha"
    nodes = [oh.make_node("Scale", ["x"], ["a"], domain="local", alpha=2.0),
             oh.make_node("Add", ["a", "nowhere"], ["y"])]  # an undefined input: invalid, but onnx_ir reads it
    with caplog.at_level(logging.WARNING):
        assert_same(_make(nodes, [X], [Y], functions=[function]))


def test_initializers_that_are_inputs_unnamed_and_graph_outputs_without_producer():
    w = numpy_helper.from_array(np.zeros((2, 3), np.float32), "x")  # an input with a default
    unnamed = numpy_helper.from_array(np.zeros(1, np.float32), "")
    model = _make([oh.make_node("Relu", ["x"], ["y"])], [X], [Y, oh.make_tensor_value_info("dangling",
                                                                                      TensorProto.FLOAT, [1])],
                  initializers=[w, unnamed])
    assert_same(model)


def test_a_redeclared_output_fails_as_in_onnx_ir():
    model = _make([oh.make_node("Relu", ["x"], ["y"]), oh.make_node("Relu", ["x"], ["y"])], [X], [Y])
    with pytest.raises(ir.serde.SerdeError) as expected:
        ir.serde.deserialize_model(model)
    with pytest.raises(ir.serde.SerdeError) as got:
        deserialize_model(model)
    assert str(got.value.__cause__) == str(expected.value.__cause__)


def test_the_constructor_path_when_the_private_layout_differs(monkeypatch):
    monkeypatch.setattr(_fast_deserialize, "_FAST_NODES", False)
    monkeypatch.setattr(_fast_deserialize, "_make_node", _fast_deserialize._init_node)
    nodes = [oh.make_node("Relu", ["x"], ["r"], name="r"), oh.make_node("Neg", ["r"], ["y"])]
    assert_same(_make(nodes, [X], [Y]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models(max_nodes=10))
def test_random_models(model):
    assert_same(ir.to_proto(model))
