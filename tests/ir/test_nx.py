"""The networkx dataflow view."""

from __future__ import annotations

import networkx as nx
import onnx_ir as ir
import pytest

from onnxsmith.ir import load, parse_text, to_networkx

MODEL = """
<ir_version: 9, opset_import: ["" : 17]>
g (float[2] x, bool c) => (float[2] y, float[2] z) <float[2] w = {1.0, 2.0}> {
    r = Relu(x)
    m = Mul(r, r)
    y = Add(m, w)
    dead = Neg(x)
    z = If(c) <then_branch = then_g () => (float[2] t) { t = Identity(r) },
               else_branch = else_g () => (float[2] e) { e = Neg(w) }>
}
"""


@pytest.fixture
def model() -> ir.Model:
    return parse_text(MODEL)


def edges(view: nx.MultiDiGraph) -> set[tuple]:
    return {(u, v, d["value"], d["output_index"], d["input_index"], d["implicit"])
            for u, v, d in view.edges(data=True)}


def test_nodes_are_the_onnx_nodes_in_graph_order(model):
    view = to_networkx(model)
    assert list(view.nodes) == ["n0", "n1", "n2", "n3", "n4"]
    assert [view.nodes[k]["op_type"] for k in view.nodes] == ["Relu", "Mul", "Add", "Neg", "If"]
    assert all(view.nodes[k]["node"] is node for k, node in zip(view.nodes, model.graph, strict=True))
    assert view.graph["name"] == "g"


def test_one_edge_per_use_with_indices(model):
    assert edges(to_networkx(model)) == {
        ("n0", "n1", "r", 0, 0, False),
        ("n0", "n1", "r", 0, 1, False),  # Mul(r, r): two parallel edges
        ("n1", "n2", "m", 0, 0, False),
        ("n0", "n4", "r", 0, None, True),  # read inside the then-branch
    }


def test_boundary_values_as_nodes(model):
    view = to_networkx(model, include_values=True)
    kinds = {k: view.nodes[k]["kind"] for k in view.nodes if view.nodes[k]["kind"] != "node"}
    assert kinds == {"input:x": "input", "input:c": "input", "initializer:w": "initializer",
                     "output:y": "output", "output:z": "output"}
    assert view.nodes["initializer:w"]["dtype"] == ir.DataType.FLOAT
    assert view.nodes["input:c"]["shape"] == ()
    assert edges(view) - edges(to_networkx(model)) == {
        ("input:x", "n0", "x", None, 0, False),
        ("input:x", "n3", "x", None, 0, False),
        ("input:c", "n4", "c", None, 0, False),
        ("initializer:w", "n2", "w", None, 1, False),
        ("initializer:w", "n4", "w", None, None, True),  # read inside the else-branch
        ("n2", "output:y", "y", 0, 0, False),
        ("n4", "output:z", "z", 0, 1, False),
    }


def test_analysis_finds_dead_nodes(model):
    view = to_networkx(model, include_values=True)
    live = set().union(*(nx.ancestors(view, k) for k in view.nodes if view.nodes[k]["kind"] == "output"))
    dead = [view.nodes[k]["op_type"] for k in view.nodes if view.nodes[k]["kind"] == "node" and k not in live]
    assert dead == ["Neg"]
    assert nx.is_directed_acyclic_graph(view)


def test_captures_from_nested_subgraphs():
    model = parse_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[2] x, bool c) => (float[2] z) {
        r = Relu(x)
        z = If(c) <then_branch = outer () => (float[2] t) {
                       t = If(c) <then_branch = inner1 () => (float[2] u) { u = Neg(r) },
                                  else_branch = inner2 () => (float[2] v) { v = Identity(x) }>
                   },
                   else_branch = other () => (float[2] e) { e = Identity(x) }>
    }
    """)
    view = to_networkx(model)
    assert edges(view) == {("n0", "n1", "r", 0, None, True)}


def test_repeated_calls_give_the_same_view(model):
    a, b = to_networkx(model, include_values=True), to_networkx(model, include_values=True)
    assert list(a.nodes(data=True)) == list(b.nodes(data=True))
    assert list(a.edges(keys=True, data=True)) == list(b.edges(keys=True, data=True))


def test_a_function_body(model):
    function = ir.Function("local", "F", graph=model.graph, attributes=[])
    view = to_networkx(function, include_values=True)
    assert {"input:x", "input:c", "output:y"} <= set(view.nodes)


def test_pass_through_output_and_graph(model):
    model.graph.outputs.append(model.graph.inputs[0])
    view = to_networkx(model.graph, include_values=True)
    assert view.has_edge("input:x", "output:x")


def test_external_weights_are_not_read(external_model):
    model = load(external_model)
    view = to_networkx(model, include_values=True)
    assert view.nodes["initializer:W0"]["shape"] == (128, 128)
    assert all(v.const_value.raw is None for v in model.graph.initializers.values()
               if isinstance(v.const_value, ir.ExternalTensor))
