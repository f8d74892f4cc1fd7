"""The lean deserializer builds the very model onnx_ir builds, and leaves what is not plain to onnx_ir."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto
from onnx import helper as oh

from onnxsmith.ir._deserialize import _deserialize_graph, _NotPlain, _plain_model, deserialize_model


def _serialized(model: ir.Model) -> bytes:
    return ir.serde.serialize_model(model).SerializeToString(deterministic=True)


def _uses(model: ir.Model) -> list[list[tuple[str, int]]]:
    """Per value, in graph order, who reads it: the order in which nodes registered their uses."""
    values = [*model.graph.inputs, *model.graph.initializers.values()]
    values += [out for node in model.graph for out in node.outputs]
    return [[(use.node.name, use.idx) for use in value.uses()] for value in values]


def assert_same_as_onnx_ir(proto: onnx.ModelProto) -> ir.Model:
    expected, actual = ir.serde.deserialize_model(proto), deserialize_model(proto)
    assert _serialized(actual) == _serialized(expected)
    assert _uses(actual) == _uses(expected)
    return actual


def _annotated(model: onnx.ModelProto) -> onnx.ModelProto:
    """With inferred value_info, doc strings and metadata on everything that has them."""
    try:
        annotated = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        annotated = onnx.ModelProto()
        annotated.CopyFrom(model)
    annotated.doc_string, annotated.graph.doc_string = "model doc", "graph doc"
    for i, node in enumerate(annotated.graph.node):
        node.doc_string = f"node {i}"
        node.metadata_props.add(key="index", value=str(i))
    for value in (*annotated.graph.input, *annotated.graph.output, *annotated.graph.value_info):
        value.doc_string = f"{value.name} doc"
        value.metadata_props.add(key="of", value=value.name)
    return annotated


def _backend_models() -> list[tuple[str, onnx.ModelProto]]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(case.name, case.model) for case in collect_testcases()]


BACKEND = _backend_models()


@pytest.mark.parametrize("annotate", [False, True], ids=["as-shipped", "annotated"])
def test_every_backend_node_model_deserializes_as_onnx_ir_does(annotate):
    plain = 0
    for name, model in BACKEND:
        proto = _annotated(model) if annotate else model
        try:
            assert_same_as_onnx_ir(proto)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
        plain += _plain_model(proto) and _is_plain_graph(proto)
    assert plain > 0.9 * len(BACKEND)  # the lean path itself was compared, not only the fallback


def _is_plain_graph(proto: onnx.ModelProto) -> bool:
    try:
        _deserialize_graph(proto.graph)
    except _NotPlain:
        return False
    return True


def _rich_plain_model() -> onnx.ModelProto:
    """Used-before-defined nodes, an initialized input, empty inputs and outputs, every attribute kind."""
    weight = onnx.numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    bias = onnx.numpy_helper.from_array(np.zeros(2, np.float32), "x")  # initializer of input x
    nodes = [
        oh.make_node("Relu", ["mm"], ["r"], name="relu_first", doc_string="reads mm before it is defined"),
        oh.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),
        oh.make_node("Clip", ["r", "", "w"], ["clipped"], name="clip"),
        oh.make_node("Dropout", ["clipped"], ["y", ""], name="drop", ratio=0.0),
        oh.make_node("Custom", ["y"], ["z"], domain="com.example", name="custom", i=1, f=2.5, s="text",
                     ints=[1, 2], floats=[0.5], strings=["a", "b"], t=weight, tensors=[weight]),
    ]
    nodes[4].attribute.add(name="tp", type=onnx.AttributeProto.TYPE_PROTO).tp.CopyFrom(
        oh.make_tensor_type_proto(TensorProto.FLOAT, ["N", 2]))
    graph = oh.make_graph(nodes, "rich", [oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                          [oh.make_tensor_value_info("z", TensorProto.FLOAT, None)], [weight, bias],
                          value_info=[oh.make_tensor_value_info("mm", TensorProto.FLOAT, ["N", 2]),
                                      oh.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2])],
                          doc_string="graph doc")
    graph.metadata_props.add(key="g", value="1")
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18), oh.make_opsetid("com.example", 1)],
                          producer_name="test", producer_version="1", domain="example", model_version=3,
                          doc_string="model doc")
    model.metadata_props.add(key="m", value="2")
    nodes = model.graph.node
    nodes[1].metadata_props.add(key="n", value="3")
    return model


def test_a_rich_plain_model_takes_the_lean_path_and_matches_onnx_ir():
    proto = _rich_plain_model()
    assert _plain_model(proto) and _is_plain_graph(proto)
    assert_same_as_onnx_ir(proto)


def _with_subgraph(proto: onnx.ModelProto) -> None:
    then = oh.make_graph([oh.make_node("Identity", ["y"], ["t"])], "then", [],
                         [oh.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    proto.graph.node.append(oh.make_node("If", ["c"], ["out"], then_branch=then, else_branch=then))
    proto.graph.input.append(oh.make_tensor_value_info("c", TensorProto.BOOL, []))


def _with_undefined_input(proto: onnx.ModelProto) -> None:
    proto.graph.node[0].input[0] = "nowhere"


def _with_quantization_annotation(proto: onnx.ModelProto) -> None:
    annotation = proto.graph.quantization_annotation.add(tensor_name="mm")
    annotation.quant_parameter_tensor_names.add(key="SCALE_TENSOR", value="w")


def _with_undefined_output(proto: onnx.ModelProto) -> None:
    proto.graph.output.append(oh.make_tensor_value_info("dangling", TensorProto.FLOAT, None))


def _with_ir9_function(proto: onnx.ModelProto) -> None:
    proto.ir_version = 9
    proto.functions.append(oh.make_function("com.example", "F", ["a"], ["b"], [oh.make_node("Neg", ["a"], ["b"])],
                                            [oh.make_opsetid("", 18)]))


@pytest.mark.parametrize("change", [_with_subgraph, _with_undefined_input, _with_quantization_annotation,
                                    _with_undefined_output, _with_ir9_function])
def test_what_is_not_plain_is_left_to_onnx_ir(change):
    proto = _rich_plain_model()
    change(proto)
    assert not (_plain_model(proto) and _is_plain_graph(proto))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_as_onnx_ir(proto)


def test_a_name_defined_twice_fails_as_onnx_ir_does():
    proto = _rich_plain_model()
    proto.graph.node[2].output[0] = "r"
    with pytest.raises(Exception) as expected:
        ir.serde.deserialize_model(proto)
    with pytest.raises(type(expected.value)) as actual:
        deserialize_model(proto)
    assert str(actual.value) == str(expected.value)
