"""``insert-qdq``: materialise the quantization plan as QuantizeLinear/DequantizeLinear nodes.

For every value ``v`` of the plan (biases excepted: ``fold-scales`` quantizes them from the
scales around them)::

    v -> consumer          becomes          v -> Q -> DQ_1 -> consumer_1
                                                   \\-> DQ_2 -> consumer_2

One QuantizeLinear per value, inserted before its first reader, and one DequantizeLinear *per
reading node*: onnxruntime fuses a QDQ group only when each DequantizeLinear feeds one node
(it would otherwise duplicate them itself), and a DequantizeLinear private to its node lets
``fold-scales`` adjust its scale alone.

Which readers read the dequantized value: all of them when the value is integer data anyway
(the output of an op whose integer kernel writes integers, such as Conv, of the Relu/Clip fused into
it, or of a scale-preserving op running on integers, or when every reader is quantized) -- so the producer feeds only the
QuantizeLinear and fuses with it; a graph output is then the last DequantizeLinear, under the
value's name. Otherwise only the quantized readers do, and float readers keep the exact value.

Weights get ``Q(w) -> DQ`` like activations; ``fold-scales`` stores ``Q(w)`` as an integer
initializer. Per element, ``|DQ(Q(v)) - v| <= scale / 2`` inside the range (see
:mod:`~onnxsmith.passes.quant.scales`); outside it the value saturates to the range.

A value is skipped when it is already quantized (a reader is a QuantizeLinear, or it comes from a
DequantizeLinear), so a second run changes nothing.
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from onnxsmith.ir.queries import op_key
from onnxsmith.passes.base import Pass, PassContext, PassResult, Tolerance
from onnxsmith.passes.quant.annotate import MICROSOFT_DOMAIN
from onnxsmith.passes.quant.op_roles import LINEAR_OPS, SCALE_PRESERVING_OPS
from onnxsmith.passes.quant.plan import CONTEXT_KEY as PLAN_KEY
from onnxsmith.passes.quant.plan import NodeDecision, QuantPlan, ValueSpec
from onnxsmith.passes.quant.qdq_nodes import QDQBuilder, params_for_spec
from onnxsmith.passes.registry import register_pass

__all__ = ["InsertQDQ", "QUANT_TOLERANCE"]

logger = logging.getLogger(__name__)

#: What the manager's numeric check allows a quantization pass. The real bound depends on the
#: scales (``scale / 2`` per quantized element, propagated through the ops); this loose figure
#: only catches a broken graph, not a poor quantization: the quantization report measures that.
QUANT_TOLERANCE = Tolerance(rtol=0.25, atol=0.25)


@register_pass
class InsertQDQ(Pass):
    """Materialise the quantization plan as QuantizeLinear/DequantizeLinear pairs."""

    name = "insert-qdq"
    requires = frozenset({PLAN_KEY})
    after = ("annotate-quant",)
    preserves = frozenset({"calibration-ranges"})
    tolerance = QUANT_TOLERANCE

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        plan = QuantPlan.from_context(ctx)
        graph = model.graph
        builder = QDQBuilder(graph, plan.qdq_domain)
        decisions = _decisions(graph, plan)
        readers, producers = _quantized_readers(decisions), _integer_producers(decisions)
        values = _values_by_name(graph)
        inserted = {"activations": 0, "weights": 0, "dequantize": 0}
        for name, spec in plan.values.items():
            value = values.get(name)
            if value is None or spec.source == "bias" or _already_quantized(value):
                continue
            count = _materialise(graph, builder, value, spec, readers, producers)
            if count:
                inserted["weights" if spec.source == "weight" else "activations"] += 1
                inserted["dequantize"] += count
        if plan.qdq_domain == MICROSOFT_DOMAIN and any(inserted.values()):
            model.opset_imports.setdefault(MICROSOFT_DOMAIN, 1)
        return PassResult(any(inserted.values()), inserted)


def _values_by_name(graph: ir.Graph) -> dict[str, ir.Value]:
    values = {v.name: v for v in graph.inputs}
    values.update(graph.initializers)
    values.update({out.name: out for node in graph for out in node.outputs if out.name})
    return values


def _decisions(graph: ir.Graph, plan: QuantPlan) -> dict[ir.Node, NodeDecision]:
    """The plan's ``quantize`` decisions by node (unnamed nodes are named as the planner names them)."""
    found = {}
    for index, node in enumerate(graph):
        decision = plan.nodes.get(node.name or f"{node.op_type}_{index}")
        if decision is not None and decision.action == "quantize":
            found[node] = decision
    return found


