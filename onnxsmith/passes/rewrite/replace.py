"""Committing a replacement to the graph.

Given a match rooted at node ``R`` with outputs ``v_i`` and a replacement ``r_i`` per output:

1. The new nodes that contribute to some ``r_i`` are inserted just before ``R`` in creation order,
   which keeps the graph topologically sorted (they read only values defined before ``R``: the
   match's inputs, new constants, or each other); new nodes that contribute nothing are dropped.
   New initializers that are used are added to the graph.
2. Every use of ``v_i`` is redirected to ``r_i``. A new value ``r_i`` takes the name of ``v_i``. If
   ``v_i`` is a graph output, ``r_i`` takes its place in the outputs and its name; when ``r_i`` is
   an existing value (a graph input, another node's output) an ``Identity`` producing ``v_i``'s
   name is inserted instead, so output names never change. ``r_i`` inherits ``v_i``'s type and
   shape where it has none.
3. Matched nodes (and ``Constant`` nodes of matched constants) whose outputs are no longer used are
   removed; nodes still used elsewhere (shared intermediates, when the rule allows them) stay.
   Initializers that only removed nodes read are removed by :func:`remove_unused_initializers`,
   which the driver runs once at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import onnx_ir as ir

from onnxsmith.passes.rewrite.errors import RuleError
from onnxsmith.passes.rewrite.failure import node_label, value_label
from onnxsmith.passes.rewrite.match import Match
from onnxsmith.passes.rewrite.rewriter import RewriterContext
from onnxsmith.passes.rewrite.rule import Replacement
from onnxsmith.passes.rewrite.scope import Namer

__all__ = ["Change", "commit", "remove_unused_initializers"]


@dataclass
class Change:
    """What a committed replacement touched (the driver re-examines the neighbourhood)."""

    new_nodes: list[ir.Node] = field(default_factory=list)
    rewired_nodes: list[ir.Node] = field(default_factory=list)
    lost_uses: list[ir.Value] = field(default_factory=list)


def _outputs(rule_name: str, root: ir.Node, replacement: Replacement) -> list[ir.Value | None]:
    where = f"rule '{rule_name}' at {node_label(root)}"
    if isinstance(replacement, ir.Value):
        outs: list[ir.Value | None] = [replacement]
    elif isinstance(replacement, Sequence) and not isinstance(replacement, (str, bytes)):
        outs = list(replacement)
    else:
        raise RuleError(f"{where} returned {type(replacement).__name__}",
                        "return a value, a sequence of values (None for unused outputs) or Decline(reason)")
    if len(outs) > len(root.outputs) or not all(o is None or isinstance(o, ir.Value) for o in outs):
        raise RuleError(f"{where} returned {len(outs)} entries for a node with {len(root.outputs)} output(s)",
                        "return one value (or None if unused) per output of the matched root")
    outs += [None] * (len(root.outputs) - len(outs))
    if all(r is v for r, v in zip(outs, root.outputs, strict=True)):
        raise RuleError(f"{where} returned the matched outputs unchanged", "return Decline(reason) instead")
    for v, r in zip(root.outputs, outs, strict=True):
        if r is None and (v.uses() or v.is_graph_output()):
            raise RuleError(f"{where} returned no value for output {value_label(v)}, which is used",
                            "return a value for every used output")
    return outs


def _needed(ctx: RewriterContext, outs: list[ir.Value | None]) -> list[ir.Node]:
    """The new nodes that some replacement value depends on, in creation order."""
    new = {node: None for node in ctx.nodes}
    needed: dict[ir.Node, None] = {}
    stack = [r.producer() for r in outs if r is not None]
    while stack:
        node = stack.pop()
        if node is None or node not in new or node in needed:
            continue
        needed[node] = None
        stack.extend(v.producer() for v in node.inputs if v is not None)
    return [node for node in ctx.nodes if node in needed]


def _inherit_type(r: ir.Value, v: ir.Value) -> None:
    if r.type is None:
        r.type = v.type
    if r.shape is None and v.shape is not None:
        r.shape = v.shape.copy()


def commit(match: Match, ctx: RewriterContext, replacement: Replacement, namer: Namer, rule_name: str) -> Change:
    """Applies ``replacement`` for ``match`` (see the module docstring); returns what changed."""
    root, graph = match.root, match.graph
    outs = _outputs(rule_name, root, replacement)
    needed = _needed(ctx, outs)
    needed_set = set(needed)
    for node in (n for n in ctx.nodes if n not in needed_set):
        for i in range(len(node.inputs)):
            node.replace_input_with(i, None)
    root_outputs = set(root.outputs)
    for node in needed:
        if any(v in root_outputs for v in node.inputs):
            ctx.discard()
            raise RuleError(f"rule '{rule_name}' at {node_label(root)}: the replacement reads the output of the "
                            "node it replaces", "build the replacement from the match's inputs")
    for init in ctx.initializers:
        if init.uses() or any(init is r for r in outs):
            graph.register_initializer(init)
    graph.insert_before(root, needed)
    change = Change(new_nodes=list(needed))
    fresh = {r for r in outs if r is not None and r.producer() in needed_set}
    for v, r in zip(root.outputs, outs, strict=True):
        if r is None or r is v:
            continue
        _inherit_type(r, v)
        change.rewired_nodes.extend(v.consumers())
        if v.is_graph_output() and r not in fresh:
            name = namer.node(f"{root.name or rule_name}_Identity")
            identity = ir.Node("", "Identity", [r], num_outputs=1, name=name)
            graph.insert_before(root, identity)
            change.new_nodes.append(identity)
            r = identity.outputs[0]
            _inherit_type(r, v)
            fresh.add(r)
        if r in fresh and v.name:
            old_name = v.name
            v.name = namer.value(f"{old_name}_replaced")
            r.name = old_name
            fresh.discard(r)
        v.replace_all_uses_with(r, replace_graph_outputs=True)
    _remove_dead(match, change)
    return change


def _remove_dead(match: Match, change: Change) -> None:
    pending = [*match.nodes, *match.const_nodes]
    removed = True
    while removed:
        removed = False
        for node in pending:
            if node.graph is None or any(out.uses() or out.is_graph_output() for out in node.outputs):
                continue
            inputs = [v for v in node.inputs if v is not None]
            node.graph.remove(node, safe=True)
            change.lost_uses.extend(inputs)
            removed = True
        pending = [node for node in pending if node.graph is not None]


def remove_unused_initializers(candidates: Iterable[ir.Value]) -> int:
    """Removes the candidates that are initializers nobody reads any more; returns how many.

    The driver calls this once at the end with every value that lost a use: checking after each
    commit would count the uses of a widely shared weight again and again.
    """
    removed = 0
    for value in candidates:
        if (value.is_initializer() and not value.is_graph_output() and not value.is_graph_input()
                and not value.uses()):
            assert value.graph is not None and value.name is not None
            value.graph.initializers.pop(value.name)
            removed += 1
    return removed
