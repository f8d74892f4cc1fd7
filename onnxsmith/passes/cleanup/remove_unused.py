"""``remove-unused``: delete what no graph output depends on.

Semantics (mark and sweep): a node is live when one of its outputs is a graph output, is read by
a live node, or is read from inside a live node's subgraphs; everything else is dead and removed.
Ops are assumed free of side effects, except that a node with no outputs at all is kept (it can
only exist for an effect). Subgraph and function bodies are swept the same way against their own
outputs. Then:

- initializers nobody reads are removed, unless they are graph inputs or outputs;
- model-local functions no live node calls (directly or through other functions) are removed;
- opset imports no remaining node or function uses are removed; the default ONNX domain is
  always kept, in the model and in every function.

Graph inputs are never removed, even unused: they are the model's interface.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir

from onnxsmith.ir._fields import node_list
from onnxsmith.ir.queries import all_nodes
from onnxsmith.passes.base import ALL, Pass, PassContext, PassResult
from onnxsmith.passes.cleanup._graphs import node_subgraphs, remove_nodes
from onnxsmith.passes.registry import register_pass

__all__ = ["RemoveUnused"]

_DEFAULT_DOMAINS = ("", "ai.onnx")


@register_pass
class RemoveUnused(Pass):
    """Remove dead nodes, unused initializers, functions and opset imports."""

    name = "remove-unused"
    preserves = ALL

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        in_functions = {key: _Live() for key in model.functions}
        removed = sum(_sweep(f.graph, in_functions[key]) for key, f in model.functions.items())
        in_main = _Live()
        removed += _sweep(model.graph, in_main)
        stats = {
            "removed_nodes": removed,
            "removed_initializers": _remove_initializers(in_main.graphs),
            "removed_functions": _remove_functions(model),
            "removed_opsets": _remove_opsets(model, in_main.domains,
                                             {key: in_functions[key].domains for key in model.functions}),
        }
        return PassResult(any(stats.values()), stats)


class _Live:
    """What a sweep kept: the graphs it swept (outer before inner) and the domains of their live nodes."""

    __slots__ = ("domains", "graphs")

    def __init__(self) -> None:
        self.graphs: list[ir.Graph] = []
        self.domains: set[str] = set()


def _sweep(graph: ir.Graph, kept: _Live) -> int:
    """Removes the dead nodes of ``graph`` and of the subgraphs of its live nodes; returns how many.

    Records the graph, its live subgraphs and the domains of their live nodes in ``kept``.
    """
    kept.graphs.append(graph)
    removed = 0
    live: set[ir.Node] = set()
    nodes = node_list(graph)
    work = [v.producer() for v in graph.outputs]
    work.extend(node for node in nodes if not node.outputs)
    while work:
        node = work.pop()
        if node is None or node in live or node.graph is not graph:
            continue
        live.add(node)
        kept.domains.add(node.domain)
        reads = node.inputs
        if node.attributes.data:  # most nodes have none: no subgraph to look for
            reads = list(reads)
            for sub in node_subgraphs(node):
                removed += _sweep(sub, kept)
                reads.extend(_reads(sub))
        for value in reads:
            if value is not None:
                work.append(value.producer())
    dead = [node for node in nodes if node not in live]
    remove_nodes(graph, dead)
    return removed + len(dead)


def _reads(graph: ir.Graph) -> Iterator[ir.Value | None]:
    """Every value a subgraph reads: node inputs and outputs, nested subgraphs included."""
    yield from graph.outputs
    for node in graph:
        yield from node.inputs
        for sub in node_subgraphs(node):
            yield from _reads(sub)


def _remove_initializers(graphs: list[ir.Graph]) -> int:
    removed = 0
    for graph in graphs:
        for name, value in list(graph.initializers.data.items()):
            if not value.uses() and not value.is_graph_input() and not value.is_graph_output():
                del graph.initializers[name]
                removed += 1
    return removed


def _remove_functions(model: ir.Model) -> int:
    if not model.functions:
        return 0
    used: set[ir.OperatorIdentifier] = set()
    pending: list[ir.Graph] = [model.graph]
    while pending:
        for node in all_nodes(pending.pop()):
            key = node.op_identifier()
            if key in model.functions and key not in used:
                used.add(key)
                pending.append(model.functions[key].graph)
    unused = [key for key in model.functions if key not in used]
    for key in unused:
        del model.functions[key]
    return len(unused)


def _drop_unused_imports(graph: ir.Graph, used: set[str]) -> int:
    unused = [d for d in graph.opset_imports if d not in used and d not in _DEFAULT_DOMAINS]
    for domain in unused:
        del graph.opset_imports[domain]
    return len(unused)


def _remove_opsets(model: ir.Model, in_main: set[str], in_functions: dict[ir.OperatorIdentifier, set[str]]) -> int:
    """Drops the imports no node uses; ``in_main`` and ``in_functions`` hold the domains the nodes use."""
    removed = 0
    used_anywhere: set[str] = set()
    for key, function in model.functions.items():
        removed += _drop_unused_imports(function.graph, in_functions[key])
        used_anywhere |= in_functions[key] | {function.domain}
    used_anywhere |= in_main
    return removed + _drop_unused_imports(model.graph, used_anywhere)
