"""The C-level field getters read what onnx_ir's public properties read."""

from __future__ import annotations

from operator import attrgetter

import onnx_ir as ir

from onnxsmith.ir import _fields
from onnxsmith.ir._fields import (NODE_ATTRIBUTE_DICT, NODE_DOMAIN_OP, NODE_INPUTS, NODE_OUTPUTS, VALUE_NAME,
                                  VALUE_PRODUCER)


def test_getters_read_slots_and_agree_with_the_properties():
    x = ir.Value(name="x")
    node = ir.Node("com.example", "Op", [x, None], [ir.AttrFloat32("alpha", 0.5)], num_outputs=2)
    assert repr(NODE_INPUTS) == "operator.attrgetter('_inputs')"  # this onnx_ir has the slot: the fast path
    assert NODE_DOMAIN_OP(node) == ("com.example", "Op")
    assert NODE_INPUTS(node) == node.inputs and NODE_OUTPUTS(node) == node.outputs
    assert NODE_ATTRIBUTE_DICT(node) == {"alpha": node.attributes["alpha"]}
    assert VALUE_NAME(x) == "x" and VALUE_PRODUCER(node.outputs[1]) is node and VALUE_PRODUCER(x) is None


def test_the_public_property_when_a_class_lacks_the_slot():
    class Plain:
        __slots__ = ("other",)

        @property
        def inputs(self):
            return (1, 2)

    public = attrgetter("inputs")
    assert _fields._getter(public, "_inputs", sample=Plain()) is public


def test_the_public_property_when_the_slot_holds_something_else():
    class Renamed:
        __slots__ = ("_inputs",)

        def __init__(self):
            self._inputs = "stale"

        @property
        def inputs(self):
            return (1, 2)

    public = attrgetter("inputs")
    assert _fields._getter(public, "_inputs", sample=Renamed()) is public


def test_node_list_is_the_graph_order_after_edits_and_for_functions():
    from onnxsmith.ir._fields import node_list

    assert node_list is _fields._linked_nodes  # this onnx_ir: the direct walk is checked and used
    x = ir.Value(name="x")
    nodes = [ir.Node("", "Relu", [x], name=f"n{i}") for i in range(5)]
    graph = ir.Graph([x], [], nodes=nodes)
    graph.remove([nodes[0], nodes[3]])
    graph.insert_after(nodes[4], ir.Node("", "Neg", [x], name="last"))
    graph.insert_before(nodes[1], ir.Node("", "Abs", [x], name="first"))
    assert [n.name for n in node_list(graph)] == [n.name for n in graph] == ["first", "n1", "n2", "n4", "last"]
    function = ir.Function("local", "f", graph=graph, attributes=[])
    assert node_list(function) == list(function)


def test_nodes_with_subgraphs_finds_them_among_attribute_holders():
    from onnxsmith.ir.queries import nodes_with_subgraphs

    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.BOOL))
    body = ir.Graph([], [], nodes=[])
    plain = ir.Node("", "Concat", [x], [ir.AttrInt64("axis", 0)])
    branchy = ir.Node("", "If", [x], [ir.AttrGraph("then_branch", body), ir.AttrGraph("else_branch", body)])
    assert nodes_with_subgraphs([plain, ir.Node("", "Relu", [x])]) == []
    assert nodes_with_subgraphs([plain, branchy, ir.Node("", "Relu", [x])]) == [branchy]


def test_a_probe_that_fails_or_raises_keeps_the_public_api():
    from onnxsmith.ir._private import agrees, fields

    def raises():
        raise AttributeError("_nodes")

    assert agrees(lambda: True) and not agrees(lambda: False) and not agrees(raises)
    x = ir.Value(name="x")
    assert fields(x)["_name"] == "x" and "__dict__" in fields(x)
