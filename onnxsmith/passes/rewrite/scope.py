"""Where rewriting happens: every graph of a model with the facts a rule needs about it.

The main graph, the subgraphs of control-flow nodes (If/Loop/Scan bodies, recursively) and the
bodies of model-local functions, in a fixed order. Subgraphs share the opset imports of the graph
or function they belong to. A function body cannot hold initializers, so a rewrite there makes its
new constants ``Constant`` nodes. Names are unique across a whole model (subgraphs must not shadow
outer names), so :class:`Namer` reserves every name in every scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import onnx_ir as ir

from onnxsmith.ir.queries import all_graphs

__all__ = ["Namer", "Scope", "model_scopes"]


@dataclass(frozen=True)
class Scope:
    """A graph to rewrite, the opsets it imports, and whether it is a function body."""

    graph: ir.Graph
    opsets: Mapping[str, int]
    in_function: bool


def model_scopes(model: ir.Model) -> list[Scope]:
    """The main graph, its subgraphs, then each function body and its subgraphs."""
    scopes = [Scope(g, model.opset_imports, False) for g in all_graphs(model.graph)]
    for function in model.functions.values():
        scopes += [Scope(g, function.opset_imports, True) for g in all_graphs(function.graph)]
    return scopes


class Namer:
    """Hands out value and node names that are unused anywhere in the model.

    A hint is used as is when free, else with the next free suffix ``_1``, ``_2``, ...; the same
    model and the same requests always give the same names.
    """

    def __init__(self, scopes: list[Scope]) -> None:
        self._values: set[str] = set()
        self._nodes: set[str] = set()
        self._value_suffix: dict[str, int] = {}
        self._node_suffix: dict[str, int] = {}
        for scope in scopes:
            graph = scope.graph
            self._values.update(v.name for v in graph.inputs if v.name)
            self._values.update(graph.initializers)
            for node in graph:
                if node.name:
                    self._nodes.add(node.name)
                self._values.update(v.name for v in node.outputs if v.name)

    @staticmethod
    def _fresh(hint: str, used: set[str], suffix: dict[str, int]) -> str:
        k = suffix.get(hint, 0)
        name = hint if k == 0 else f"{hint}_{k}"
        while name in used:
            k += 1
            name = f"{hint}_{k}"
        suffix[hint] = k
        used.add(name)
        return name

    @classmethod
    def for_graph(cls, graph: ir.Graph) -> Namer:
        """Names unused in ``graph`` and its subgraphs (for passes that edit one graph directly)."""
        return cls([Scope(g, {}, False) for g in all_graphs(graph)])

    def value(self, hint: str) -> str:
        """A new unique value name based on ``hint``."""
        return self._fresh(hint, self._values, self._value_suffix)

    def node(self, hint: str) -> str:
        """A new unique node name based on ``hint``."""
        return self._fresh(hint, self._nodes, self._node_suffix)
