"""Walking all graphs of a model (main graph, subgraphs, function bodies) and removing nodes.

A model-local function's body is an ``ir.Graph`` too (``function.graph``, sharing the function's
inputs, outputs, nodes and opset imports), so passes handle every body as a graph. Subgraphs (If/Loop/Scan bodies) may read values of enclosing graphs; onnx_ir records
those reads as ordinary uses, which is why removing a node that owns subgraphs must first detach
the subgraphs' nodes from their inputs.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir

from onnxsmith.ir._release import release_inputs
from onnxsmith.ir.queries import all_graphs as with_subgraphs  # the graph, then its subgraphs, outer first
from onnxsmith.ir.queries import node_subgraphs

__all__ = ["Discarded", "all_graphs", "detach_subgraphs", "drop_unused_initializers", "node_subgraphs", "remove_nodes",
           "with_subgraphs"]


def all_graphs(model: ir.Model, *, functions: bool = True) -> Iterator[ir.Graph]:
    """The main graph, its subgraphs (outer before inner), then function bodies and their subgraphs."""
    yield from with_subgraphs(model.graph)
    if functions:
        for function in model.functions.values():
            yield from with_subgraphs(function.graph)


def detach_subgraphs(node: ir.Node) -> None:
    """Drops every input of every node inside the node's subgraphs (recursively).

    After this, the subgraphs no longer count as users of outer-scope values, so the node can be
    removed without leaving stale uses behind. Only call it on a node that is being discarded.
    """
    for sub in node_subgraphs(node):
        for inner in sub:
            detach_subgraphs(inner)
            inner.resize_inputs(0)


def remove_nodes(graph: ir.Graph, nodes: list[ir.Node]) -> None:
    """Removes nodes whose outputs are unused (or used only by each other) from ``graph``."""
    if not nodes:
        return
    for node in nodes:
        detach_subgraphs(node)
    graph.remove(nodes, safe=True)


class Discarded:
    """Nodes a pass took out of use, removed from their graphs later in one call per graph.

    ``add`` releases the node's inputs (and those its subgraphs read) at once, so every later
    decision of the pass counts uses as if the node were gone; the node itself stays in its graph
    until ``remove``, which removes each graph's nodes with one ``Graph.remove(nodes)`` (onnx_ir builds a
    set of the graph's outputs through a Python sequence view on every call, so one call per node
    costs several microseconds more). The removal checks, as ``safe=True`` would, that nothing but
    the removed nodes reads their outputs and that none is a graph output.
    """

    def __init__(self) -> None:
        self._by_graph: dict[int, tuple[ir.Graph, list[ir.Node]]] = {}
        self._nodes: set[ir.Node] = set()

    def __contains__(self, node: ir.Node) -> bool:
        return node in self._nodes

    def add(self, node: ir.Node) -> None:
        """Takes the node out of use; it must belong to a graph and its outputs be unused."""
        graph = node.graph
        assert graph is not None, "a discarded node must belong to a graph"
        detach_subgraphs(node)
        release_inputs(node)
        self._by_graph.setdefault(id(graph), (graph, []))[1].append(node)
        self._nodes.add(node)

    def remove(self, graph: ir.Graph | None = None) -> None:
        """Removes the discarded nodes of ``graph`` (of every graph when None) from their graphs."""
        keys = list(self._by_graph) if graph is None else [id(graph)]
        for key in keys:
            owner, nodes = self._by_graph.pop(key, (None, []))
            if nodes:
                _check_unread(owner, nodes)
                owner.remove(nodes)  # not safe=True: the inputs are released, the outputs checked above
                self._nodes.difference_update(nodes)


def _check_unread(graph: ir.Graph, nodes: list[ir.Node]) -> None:
    """What ``Graph.remove(nodes, safe=True)`` checks: no output is read (but by ``nodes``) or a graph output."""
    outputs = frozenset(graph.outputs)
    removed = None
    for node in nodes:
        for value in node.outputs:
            if value in outputs:
                raise ValueError(f"Node '{node!r}' is still an output of the graph and cannot be removed.")
            if value.uses():
                removed = removed or frozenset(nodes)
                if any(use.node not in removed for use in value.uses()):
                    raise ValueError(f"Output value '{value!r}' is still being used by nodes that are not removed.")


def drop_unused_initializers(values: list[ir.Value | None]) -> list[ir.Value]:
    """Removes the initializers among ``values`` that nothing reads any more; returns them.

    Graph inputs and outputs stay: they are part of the model's interface.
    """
    dropped = []
    for value in {id(v): v for v in values if v is not None}.values():
        if value.is_initializer() and not value.uses() and not value.is_graph_input() and not value.is_graph_output():
            owner = value.graph
            assert owner is not None and value.name is not None
            owner.initializers.pop(value.name)
            dropped.append(value)
    return dropped
