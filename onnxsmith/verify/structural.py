"""Structural verification: the invariants every pass must keep.

Checked for the main graph and, recursively, for subgraphs (which may read outer-scope values):

- use-def consistency: every node input is a graph input, an initializer, an outer-scope value
  or the output of a node that comes *earlier* (so the graph is topologically sorted), and each
  value's recorded producer is the node that lists it as output;
- value names are unique within a graph; graph outputs are defined;
- every node's domain has an opset import (model-local functions count as their domain);
- graph inputs and outputs have known element types.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.errors import VerificationError

__all__ = ["verify_structure", "structure_problems"]


def verify_structure(model: ir.Model, *, where: str = "") -> None:
    """Raises VerificationError naming the first broken invariant."""
    problems = structure_problems(model, limit=1)
    if problems:
        prefix = f"{where}: " if where else ""
        raise VerificationError(f"{prefix}structural check failed: {problems[0]}",
                                "the pass broke the graph; rerun with --debug and report it")


def structure_problems(model: ir.Model, *, limit: int = 20) -> list[str]:
    """All broken invariants found (at most ``limit``)."""
    problems: list[str] = []
    domains = set(model.opset_imports) | set(model.graph.opset_imports)
    functions = {(f.domain, f.name) for f in model.functions.values()}
    _check_graph(model.graph, set(), (), domains, functions, problems, limit, top=True)
    return problems[:limit]


def _label(node: ir.Node) -> str:
    return f"node '{node.name}' ({node.op_type})" if node.name else f"a {node.op_type} node"


def _check_graph(graph: ir.Graph, outer: set[int], enclosing: tuple[ir.Graph, ...], domains: set[str], functions: set[tuple[str, str]],
                 problems: list[str], limit: int, *, top: bool) -> None:
    defined: set[int] = set(outer)
    scopes = (*enclosing, graph)
    names: dict[str, ir.Value] = {}

    def define(value: ir.Value, what: str) -> None:
        defined.add(id(value))
        if value.name:
            other = names.get(value.name)
            if other is not None and other is not value:
                problems.append(f"value name '{value.name}' is defined twice ({what})")
            names[value.name] = value

    for value in graph.inputs:
        define(value, "graph input")
        if top and (value.type is None or value.dtype is None):
            problems.append(f"graph input '{value.name}' has no known type")
    for name, value in graph.initializers.items():
        if id(value) not in defined:
            define(value, "initializer")
        if value.const_value is None:
            problems.append(f"initializer '{name}' has no tensor")
    for node in graph:
        if len(problems) >= limit:
            return
        if node.domain not in domains and node.domain != "ai.onnx" and (node.domain, node.op_type) not in functions:
            problems.append(f"{_label(node)} uses domain '{node.domain}' without an opset import")
        if node.domain in ("", "ai.onnx") and "" not in domains and "ai.onnx" not in domains:
            problems.append(f"{_label(node)} needs the default ONNX opset import")
        for i, value in enumerate(node.inputs):
            if value is None:
                continue
            if id(value) not in defined:
                producer = value.producer()
                if producer is not None and any(producer.graph is g for g in scopes):
                    problems.append(f"{_label(node)} uses '{value.name}' before {_label(producer)} defines it "
                                    "(graph not topologically sorted)")
                else:
                    problems.append(f"{_label(node)} input {i} '{value.name}' is not defined in the graph")
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                _check_graph(attr.value, defined, scopes, domains, functions, problems, limit, top=False)
            elif attr.type == ir.AttributeType.GRAPHS:
                for sub in attr.value:
                    _check_graph(sub, defined, scopes, domains, functions, problems, limit, top=False)
        for value in node.outputs:
            if value.producer() is not node:
                problems.append(f"output '{value.name}' of {_label(node)} records another producer")
            define(value, f"output of {_label(node)}")
    for value in graph.outputs:
        if id(value) not in defined:
            problems.append(f"graph output '{value.name}' is not defined by any node, input or initializer")
        if top and (value.type is None or value.dtype is None):
            problems.append(f"graph output '{value.name}' has no known type")
