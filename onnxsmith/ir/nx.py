"""A networkx view of a graph's dataflow, for analyses (reachability, dominators, cuts, ...).

``to_networkx`` returns a ``networkx.MultiDiGraph`` that is a snapshot (later edits of the IR
do not show). Its nodes are the ONNX nodes of one graph, keyed ``"n<i>"`` by their position in
the graph (stable for an unchanged graph), with attributes ``kind="node"``, ``op_type``,
``domain``, ``name``, ``index`` and ``node`` (the ``onnx_ir.Node`` itself; drop it before writing
the graph to a file). There is one edge per use of a value: from its producer to the consumer,
with attributes ``value`` (the value name), ``output_index`` (position among the producer's
outputs), ``input_index`` (position among the consumer's inputs) and ``implicit`` (see below); a
node that reads the same value twice gets two parallel edges.

Subgraphs (If/Loop/Scan bodies) are not expanded, but a value that a subgraph reads from the
outer graph is an edge into the node that owns the subgraph, with ``implicit=True`` and
``input_index=None``; without it a node whose only use is inside a branch would look dead.

With ``include_values=True`` the graph's boundary becomes nodes too: ``"input:<name>"``
(``kind="input"``), ``"initializer:<name>"`` (``kind="initializer"``; an initializer that is
also a graph input is the input node, with ``initializer=True``) and ``"output:<name>"``
(``kind="output"``), each with ``dtype`` and ``shape``; their edges have ``output_index=None``
(from inputs/initializers) or ``input_index`` = position among the graph outputs. No tensor
data is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import onnx_ir as ir

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["to_networkx"]


def to_networkx(model_or_graph: ir.Model | ir.Graph | ir.Function, *, include_values: bool = False,
                ) -> nx.MultiDiGraph:
    """The dataflow of the main graph (or of the given graph or function) as a MultiDiGraph.

    Args:
        model_or_graph: A model (its main graph is used), a graph or a function.
        include_values: Also add graph inputs, initializers and outputs as nodes.

    Returns:
        The view described in the module docstring; ``G.graph["name"]`` is the graph's name.
    """
    import networkx as nx  # imported on use: it adds a third to the import time of onnxsmith.ir

    graph = model_or_graph.graph if isinstance(model_or_graph, ir.Model) else model_or_graph
    view = nx.MultiDiGraph(name=graph.name or "")
    keys = {id(node): f"n{i}" for i, node in enumerate(graph)}
    sources: dict[int, tuple[str, int | None]] = {}  # id(value) -> (view node, output index)
    if include_values:
        _add_boundary_sources(graph, view, sources)
    for i, node in enumerate(graph):
        key = keys[id(node)]
        view.add_node(key, kind="node", op_type=node.op_type, domain=node.domain, name=node.name or "",
                      index=i, node=node)
        for j, output in enumerate(node.outputs):
            sources[id(output)] = (key, j)
    for node in graph:
        key = keys[id(node)]
        for j, value in enumerate(node.inputs):
            if value is not None and id(value) in sources:
                source, index = sources[id(value)]
                view.add_edge(source, key, value=value.name or "", output_index=index, input_index=j,
                              implicit=False)
        for value in _captured(node):
            if id(value) in sources:
                source, index = sources[id(value)]
                view.add_edge(source, key, value=value.name or "", output_index=index, input_index=None,
                              implicit=True)
    if include_values:
        for j, value in enumerate(graph.outputs):
            target = f"output:{value.name}"
            view.add_node(target, kind="output", name=value.name or "", dtype=value.dtype, shape=_shape(value))
            if id(value) in sources:
                source, index = sources[id(value)]
                view.add_edge(source, target, value=value.name or "", output_index=index, input_index=j,
                              implicit=False)
    return view


def _shape(value: ir.Value) -> tuple[int | str | None, ...] | None:
    if value.shape is None:
        return None
    return tuple(d if isinstance(d, int) else d.value for d in value.shape)


def _add_boundary_sources(graph: ir.Graph | ir.Function, view: nx.MultiDiGraph,
                          sources: dict[int, tuple[str, int | None]]) -> None:
    initializers = graph.initializers if isinstance(graph, ir.Graph) else {}
    for value in graph.inputs:
        key = f"input:{value.name}"
        view.add_node(key, kind="input", name=value.name or "", dtype=value.dtype, shape=_shape(value),
                      initializer=value.name in initializers)
        sources[id(value)] = (key, None)
    for name, value in initializers.items():
        if id(value) not in sources:
            key = f"initializer:{name}"
            view.add_node(key, kind="initializer", name=name, dtype=value.dtype, shape=_shape(value))
            sources[id(value)] = (key, None)


def _captured(node: ir.Node) -> Iterator[ir.Value]:
    """Values of enclosing graphs that ``node``'s subgraphs read, each once, in first-use order."""
    subgraphs = []
    for attr in node.attributes.values():
        if attr.is_ref():
            continue
        if attr.type == ir.AttributeType.GRAPH:
            subgraphs.append(attr.value)
        elif attr.type == ir.AttributeType.GRAPHS:
            subgraphs.extend(attr.value)
    if not subgraphs:
        return
    defined: set[int] = set()
    used: dict[int, ir.Value] = {}
    for subgraph in subgraphs:
        for inner in _graph_and_nested(subgraph):
            defined.update(id(v) for v in inner.inputs)
            defined.update(id(v) for v in inner.initializers.values())
            for inner_node in inner:
                defined.update(id(v) for v in inner_node.outputs)
                for value in inner_node.inputs:
                    if value is not None:
                        used.setdefault(id(value), value)
            for value in inner.outputs:
                used.setdefault(id(value), value)
    yield from (value for key, value in used.items() if key not in defined)


def _graph_and_nested(graph: ir.Graph) -> Iterator[ir.Graph]:
    yield graph
    yield from graph.subgraphs()
