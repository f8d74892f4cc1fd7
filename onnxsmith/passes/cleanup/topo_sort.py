"""``topo-sort``: order the nodes of every graph so that each value is defined before it is used.

The sort is onnx_ir's stable topological sort (Kahn's algorithm preferring the original order;
nodes holding subgraphs come after everything their bodies read), applied to the main graph, its
subgraphs and model-local functions. A graph that is already sorted is left untouched, which is
checked first in one linear scan.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.passes.base import ALL, Pass, PassContext, PassResult
from onnxsmith.passes.cleanup._graphs import node_subgraphs, with_subgraphs
from onnxsmith.passes.registry import register_pass

__all__ = ["TopoSort", "is_sorted"]


@register_pass
class TopoSort(Pass):
    """Sort nodes topologically (stable: keeps the original order where it is already valid)."""

    name = "topo-sort"
    provides = frozenset({"topologically-sorted"})
    preserves = ALL

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        moved = 0
        for graph in (model.graph, *(f.graph for f in model.functions.values())):
            if is_sorted(graph):
                continue
            before = {id(g): list(g) for g in with_subgraphs(graph)}
            graph.sort()
            moved += sum(a is not b for g in with_subgraphs(graph) for a, b in zip(before[id(g)], g))
        return PassResult(moved > 0, {"moved_nodes": moved})


def is_sorted(graph: ir.Graph) -> bool:
    """Whether every node (subgraphs included) reads only values defined before it."""
    return _defines_before_use(graph, set())


def _defines_before_use(graph: ir.Graph, defined: set[int]) -> bool:
    # One set for all scopes: an inner value is never a legal input of an outer node anyway.
    defined.update(id(v) for v in graph.inputs)
    defined.update(id(v) for v in graph.initializers.data.values())
    for node in graph:
        for value in node.inputs:
            if value is not None and id(value) not in defined and value.producer() is not None:
                return False
        for sub in node_subgraphs(node):
            if not _defines_before_use(sub, defined):
                return False
        defined.update(id(v) for v in node.outputs)
    return True
