"""Structural verification: the invariants every pass must keep.

Checked for the main graph and, recursively, for subgraphs (which may read outer-scope values):

- use-def consistency: every node input is a graph input, an initializer, an outer-scope value
  or the output of a node that comes *earlier* (so the graph is topologically sorted), and each
  value's recorded producer is the node that lists it as output;
- value names are unique within a graph; graph outputs are defined;
- every node's domain has an opset import (model-local functions count as their domain);
- graph inputs and outputs have known element types.

``verified_census`` checks the same invariants and takes the pass manager's census (node count,
tensor bytes, op histogram: ``onnxsmith.ir.queries.census``) in the same walk, so that verifying
after a pass costs one walk over the nodes instead of two.

Two walks implement the checks. ``_graph_clean`` only answers whether a graph is clean: it reads
each node's properties in bulk (``map`` over the node list) and, in its one loop in graph order,
does one set test for the inputs and one set update for the outputs of a node; producers and name
uniqueness are checked over all outputs at once after the loop. Whenever it answers "not clean"
(or cannot tell cheaply, e.g. two values of one name), ``_check_graph`` walks the graph again node
by node and names the problems in graph order. So every model is judged by the same invariants,
and the per-node walk costs time only when something is, or may be, wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from operator import attrgetter, is_, itemgetter

import onnx_ir as ir

from onnxsmith.errors import VerificationError
from onnxsmith.ir._fields import NODE_DOMAIN_OP, NODE_INPUTS, NODE_OUTPUTS, VALUE_NAME, VALUE_PRODUCER, node_list
from onnxsmith.ir._gc import gc_paused
from onnxsmith.ir.queries import initializer_bytes, name_ops, node_subgraphs, nodes_with_subgraphs

__all__ = ["verified_census", "verify_structure", "structure_problems"]

_CONST_VALUE = attrgetter("const_value")
_DOMAIN = itemgetter(0)


class _Census:
    """What ``verified_census`` counts while it checks: nodes, initializer bytes, ``(domain, op)`` pairs."""

    __slots__ = ("nodes", "size", "pairs")

    def __init__(self) -> None:
        self.nodes = self.size = 0
        self.pairs: Counter[tuple[str, str]] = Counter()


def verify_structure(model: ir.Model, *, where: str = "") -> None:
    """Raises VerificationError naming the first broken invariant."""
    _raise_first(structure_problems(model, limit=1), where)


def verified_census(model: ir.Model, *, where: str = "") -> tuple[int, int, Counter[str]]:
    """``verify_structure`` and ``census`` (node count, tensor bytes, op histogram) in one walk.

    Raises:
        VerificationError: As ``verify_structure``.
    """
    counts = _Census()
    with gc_paused():  # the walk allocates only short-lived sets and tuples
        if not _model_clean(model, counts):
            counts = _Census()  # the clean walk stopped early: count again while naming the problem
            _raise_first(_problems(model, 1, counts), where)
    return counts.nodes, counts.size, name_ops(counts.pairs)


def _raise_first(problems: list[str], where: str) -> None:
    if problems:
        prefix = f"{where}: " if where else ""
        raise VerificationError(f"{prefix}structural check failed: {problems[0]}",
                                "the pass broke the graph; rerun with --debug and report it")


def structure_problems(model: ir.Model, *, limit: int = 20) -> list[str]:
    """All broken invariants found (at most ``limit``)."""
    with gc_paused():
        if _model_clean(model, None):
            return []
        return _problems(model, limit, None)


def _model_clean(model: ir.Model, counts: _Census | None) -> bool:
    """Whether ``_problems`` would find nothing (False may also mean: could not tell cheaply)."""
    domains = set(model.opset_imports) | set(model.graph.opset_imports)
    functions = {(f.domain, f.name) for f in model.functions.values()}
    return _graph_clean(model.graph, (), _good_domains(domains), domains, functions, counts, top=True)


def _problems(model: ir.Model, limit: int, counts: _Census | None) -> list[str]:
    problems: list[str] = []
    domains = set(model.opset_imports) | set(model.graph.opset_imports)
    functions = {(f.domain, f.name) for f in model.functions.values()}
    _check_graph(model.graph, (), (), domains, functions, problems, limit, counts, top=True)
    return problems[:limit]


def _label(node: ir.Node) -> str:
    return f"node '{node.name}' ({node.op_type})" if node.name else f"a {node.op_type} node"


def _domain_problems(node: ir.Node, domains: set[str], functions: set[tuple[str, str]]) -> list[str]:
    found = []
    if node.domain not in domains and node.domain != "ai.onnx" and (node.domain, node.op_type) not in functions:
        found.append(f"{_label(node)} uses domain '{node.domain}' without an opset import")
    if node.domain in ("", "ai.onnx") and "" not in domains and "ai.onnx" not in domains:
        found.append(f"{_label(node)} needs the default ONNX opset import")
    return found


def _good_domains(domains: set[str]) -> set[str]:
    """Domains for which ``_domain_problems`` finds nothing, whatever the op type."""
    default_imported = "" in domains or "ai.onnx" in domains
    return {d for d in (*domains, "ai.onnx") if default_imported or d not in ("", "ai.onnx")}


def _check_graph(graph: ir.Graph, outer: tuple[set[ir.Value | None], ...], enclosing: tuple[ir.Graph, ...],
                 domains: set[str], functions: set[tuple[str, str]], problems: list[str], limit: int,
                 counts: _Census | None, *, top: bool) -> None:
    """Checks one graph in a single pass over its nodes, counting them into ``counts`` if given.

    ``defined`` holds the values defined so far in this graph (and ``None``, the empty input), so
    the common case, a node whose inputs are all defined, is one C-level ``issuperset``; only a
    failing node is looked at input by input (against the enclosing scopes in ``outer``).
    """
    defined: set[ir.Value | None] = {None}
    scopes = (*enclosing, graph)
    names: dict[str, ir.Value] = {}

    def define(value: ir.Value, what: str) -> None:
        defined.add(value)
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
        if value not in defined:
            define(value, "initializer")
        if value.const_value is None:
            problems.append(f"initializer '{name}' has no tensor")
    good_domains = _good_domains(domains)
    inner = (*outer, defined)
    first_named, add_defined = names.setdefault, defined.add  # bound once: this loop is the hot path
    members = node_list(graph)
    keys = list(map(NODE_DOMAIN_OP, members))
    _count(counts, graph, members, keys)
    for node, (domain, _) in zip(members, keys):
        if len(problems) >= limit:
            return
        if domain not in good_domains:
            problems.extend(_domain_problems(node, domains, functions))
        inputs = node.inputs
        if not defined.issuperset(inputs):
            _input_problems(node, inputs, inner, scopes, problems)
        if node.attributes.data:
            for sub in node_subgraphs(node):
                _check_graph(sub, inner, scopes, domains, functions, problems, limit, counts, top=False)
        for value in node.outputs:
            if value.producer() is not node:
                problems.append(f"output '{value.name}' of {_label(node)} records another producer")
            name = value.name
            if name and first_named(name, value) is not value:
                problems.append(f"value name '{name}' is defined twice (output of {_label(node)})")
            add_defined(value)
    for value in graph.outputs:
        if value not in defined and not any(value in scope for scope in outer):
            problems.append(f"graph output '{value.name}' is not defined by any node, input or initializer")
        if top and (value.type is None or value.dtype is None):
            problems.append(f"graph output '{value.name}' has no known type")


def _count(counts: _Census | None, graph: ir.Graph, members: list[ir.Node], pairs: Iterable) -> None:
    """Adds ``graph``'s nodes, initializer bytes and (domain, op) pairs to the census, if one is taken."""
    if counts is not None:
        counts.nodes += len(members)
        counts.size += initializer_bytes(graph)
        counts.pairs.update(pairs)


