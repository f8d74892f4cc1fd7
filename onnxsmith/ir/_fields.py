"""C-level getters of node and value fields, for walks over every node of a large graph.

onnx_ir exposes ``node.inputs``, ``value.name``... as Python properties that return a slot
(``node._inputs``, ``value._name``). An ``operator.attrgetter`` of the slot reads it without the
property's Python frame, a fifth to a third cheaper per read, which matters to walks that read
several fields of 10^5 nodes after every pass (the structural verifier, the census). Each getter
reads the slot only when this onnx_ir's class declares it and its property returns it for a sample
object (checked once at import); otherwise it reads the public property.

``node_list(graph)`` is ``list(graph)`` read straight off onnx_ir's linked list (a plain loop over
its boxes instead of a generator that calls a property per box), likewise used only when it agrees
with ``list(graph)`` on a sample graph with removed and inserted nodes.
"""

from __future__ import annotations

from operator import attrgetter, methodcaller
from typing import Any

import onnx_ir as ir

from onnxsmith.ir._private import agrees, slot_names

__all__ = ["NODE_ATTRIBUTE_DICT", "NODE_DOMAIN_OP", "NODE_INPUTS", "NODE_OUTPUTS", "VALUE_NAME", "VALUE_PRODUCER",
           "node_list"]


def _sample() -> tuple[ir.Node, ir.Value]:
    x = ir.Value(name="x")
    node = ir.Node("d", "Op", [x, None], [ir.AttrInt64("a", 1)], outputs=[ir.Value(name="y")])
    return node, x


def _getter(public: Any, *slots: str, sample: Any) -> Any:
    """``attrgetter(*slots)`` when it reads what ``public`` reads on ``sample``, else ``public``."""
    if not {slot.split(".")[0] for slot in slots} <= slot_names(type(sample)):
        return public
    fast = attrgetter(*slots)
    return fast if agrees(lambda: fast(sample) == public(sample)) else public


_NODE, _VALUE = _sample()
#: ``(node.domain, node.op_type)``
NODE_DOMAIN_OP = _getter(attrgetter("domain", "op_type"), "_domain", "_op_type", sample=_NODE)
#: ``node.inputs``
NODE_INPUTS = _getter(attrgetter("inputs"), "_inputs", sample=_NODE)
#: ``node.outputs``
NODE_OUTPUTS = _getter(attrgetter("outputs"), "_outputs", sample=_NODE)
#: ``node.attributes.data``: the plain dict behind the node's attributes
NODE_ATTRIBUTE_DICT = _getter(attrgetter("attributes.data"), "_attributes.data", sample=_NODE)
#: ``value.name``
VALUE_NAME = _getter(attrgetter("name"), "_name", sample=_VALUE)
#: ``value.producer()``
VALUE_PRODUCER = _getter(methodcaller("producer"), "_producer", sample=_NODE.outputs[0])
del _NODE, _VALUE


def _linked_nodes(graph: ir.Graph | ir.Function) -> list[ir.Node]:
    if type(graph) is not ir.Graph:  # a Function (or a GraphView) iterates as its own class says
        return list(graph)
    root = graph._nodes._root
    nodes = []
    append = nodes.append
    box = root.next
    while box is not root:
        value = box.value
        if value is not None:  # an erased box (onnx_ir unlinks them; kept for safety)
            append(value)
        box = box.next
    return nodes


def _same_nodes() -> bool:
    x = ir.Value(name="x")
    nodes = [ir.Node("", "Relu", [x]) for _ in range(4)]
    graph = ir.Graph([x], [], nodes=nodes)
    graph.remove(nodes[1])
    graph.insert_before(nodes[0], ir.Node("", "Neg", [x]))
    return _linked_nodes(graph) == list(graph) and len(list(graph)) == 4


#: ``list(graph)``: the nodes of the graph (or function) in order.
node_list = _linked_nodes if agrees(_same_nodes) else list
