"""``eliminate-noops``: remove nodes whose output equals one of their inputs.

Semantics: for a node ``y = op(x, ...)`` that the rules in ``_noop_rules`` prove to pass ``x``
through unchanged (Identity, inference Dropout, Cast to the same type, identity Transpose,
shape-preserving Reshape/Squeeze/Expand/Flatten, zero Pad, full Slice, ``x + 0``, ``x * 1``...),
every use of ``y`` becomes a use of ``x`` and the node is removed. Its other outputs (Dropout's
mask) must be unused. Constant operands only that node read (a Reshape's target shape, the 0 of
``x + 0``) are removed with it.

Graph output names are stable: when ``y`` is a graph output, ``x`` takes over its name. That is
impossible when ``x`` is a graph input, an initializer, another graph output or a value of an
enclosing graph; then the node is replaced by a plain ``Identity`` (an Identity is left alone).
Runs over the main graph, subgraphs and model-local functions.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.passes.base import Pass, PassContext, PassResult
from onnxsmith.passes.cleanup._constants import is_default_domain
from onnxsmith.passes.cleanup._graphs import all_graphs
from onnxsmith.passes.cleanup._noop_rules import passthrough_input
from onnxsmith.passes.cleanup._rewire import can_replace, replace_values
from onnxsmith.passes.registry import register_pass

__all__ = ["EliminateNoops"]


@register_pass
class EliminateNoops(Pass):
    """Remove no-op nodes (Identity, inference Dropout, same-type Cast, x+0, full Slice...).

    See the module docstring for the exact rules and how graph output names are kept.
    """

    name = "eliminate-noops"
    preserves = frozenset({"shapes", "topologically-sorted"})

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        removed: dict[str, int] = {}
        to_identity = orphans = 0
        default_opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
        for graph in list(all_graphs(model)):
            opset = graph.opset_imports.get("", default_opset)  # function bodies import their own
            for node in list(graph):
                operands = [v for v in node.inputs if v is not None]
                outcome = _eliminate(graph, node, opset)
                if outcome is None:
                    continue
                orphans += _remove_orphaned_initializers(operands)
                if outcome == "removed":
                    removed[node.op_type] = removed.get(node.op_type, 0) + 1
                else:
                    to_identity += 1
        stats: dict[str, object] = {"removed_nodes": sum(removed.values())}
        if removed:
            stats["removed_by_op"] = dict(sorted(removed.items()))
        if to_identity:
            stats["replaced_by_identity"] = to_identity
        if orphans:
            stats["removed_initializers"] = orphans
        return PassResult(bool(removed) or bool(to_identity), stats)


def _eliminate(graph: ir.Graph, node: ir.Node, opset: int) -> str | None:
    """Removes ``node`` or turns it into an Identity when it is a no-op; says which it did."""
    if not is_default_domain(node):
        return None
    index = passthrough_input(node, opset)
    if index is None:
        return None
    x, y = node.inputs[index], node.outputs[0]
    if x is None or any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
        return None
    if can_replace([y], [x]):
        replace_values([y], [x])
        graph.remove(node, safe=True)
        return "removed"
    if node.op_type == "Identity":
        return None
    _replace_with_identity(graph, node, x)
    return "identity"


def _remove_orphaned_initializers(values: list[ir.Value]) -> int:
    """Drops the initializers among ``values`` that nothing reads any more."""
    removed = 0
    for value in {id(v): v for v in values}.values():
        if value.is_initializer() and not value.uses() and not value.is_graph_input() and not value.is_graph_output():
            owner = value.graph
            assert owner is not None and value.name is not None
            owner.initializers.pop(value.name)
            removed += 1
    return removed


def _replace_with_identity(graph: ir.Graph, node: ir.Node, x: ir.Value) -> None:
    y = node.outputs[0]
    name = y.name
    y.name = None
    copy = ir.Value(name=name, type=y.type, shape=y.shape)
    identity = ir.Node("", "Identity", [x], outputs=[copy], name=node.name)
    graph.insert_before(node, identity)
    y.replace_all_uses_with(copy, replace_graph_outputs=True)
    graph.remove(node, safe=True)
