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

When ``x`` inherits a type or shape from ``y`` (``y`` was better annotated, or declared as a graph
output), the nodes producing and reading ``x`` are looked at again: they may now be provably
no-ops too. So one run reaches a fixed point and a second run finds nothing.
"""

from __future__ import annotations

from collections import deque

import onnx_ir as ir

from onnxsmith.ir._fields import node_list
from onnxsmith.passes.base import Pass, PassContext, PassResult
from onnxsmith.passes.cleanup._constants import is_default_domain
from onnxsmith.passes.cleanup._graphs import Discarded, all_graphs, drop_unused_initializers
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
        discarded = Discarded()  # removed from their graphs at the end
        for graph in list(all_graphs(model)):
            opset = graph.opset_imports.get("", default_opset)  # function bodies import their own
            work = deque(node_list(graph))
            while work:
                node = work.popleft()
                if node in discarded or node.graph is None:
                    continue  # taken out since it was queued
                operands = node.inputs
                # revisited readers may sit in subgraphs: node.graph, not graph
                outcome, revisit = _eliminate(node.graph, node, opset, discarded)
                if outcome is None:
                    continue
                work.extendleft(revisit)
                orphans += len(drop_unused_initializers(list(operands)))
                if outcome == "removed":
                    removed[node.op_type] = removed.get(node.op_type, 0) + 1
                else:
                    to_identity += 1
        discarded.remove()
        stats: dict[str, object] = {"removed_nodes": sum(removed.values())}
        if removed:
            stats["removed_by_op"] = dict(sorted(removed.items()))
        if to_identity:
            stats["replaced_by_identity"] = to_identity
        if orphans:
            stats["removed_initializers"] = orphans
        return PassResult(bool(removed) or bool(to_identity), stats)


def _eliminate(graph: ir.Graph, node: ir.Node, opset: int, discarded: Discarded) -> tuple[str | None, list[ir.Node]]:
    """Removes ``node`` (into ``discarded``) or turns it into an Identity when it is a no-op.

    Returns:
        What was done ("removed", "identity" or None), and the nodes to look at again: the
        producer and the readers of the passed-through value when its annotations just improved.
    """
    if not is_default_domain(node):
        return None, []
    index = passthrough_input(node, opset)
    if index is None:
        return None, []
    x, y = node.inputs[index], node.outputs[0]
    if x is None or any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
        return None, []
    if can_replace([y], [x]):
        annotations = (x.type, x.shape)
        replace_values([y], [x])
        discarded.add(node)
        if (x.type, x.shape) == annotations:
            return "removed", []
        related = [use.node for use in x.uses()]
        return "removed", related + ([x.producer()] if x.producer() is not None else [])
    if node.op_type == "Identity":
        return None, []
    _replace_with_identity(graph, node, x, discarded)
    return "identity", []


def _replace_with_identity(graph: ir.Graph, node: ir.Node, x: ir.Value, discarded: Discarded) -> None:
    y = node.outputs[0]
    name = y.name
    y.name = None
    copy = ir.Value(name=name, type=y.type, shape=y.shape)
    identity = ir.Node("", "Identity", [x], outputs=[copy], name=node.name)
    graph.insert_before(node, identity)
    y.replace_all_uses_with(copy, replace_graph_outputs=True)
    discarded.add(node)
