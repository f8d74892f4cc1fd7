"""A successful structural match, as a rule's ``check`` and ``rewrite`` functions see it.

``m["x"]`` is the value captured by ``Var("x")``/``Const("x")`` (None when it sat in an absent
``Opt``), ``m.node("mm")`` the node captured by ``Op(..., _name="mm")``, ``m.const("w")`` the data of
a captured constant (read on demand), ``m.attr("mm", "transB")`` an attribute with its schema
default, ``m.attributes("conv")`` the attributes set on a node (to copy them to a new one),
``m.root`` the node at which the rule matched and ``m.nodes`` every matched node, root first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite.attributes import MISSING, attribute_value
from onnxsmith.passes.rewrite.constants import constant_array

__all__ = ["Match"]


class Match:
    """Captures and matched nodes of one match of a rule's pattern at ``root``."""

    __slots__ = ("_node_captures", "_opsets", "_values", "const_nodes", "nodes", "root", "rule_name")

    def __init__(self, rule_name: str, root: ir.Node, values: Mapping[str, ir.Value | None],
                 node_captures: Mapping[str, ir.Node | None], nodes: tuple[ir.Node, ...],
                 const_nodes: tuple[ir.Node, ...], opsets: Mapping[str, int]) -> None:
        self.rule_name = rule_name
        self.root = root
        self.nodes = nodes
        #: ``Constant`` nodes whose outputs were captured by ``Const`` patterns.
        self.const_nodes = const_nodes
        self._values = dict(values)
        self._node_captures = dict(node_captures)
        self._opsets = opsets

    @property
    def graph(self) -> ir.Graph:
        """The graph (or subgraph, or function body) in which the match lies."""
        graph = self.root.graph
        assert isinstance(graph, ir.Graph)
        return graph

    @property
    def outputs(self) -> tuple[ir.Value, ...]:
        """The root node's outputs: the values a replacement stands in for."""
        return tuple(self.root.outputs)

    def __getitem__(self, name: str) -> ir.Value | None:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(self._unknown(name, "value")) from None

    def __contains__(self, name: str) -> bool:
        return name in self._values or name in self._node_captures

    def node(self, name: str) -> ir.Node:
        """The node captured by ``Op(..., _name=name)``."""
        if name not in self._node_captures:
            raise KeyError(self._unknown(name, "node"))
        node = self._node_captures[name]
        if node is None:
            raise KeyError(f"rule '{self.rule_name}': node '{name}' lies in an absent optional input")
        return node

    def const(self, name: str) -> np.ndarray | None:
        """The data of the constant captured as ``name`` (None if absent); reads external data."""
        value = self[name]
        return None if value is None else constant_array(value)

    def attr(self, node: str | ir.Node, attribute: str, default: Any = None) -> Any:
        """Attribute of a matched node (by capture name or node), its schema default, or ``default``."""
        target = self.node(node) if isinstance(node, str) else node
        value = attribute_value(target, attribute, self._opsets)
        return default if value is MISSING else value

    def attributes(self, node: str | ir.Node) -> dict[str, Any]:
        """The attributes set on a matched node, as Python values (to copy them to a new node)."""
        target = self.node(node) if isinstance(node, str) else node
        return {name: attr.value for name, attr in target.attributes.items()}

    def opset(self, domain: str = "") -> int | None:
        """The version of ``domain`` imported where the match lies."""
        return self._opsets.get(domain)

    def _unknown(self, name: str, kind: str) -> str:
        values = ", ".join(self._values) or "none"
        nodes = ", ".join(self._node_captures) or "none"
        return f"rule '{self.rule_name}' captures no {kind} '{name}' (values: {values}; nodes: {nodes})"

    def __repr__(self) -> str:
        return f"<Match {self.rule_name} at {self.root.op_type} '{self.root.name}'>"
