"""Discarded: nodes leave use at once and their graphs in one call per graph, with onnx_ir's safety checks."""

from __future__ import annotations

import pytest

from onnxsmith.ir import parse_text
from onnxsmith.passes.cleanup._graphs import Discarded

MODEL = """
<ir_version: 9, opset_import: ["" : 17]>
g (float[2] x) => (float[2] y) {
    a = Relu(x)
    b = Neg(a)
    y = Abs(x)
}
"""


def test_a_discarded_node_releases_its_inputs_at_once_and_leaves_its_graph_on_remove():
    model = parse_text(MODEL)
    relu, neg, _ = list(model.graph)
    discarded = Discarded()
    discarded.add(neg)
    assert neg in discarded and neg.graph is model.graph
    assert not relu.outputs[0].uses()  # a is unused now, though Neg is still in the graph
    discarded.add(relu)
    discarded.remove()
    assert [n.op_type for n in model.graph] == ["Abs"]
    assert neg not in discarded and relu.graph is None
    assert [use.node.op_type for use in model.graph.inputs[0].uses()] == ["Abs"]


def test_remove_refuses_a_node_whose_output_is_still_read():
    model = parse_text(MODEL)
    relu, _, _ = list(model.graph)
    discarded = Discarded()
    discarded.add(relu)  # Neg still reads a
    with pytest.raises(ValueError):
        discarded.remove()
    assert relu.graph is model.graph  # onnx_ir checks before it changes anything
