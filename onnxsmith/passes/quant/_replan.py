"""Editing a :class:`QuantPlan` by node: which nodes keep a tensor quantized, and the plan without them.

Keeping a tensor ``t`` in float means keeping in float every *integer* node of the plan next to
it (:func:`nodes_keeping_quantized`): the quantized nodes reading ``t``, and its producer when
that writes integers (a Conv, or the Relu/Clip fused into one, stands for the Conv). Scale-sharing
nodes (Reshape, MaxPool...) are not named: they follow their neighbours.

:func:`plan_without` re-plans with :func:`~onnxsmith.passes.quant.planner.build_plan` from the
plan's own integer nodes minus the excluded ones, so that the values, scale sharing and fused
activations stay exactly what the planner would decide; it only ever removes quantization. The
specs of the values that remain are the original ones (types and overrides are kept); a value that
shared another's scale and no longer can gets its own calibrated range.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

import onnx_ir as ir

from onnxsmith.ir.queries import op_key
from onnxsmith.passes.quant.plan import NodeDecision, QuantPlan
from onnxsmith.passes.quant.planner import PlanSettings, Selection, build_plan

__all__ = ["node_names", "nodes_keeping_quantized", "plan_without"]


def node_names(graph: ir.Graph) -> dict[ir.Node, str]:
    """Each node's name in a plan (an unnamed node is ``<op>_<index>``, as the planner names it)."""
    return {node: node.name or f"{node.op_type}_{index}" for index, node in enumerate(graph)}


def nodes_keeping_quantized(value: ir.Value, plan: QuantPlan, names: Mapping[ir.Node, str]) -> list[str]:
    """The integer nodes of ``plan`` to exclude so that ``value`` stays float (module docstring)."""
    found: dict[str, None] = {}

    def add(node: ir.Node | None) -> None:
        if node is None:
            return
        decision = plan.nodes.get(names[node])
        if decision is None or decision.action != "quantize":
            return
        if decision.role == "integer":
            found[names[node]] = None
        elif decision.role == "fused-activation" and node.inputs and node.inputs[0] is not None:
            add(node.inputs[0].producer())

    add(value.producer())
    for consumer in value.consumers():
        add(consumer)
    return list(found)


def plan_without(plan: QuantPlan, graph: ir.Graph, excluded: Mapping[str, str],
                 ranges: Mapping[str, tuple[float, float]]) -> QuantPlan:
    """``plan`` with the nodes of ``excluded`` (name -> reason) kept in float (module docstring).

    Args:
        plan: A plan made for ``graph``.
        graph: The graph (not modified).
        excluded: Node names to skip, with the reason recorded in their decision.
        ranges: Calibrated ranges by value name, for values that lose a shared scale.
    """
    names = node_names(graph)
    candidates = [node for node, name in names.items() if name not in excluded
                  and (d := plan.nodes.get(name)) is not None and d.action == "quantize" and d.role == "integer"]
    decisions = {name: d for name, d in plan.nodes.items() if d.action == "skip"}
    by_name = {name: node for node, name in names.items()}
    decisions.update({name: NodeDecision(op_key(by_name[name]), "skip", reason) for name, reason in excluded.items()})
    known = {name: spec.range for name, spec in plan.values.items() if spec.range is not None}
    known.update(ranges)
    fresh = build_plan(graph, Selection(candidates, decisions), known, _settings_of(plan),
                       target=plan.target, qdq_domain=plan.qdq_domain)
    for name, spec in fresh.values.items():
        old = plan.values.get(name)
        if old is not None:
            fresh.values[name] = old if old.source == spec.source else replace(
                spec, dtype=old.dtype, symmetric=old.symmetric)
    return fresh


def _settings_of(plan: QuantPlan) -> PlanSettings:
    """Settings reproducing ``plan``'s choices for values it did not have (its majority types)."""
    activations = [s for s in plan.values.values() if s.source not in ("weight", "bias")]
    weights = [s for s in plan.values.values() if s.source == "weight"]
    activation = Counter(s.dtype for s in activations).most_common(1)
    weight = Counter(s.dtype for s in weights).most_common(1)
    return PlanSettings(linear_ops=frozenset(), activation_dtype=activation[0][0] if activation else "uint8",
                        weight_dtype=weight[0][0] if weight else "int8",
                        symmetric_activations=any(s.symmetric for s in activations),
                        per_channel=any(s.axis is not None for s in weights),
                        narrow_weights=any(s.narrow for s in weights), max_range=math.inf)