def _graph_clean(graph: ir.Graph, outer: tuple[set[ir.Value | None], ...], good_domains: set[str],
                 domains: set[str], functions: set[tuple[str, str]], counts: _Census | None, *, top: bool) -> bool:
    """``_check_graph`` finding nothing, decided with bulk reads (see the module docstring).

    Counts the graph into ``counts`` as ``_check_graph`` does; after a False the counts are partial.
    """
    graph_inputs = list(graph.inputs)
    defined: set[ir.Value | None] = {None, *graph_inputs}
    all_initializers = graph.initializers.data.values()  # the plain dict: iterating the UserDict costs more
    initializers = [value for value in all_initializers if value not in defined]
    if any(map(is_, map(_CONST_VALUE, all_initializers), repeat(None))):
        return False
    if top and any(value.type is None or value.dtype is None for value in graph_inputs):
        return False
    defined.update(initializers)
    members = node_list(graph)
    pairs = Counter(map(NODE_DOMAIN_OP, members))
    _count(counts, graph, members, pairs)
    if not good_domains.issuperset(map(_DOMAIN, pairs)):
        for node in members:
            if node.domain not in good_domains and _domain_problems(node, domains, functions):
                return False
    inner = (*outer, defined)
    outputs = list(map(NODE_OUTPUTS, members))
    nested = set(nodes_with_subgraphs(members))
    issuperset, define = defined.issuperset, defined.update  # bound once: this loop is the hot path
    for node, inputs, node_outputs in zip(members, map(NODE_INPUTS, members), outputs):
        if not issuperset(inputs) and not all(any(value in scope for scope in inner) for value in inputs):
            return False
        if nested and node in nested:
            for sub in node_subgraphs(node):
                if not _graph_clean(sub, inner, good_domains, domains, functions, counts, top=False):
                    return False
        define(node_outputs)
    produced = list(chain.from_iterable(outputs))
    if not all(map(is_, map(VALUE_PRODUCER, produced), chain.from_iterable(map(repeat, members, map(len, outputs))))):
        return False
    names = list(filter(None, map(VALUE_NAME, chain(graph_inputs, initializers, produced))))
    if len(set(names)) != len(names):
        return False  # maybe one value listed twice (not a problem): let _check_graph tell
    for value in graph.outputs:
        if value not in defined and not any(value in scope for scope in outer):
            return False
        if top and (value.type is None or value.dtype is None):
            return False
    return True


def _input_problems(node: ir.Node, inputs: Sequence[ir.Value | None], scopes_defined: tuple[set, ...],
                    scopes: tuple[ir.Graph, ...], problems: list[str]) -> None:
    for i, value in enumerate(inputs):
        if any(value in defined for defined in scopes_defined):
            continue
        producer = value.producer()
        if producer is not None and any(producer.graph is g for g in scopes):
            problems.append(f"{_label(node)} uses '{value.name}' before {_label(producer)} defines it "
                            "(graph not topologically sorted)")
        else:
            problems.append(f"{_label(node)} input {i} '{value.name}' is not defined in the graph")
