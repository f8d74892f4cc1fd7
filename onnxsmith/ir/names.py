"""Fresh names beside those a graph already uses (for passes that add nodes and values)."""

from __future__ import annotations

import onnx_ir as ir

__all__ = ["GraphNames"]


class GraphNames:
    """The names used in a graph (inputs, initializers, nodes, node outputs) and fresh ones beside them.

    One set covers value and node names, so a fresh name is free for either. ``fresh(base)`` is
    ``base`` when free, else ``base_<n>`` with ``n`` from one counter shared by all bases.

    Args:
        graph: The graph whose names (in all its subgraphs too) are taken.
    """

    def __init__(self, graph: ir.Graph) -> None:
        self._names = {v.name for v in graph.inputs if v.name}
        self._names.update(graph.initializers)
        for node in graph.all_nodes():
            if node.name:
                self._names.add(node.name)
            self._names.update(v.name for v in node.outputs if v.name)
        self._counter = 0

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def add(self, name: str) -> None:
        """Marks ``name`` as taken."""
        self._names.add(name)

    def fresh(self, base: str) -> str:
        """A name not taken yet, ``base`` itself when free; it is taken from now on."""
        name = base
        while name in self._names:
            self._counter += 1
            name = f"{base}_{self._counter}"
        self._names.add(name)
        return name
