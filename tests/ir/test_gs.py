"""onnx-graphsurgeon interop: to_gs/from_gs and passes written against a gs Graph."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxsmith.errors import OnnxsmithError, UnsupportedError
from onnxsmith.ir import from_gs, gs_pass, load, parse_text, to_gs
from onnxsmith.ir.queries import op_histogram
from onnxsmith.passes import PassManager
from onnxsmith.verify._session import run_model

gs = pytest.importorskip("onnx_graphsurgeon")

MODEL = """
<ir_version: 9, opset_import: ["" : 17, "com.example" : 1], producer_name: "unit-test", model_version: 3,
 doc_string: "identity-heavy">
g (float[2, 3] x, bool c) => (float[2, 3] y, float[2, 3] z) <float[3] w = {1.0, 2.0, 3.0}> {
    a = Identity(x)
    b = Add(a, w)
    d = Identity(b)
    y = Relu(d)
    z = If(c) <then_branch = t () => (float[2, 3] t_out) { t_out = Identity(d) },
               else_branch = e () => (float[2, 3] e_out) { e_out = Neg(d) }>
}
"""


@pytest.fixture
def model() -> ir.Model:
    model = parse_text(MODEL)
    model.metadata_props["source"] = "tests"
    model.graph.metadata_props["stage"] = "raw"
    node = model.graph.node(1)
    node.name = "add_w"
    node.metadata_props["origin"] = "bias"
    return model


INPUTS = {"x": np.arange(-3, 3, dtype=np.float32).reshape(2, 3), "c": np.array(True)}


def outputs(model: ir.Model, inputs=INPUTS) -> list[np.ndarray]:
    return run_model(model, inputs)


def remove_identity(graph) -> None:
    """Removes Identity nodes (written against onnx-graphsurgeon)."""
    for node in [n for n in graph.nodes if n.op == "Identity"]:
        source, result = node.inputs[0], node.outputs[0]
        if result in graph.outputs:
            continue
        for consumer in list(result.outputs):
            consumer.inputs[consumer.inputs.index(result)] = source
        for subgraph in graph.subgraphs(recursive=True):  # uses inside If/Loop bodies
            for inner in subgraph.nodes:
                inner.inputs = [source if t is result else t for t in inner.inputs]
        node.outputs.clear()
    graph.cleanup().toposort()


def test_round_trip_through_gs_is_equivalent(model):
    back = from_gs(to_gs(model), like=model)
    for expected, actual in zip(outputs(model), outputs(back), strict=True):
        np.testing.assert_array_equal(expected, actual)
    assert op_histogram(back) == op_histogram(model)


def test_like_restores_what_gs_drops(model):
    back = from_gs(to_gs(model), like=model)
    assert (back.producer_name, back.model_version, back.doc_string) == ("unit-test", 3, "identity-heavy")
    assert back.metadata_props["source"] == "tests"
    assert back.graph.metadata_props["stage"] == "raw"
    assert back.opset_imports["com.example"] == 1  # no node uses it, gs alone would drop it
    assert back.graph.node(1).metadata_props["origin"] == "bias"


def test_external_weights_stay_unread_and_identical(external_model):
    model = load(external_model)
    originals = {name: v.const_value for name, v in model.graph.initializers.items()}
    back = from_gs(to_gs(model), like=model)
    for name, tensor in originals.items():
        if isinstance(tensor, ir.ExternalTensor):
            assert back.graph.initializers[name].const_value is tensor
            assert tensor.raw is None


def test_gs_constant_values_come_from_the_external_file(external_model):
    graph = to_gs(load(external_model))
    constant = graph.tensors()["W1"]
    expected = onnx.numpy_helper.to_array(onnx.load_model(external_model).graph.initializer[2])
    np.testing.assert_array_equal(constant.values, expected)


def test_gs_pass_runs_in_a_pipeline_with_numeric_verification(model, scratch_registry):
    gs_pass(remove_identity, name=scratch_registry("gs-remove-identity"))
    expected = outputs(model)
    report = PassManager("gs-remove-identity", verify="numeric", inputs=INPUTS).run(model)
    assert report.records[0].modified
    assert report.records[0].max_abs_error == 0.0
    assert [n.op_type for n in model.graph] == ["Add", "Relu", "If"]
    assert model.metadata_props["source"] == "tests"
    for before, after in zip(expected, outputs(model), strict=True):
        np.testing.assert_array_equal(before, after)


def test_a_gs_pass_that_changes_nothing_says_so(model, scratch_registry):
    @gs_pass(name=scratch_registry("gs-look-only"))
    def look_only(graph) -> None:
        """Counts nodes and changes nothing."""
        assert len(graph.nodes) == 5

    graph_before = model.graph
    report = PassManager("gs-look-only").run(model)
    assert not report.records[0].modified
    assert model.graph is graph_before


def test_an_explicit_result_is_trusted(model):
    def claim_unchanged(graph) -> bool:
        """Edits the graph but reports no change."""
        graph.nodes.clear()
        return False

    pass_cls = gs_pass(claim_unchanged, name="gs-claim-unchanged", register=False)
    assert pass_cls.summary() == "Edits the graph but reports no change."
    assert not pass_cls()(model).modified
    assert len(model.graph) == 5


def test_function_overloads_are_refused(model):
    function = ir.Function("local", "F", "v2", graph=ir.Graph([], [], nodes=[], name="body"), attributes=[])
    model.functions[function.identifier()] = function
    with pytest.raises(UnsupportedError, match="overload"):
        to_gs(model)


def test_missing_graphsurgeon_is_a_clear_error(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx_graphsurgeon", None)
    with pytest.raises(OnnxsmithError) as caught:
        to_gs(model)
    assert caught.value.message == "onnx-graphsurgeon is not installed"
    assert caught.value.remedy == "pip install onnxsmith[gs]"
