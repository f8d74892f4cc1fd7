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

from onnxsmith.ir.queries import all_nodes
from onnxsmith.passes.base import ALL, Pass, PassContext, PassResult
from onnxsmith.passes.cleanup._graphs import all_graphs, node_subgraphs, remove_nodes
from onnxsmith.passes.registry import register_pass

__all__ = ["RemoveUnused"]

_DEFAULT_DOMAINS = ("", "ai.onnx")


@register_pass
class RemoveUnused(Pass):
    """Remove dead nodes, unused initializers, functions and opset imports."""

    name = "remove-unused"
    preserves = ALL

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        stats = {
            "removed_nodes": sum(_sweep(f.graph) for f in model.functions.values()) + _sweep(model.graph),
            "removed_initializers": _remove_initializers(model),
            "removed_functions": _remove_functions(model),
            "removed_opsets": _remove_opsets(model),
        }
        return PassResult(any(stats.values()), stats)


def _sweep(graph: ir.Graph) -> int:
    """Removes the dead nodes of ``graph`` and of the subgraphs of its live nodes; returns how many."""
    removed = 0
    live: set[ir.Node] = set()
    work = [v.producer() for v in graph.outputs]
    work.extend(node for node in graph if not node.outputs)
    while work:
        node = work.pop()
        if node is None or node in live or node.graph is not graph:
            continue
        live.add(node)
        reads = list(node.inputs)
        for sub in node_subgraphs(node):
            removed += _sweep(sub)
            reads.extend(_reads(sub))
        work.extend(v.producer() for v in reads if v is not None)
    dead = [node for node in graph if node not in live]
    remove_nodes(graph, dead)
    return removed + len(dead)


def _reads(graph: ir.Graph) -> Iterator[ir.Value | None]:
    """Every value a subgraph reads: node inputs and outputs, nested subgraphs included."""
    yield from graph.outputs
    for node in graph:
        yield from node.inputs
        for sub in node_subgraphs(node):
            yield from _reads(sub)


def _remove_initializers(model: ir.Model) -> int:
    removed = 0
    for graph in all_graphs(model, functions=False):
        for name, value in list(graph.initializers.items()):
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


def _remove_opsets(model: ir.Model) -> int:
    removed = 0
    used_anywhere: set[str] = set()
    for function in model.functions.values():
        in_function = {node.domain for node in all_nodes(function.graph)}
        removed += _drop_unused_imports(function.graph, in_function)
        used_anywhere |= in_function | {function.domain}
    used_anywhere |= {node.domain for node in all_nodes(model.graph)}
    return removed + _drop_unused_imports(model.graph, used_anywhere)