def _quantized_readers(decisions: dict[ir.Node, NodeDecision]) -> set[tuple[ir.Node, int]]:
    """``(node, input index)`` of every input the plan's quantized nodes read quantized."""
    readers: set[tuple[ir.Node, int]] = set()
    for node, decision in decisions.items():
        role = LINEAR_OPS.get(op_key(node))
        if decision.role == "shared-scale":
            indices: tuple[int, ...] | range = (0,)
        elif decision.role == "fused-activation":
            indices = ()
        elif role is not None:
            indices = role.inputs
        else:
            indices = range(len(node.inputs))
        readers.update((node, i) for i in indices if i < len(node.inputs))
    return readers


def _integer_producers(decisions: dict[ir.Node, NodeDecision]) -> set[ir.Node]:
    """Quantized nodes whose output is integer data (module docstring)."""
    out = set()
    for node, decision in decisions.items():
        role = LINEAR_OPS.get(op_key(node))
        if decision.role != "integer" or role is None or role.output_quantized:
            out.add(node)
    return out


def _already_quantized(value: ir.Value) -> bool:
    producer = value.producer()
    return (producer is not None and producer.op_type == "DequantizeLinear") or any(
        use.node.op_type == "QuantizeLinear" for use in value.uses())


def _integer_source(value: ir.Value, readers: set[tuple[ir.Node, int]], producers: set[ir.Node]) -> bool:
    """Whether ``value``'s producer should feed only the QuantizeLinear (module docstring)."""
    producer = value.producer()
    if producer is None:
        return False
    if producer in producers:
        return True
    uses = value.uses()
    return bool(uses) and not value.is_graph_output() and all((u.node, u.idx) in readers for u in uses)


def _materialise(graph: ir.Graph, builder: QDQBuilder, value: ir.Value, spec: ValueSpec,
                 readers: set[tuple[ir.Node, int]], producers: set[ir.Node]) -> int:
    """Inserts the Q and the DQs of one value; returns the number of DequantizeLinear nodes."""
    everyone = spec.source != "weight" and _integer_source(value, readers, producers)
    uses = [u for u in value.uses() if everyone or (u.node, u.idx) in readers]
    output_index = next((i for i, out in enumerate(graph.outputs) if out is value), None) if everyone else None
    if not uses and output_index is None:
        return 0
    assert value.dtype is not None
    params = params_for_spec(spec, value)
    base = value.name
    quantize = builder.quantize(value, params, base)
    order = {node: i for i, node in enumerate(graph)}
    first = min((u.node for u in uses), key=order.__getitem__, default=None)
    if first is not None:
        graph.insert_before(first, quantize)
    else:
        graph.insert_after(value.producer(), quantize)
    by_node: dict[ir.Node, list[int]] = {}
    for use in uses:
        by_node.setdefault(use.node, []).append(use.idx)
    for node, indices in by_node.items():
        dq = builder.dequantize(quantize.outputs[0], params, value.dtype, base)
        graph.insert_before(node, dq)
        for i in indices:
            node.replace_input_with(i, dq.outputs[0])
    if output_index is not None:
        value.name = builder.fresh(f"{base}_float")
        dq = builder.dequantize(quantize.outputs[0], params, value.dtype, base, output_name=base)
        graph.insert_after(quantize, dq)
        graph.outputs[output_index] = dq.outputs[0]
        return len(by_node) + 1
    return len(by_node)
