"""From a graph, a target's choices and activation ranges to a :class:`QuantPlan`.

Planning runs in three steps:

1. :func:`select_nodes` decides per node, from the graph alone: the target's linear ops
   (:mod:`~onnxsmith.passes.quant.op_roles`) and the user's ``include`` matches are candidates;
   ``exclude`` matches, nodes inside decomposed LayerNorm/GELU
   (:mod:`~onnxsmith.passes.quant.float_islands`) and com.microsoft FusedConv (no QDQ form: the
   ``prepare-quant`` pass splits those whose activation onnxruntime absorbs) are skipped with
   their reason, as is com.microsoft Attention: onnxruntime's QDQ transformer has no selector
   for it (only Conv, MatMul, Gemm, Where, Concat, Split and element-wise and data-movement ops),
   so Q/DQ around it would stay; its integer form is dynamic (``quantize-dynamic`` makes it
   QAttention, and composes after ``qdq``: it leaves MatMuls whose weights come from a
   DequantizeLinear alone). Element-wise ops with an integer kernel on the target (Add, Mul on
   ``cpu``) whose inputs may all be integer data are *element-wise candidates*, decided in step 3.
   :func:`activation_values` lists every value a candidate may need a range for, so calibration
   observes only those.
2. With ranges: a candidate whose activation has no range, or an absurd one (non-finite or
   ``|x| >= max_range``: the attention mask built from the float32 minimum calibrates to
   ``[-3.4e38, 0]``), is skipped with the range in the reason.
3. :func:`build_plan` writes the specs. A value is quantized when a quantized node reads it, or
   when it is the output of an op whose integer kernel writes integers (Conv). Through
   scale-preserving ops (Reshape, Transpose, MaxPool...) quantization is extended upstream and
   shares one scale (``shared-with``) only where that lets onnxruntime run the op on integers: the
   op's output is quantized, its input comes from an integer-producing node, and every reader of
   the input wants it quantized. Anything else would only add Q/DQ nodes. An element-wise
   candidate is quantized only where it sits between integer kernels
   (:mod:`~onnxsmith.passes.quant.integer_elementwise`); the others get a skip with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import onnx_ir as ir

from onnxsmith.ir.queries import op_key
from onnxsmith.passes.quant.float_islands import find_float_islands
from onnxsmith.passes.quant.integer_elementwise import integer_elementwise, may_run_on_integers
from onnxsmith.passes.quant.op_roles import (
    LINEAR_OPS,
    SCALE_PRESERVING_OPS,
    fused_activation,
    is_channel_bias,
    weight_axis,
    writes_integers,
)
from onnxsmith.passes.quant.qdq_nodes import constant_array
from onnxsmith.passes.quant.plan import NodeDecision, QuantPlan, ValueSpec, is_absurd
from onnxsmith.passes.quant.split_fused_conv import split_reason

__all__ = ["PlanSettings", "Selection", "activation_values", "build_plan", "fused_activation", "is_constant",
           "select_nodes"]

_FLOATS = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16})
_RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                         "Bernoulli"})
_FUSED_CONV = "com.microsoft::FusedConv"
_ATTENTION = "com.microsoft::Attention"
_ATTENTION_REASON = ("onnxruntime has no QDQ fusion for Attention: add 'quantize-dynamic{op-types=Attention}' after "
                     "'qdq' to run it as QAttention")


@dataclass
class PlanSettings:
    """Resolved choices of ``annotate-quant`` (types by lower-case name).

    Attributes:
        linear_ops: Linear op types the target runs in integers.
        elementwise_ops: Element-wise op types the target runs in integers between integer kernels.
        activation_dtype / weight_dtype: Integer types.
        symmetric_activations: Activation zero points at the midpoint.
        per_channel: Weights get one scale per output channel.
        narrow_weights: Signed weights use ``[-127, 127]``.
        include / exclude: Node name, op type or regex patterns.
        overrides: Value name -> ``skip``, a dtype name, ``symmetric`` or ``asymmetric``.
        max_range: Ranges reaching this magnitude are absurd.
    """

    linear_ops: frozenset[str]
    activation_dtype: str
    weight_dtype: str
    symmetric_activations: bool
    per_channel: bool = True
    narrow_weights: bool = True
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)
    max_range: float = 1e4
    elementwise_ops: frozenset[str] = frozenset()


@dataclass
class Selection:
    """Structural decisions: candidate nodes, element-wise candidates (both in graph order) and decided skips."""

    candidates: list[ir.Node]
    decisions: dict[str, NodeDecision]
    elementwise: list[ir.Node] = field(default_factory=list)


def is_constant(value: ir.Value, memo: dict[ir.Value, bool] | None = None) -> bool:
    """Computed from constants only: an initializer, a Constant's output, or a node's output whose
    inputs all are (such values have no activation range).

    ``memo`` holds the answers found so far for values of the same, unchanged graph: callers asking
    about many values share one, so that each ancestor is looked at once instead of once per
    question (all-MiniLM-L6-v2: 408 questions took 0.13 s of the 2.1 s CPU of quantizing it).
    """
    memo = {} if memo is None else memo
    stack = [value]
    while stack:
        current = stack[-1]
        producer = current.producer()
        if current.const_value is not None or (producer is not None and producer.op_type == "Constant"):
            memo[current] = True
        elif producer is None or producer.op_type in _RANDOM_OPS or not producer.inputs:
            memo[current] = False
        else:
            pending = [v for v in producer.inputs if v is not None and v not in memo]
            if pending:
                stack.extend(pending)
                continue
            memo[current] = all(memo[v] for v in producer.inputs if v is not None)
        stack.pop()
    return memo[value]


def _is_float(value: ir.Value | None) -> bool:
    return value is not None and value.dtype in _FLOATS


def _matches(node: ir.Node, patterns: list[str]) -> str | None:
    """The first pattern naming the node, its op type, or fully matching its name as a regex."""
    for pattern in patterns:
        if pattern in (node.name, node.op_type, op_key(node)):
            return pattern
        try:
            if node.name and re.fullmatch(pattern, node.name):
                return pattern
        except re.error:
            continue
    return None


def _node_name(node: ir.Node, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def select_nodes(graph: ir.Graph, settings: PlanSettings) -> Selection:
    """Step 1 (module docstring): candidates and structural skips."""
    decisions: dict[str, NodeDecision] = {}
    island_of = {node: island for island in find_float_islands(graph) for node in island.nodes}
    constants: dict[ir.Value, bool] = {}
    candidates: list[ir.Node] = []
    elementwise: list[ir.Node] = []
    for index, node in enumerate(graph):
        name, op = _node_name(node, index), op_key(node)
        wanted = op in settings.linear_ops or _matches(node, settings.include) is not None
        between = not wanted and op in settings.elementwise_ops and may_run_on_integers(
            node, settings.linear_ops, elementwise)
        if op == _FUSED_CONV:
            decisions[name] = NodeDecision(op, "skip", _fused_conv_reason(node))
        elif op == _ATTENTION:
            decisions[name] = NodeDecision(op, "skip", _ATTENTION_REASON)
        elif node in island_of:
            decisions[name] = NodeDecision(op, "skip", island_of[node].reason)
        elif not wanted and not between:
            continue
        elif (pattern := _matches(node, settings.exclude)) is not None:
            decisions[name] = NodeDecision(op, "skip", f"excluded: matches '{pattern}'")
        elif not any(_is_float(v) and not is_constant(v, constants) for v in node.inputs):
            decisions[name] = NodeDecision(op, "skip", "no float activation input")
        else:
            (candidates if wanted else elementwise).append(node)
    return Selection(candidates, decisions, elementwise)


def _fused_conv_reason(node: ir.Node) -> str:
    """Why a FusedConv is not quantized: it has no QDQ form; only ``prepare-quant`` can split it."""
    activation = node.attributes.get("activation")
    name = activation.as_string() if activation is not None else ""
    has_residual = len(node.inputs) > 3 and node.inputs[3] is not None
    reason = split_reason(name, has_residual)
    return reason or f"FusedConv({name}) is quantized as Conv + {name}: run 'prepare-quant' first ('qdq' does)"


def _quantized_inputs(node: ir.Node) -> list[ir.Value]:
    """The float inputs a quantized node reads quantized (its role's inputs for a linear op)."""
    role = LINEAR_OPS.get(op_key(node))
    indices = role.inputs if role is not None else range(len(node.inputs))
    return [node.inputs[i] for i in indices if i < len(node.inputs) and _is_float(node.inputs[i])]


def _activations_of(node: ir.Node, constants: dict[ir.Value, bool]) -> list[ir.Value]:
    values = [v for v in _quantized_inputs(node) if not is_constant(v, constants)]
    if writes_integers(node):
        activation = fused_activation(node)
        output = (activation or node).outputs[0]
        values += [output] if _is_float(output) else []
    return values


def activation_values(selection: Selection) -> list[str]:
    """Names of every activation a candidate may quantize: its inputs, outputs, and their
    scale-preserving neighbours (in graph order, without repeats)."""
    names: dict[str, None] = {}
    constants: dict[ir.Value, bool] = {}
    for node in [*selection.candidates, *selection.elementwise]:
        for value in _activations_of(node, constants):
            names[value.name] = None
            producer = value.producer()
            while producer is not None and op_key(producer) in SCALE_PRESERVING_OPS and _is_float(producer.inputs[0]):
                value = producer.inputs[0]
                if is_constant(value, constants):
                    break
                names[value.name] = None
                producer = value.producer()
    return list(names)


def _drop_bad_ranges(nodes: list[ir.Node], decisions: dict[str, NodeDecision], order: Mapping[ir.Node, int],
                     ranges: Mapping[str, tuple[float, float]], settings: PlanSettings,
                     constants: dict[ir.Value, bool]) -> list[ir.Node]:
    """Step 2: the ``nodes`` whose activations all have sane ranges (the others get a skip decision)."""
    kept = []
    for node in nodes:
        problem = next((f"override: '{v.name}' is not quantized" for v in (*_quantized_inputs(node), *node.outputs)
                        if settings.overrides.get(v.name) == "skip"), None)
        for value in _activations_of(node, constants):
            if problem:
                break
            if value.name not in ranges:
                problem = f"no calibration range for '{value.name}'"
            elif is_absurd(*ranges[value.name], settings.max_range):
                low, high = ranges[value.name]
                problem = f"absurd range: '{value.name}' in [{low:.3g}, {high:.3g}]"
        if problem:
            decisions[_node_name(node, order[node])] = NodeDecision(op_key(node), "skip", problem)
        else:
            kept.append(node)
    return kept


def _wants_quantized(value: ir.Value, quantized: set[ir.Node], wanted: set[ir.Value]) -> bool:
    """Every reader of ``value`` reads it quantized: a quantized node, or a scale-preserving op
    whose output is quantized."""
    uses = value.uses()
    return bool(uses) and all(
        use.node in quantized or (op_key(use.node) in SCALE_PRESERVING_OPS and use.idx == 0
                                  and use.node.outputs[0] in wanted) for use in uses)


def _extend_through_scale_preserving(graph: ir.Graph, quantized: set[ir.Node], wanted: set[ir.Value],
                                     ranges: Mapping[str, tuple[float, float]],
                                     constants: dict[ir.Value, bool]) -> dict[ir.Value, ir.Value]:
    """Grows ``wanted`` upstream through scale-preserving ops (module docstring, step 3).

    Returns:
        Output -> input of every scale-preserving op that runs on integers (the output shares the
        input's parameters).
    """
    shared: dict[ir.Value, ir.Value] = {}
    fused = {a for node in quantized if writes_integers(node) and (a := fused_activation(node)) is not None}
    changed = True
    while changed:
        changed = False
        for node in reversed(list(graph)):
            if op_key(node) not in SCALE_PRESERVING_OPS or not node.inputs or node.outputs[0] in shared:
                continue
            x, y = node.inputs[0], node.outputs[0]
            if y not in wanted or not _is_float(x) or is_constant(x, constants) or x.is_graph_output():
                continue
            producer = x.producer()
            integer_source = producer is not None and (
                producer in quantized or producer in fused
                or (op_key(producer) in SCALE_PRESERVING_OPS and producer.inputs[0] in wanted))
            if x in wanted or (integer_source and x.name in ranges and _wants_quantized(x, quantized, wanted)):
                wanted.add(x)
                shared[y] = x
                changed = True
    return shared


def _root(value: ir.Value, shared: Mapping[ir.Value, ir.Value]) -> ir.Value:
    while value in shared:
        value = shared[value]
    return value


def _dtype_override(name: str, default: str, overrides: Mapping[str, str]) -> str:
    choice = overrides.get(name, "")
    return choice if choice not in ("", "skip", "symmetric", "asymmetric") else default


def build_plan(graph: ir.Graph, selection: Selection, ranges: Mapping[str, tuple[float, float]],
               settings: PlanSettings, *, target: str, qdq_domain: str) -> QuantPlan:
    """Steps 2 and 3 (module docstring): the plan for ``graph``."""
    order = {node: i for i, node in enumerate(graph)}
    constants: dict[ir.Value, bool] = {}
    nodes = _drop_bad_ranges(selection.candidates, selection.decisions, order, ranges, settings, constants)
    elementwise = _drop_bad_ranges(selection.elementwise, selection.decisions, order, ranges, settings, constants)
    quantized = set(nodes)
    wanted = {v for node in nodes for v in _activations_of(node, constants)}
    shared = _extend_through_scale_preserving(graph, quantized, wanted, ranges, constants)
    if elementwise:
        chosen, reasons = integer_elementwise(elementwise, quantized, shared, wanted)
        selection.decisions.update({_node_name(n, order[n]): NodeDecision(op_key(n), "skip", reason)
                                    for n, reason in reasons.items()})
        quantized.update(chosen)
        wanted.update(v for node in chosen for v in _activations_of(node, constants))
        shared = _extend_through_scale_preserving(graph, quantized, wanted, ranges, constants)
    plan = QuantPlan(target=target, qdq_domain=qdq_domain)
    for node in sorted(quantized, key=order.__getitem__):
        name = _node_name(node, order[node])
        plan.nodes[name] = NodeDecision(op_key(node), "quantize", role="integer")
        activation = fused_activation(node) if writes_integers(node) else None
        if activation is not None:
            plan.nodes[_node_name(activation, order[activation])] = NodeDecision(
                op_key(activation), "quantize", f"fused into the output of '{name}'", role="fused-activation")
    for y in shared:
        node = y.producer()
        assert node is not None
        plan.nodes[_node_name(node, order[node])] = NodeDecision(
            op_key(node), "quantize", f"shares the scale of '{_root(y, shared).name}'", role="shared-scale")
    plan.nodes.update(selection.decisions)
    for value in sorted(wanted, key=lambda v: order.get(v.producer(), -1) if v.producer() else -1):
        plan.values[value.name] = _activation_spec(value, shared, ranges, settings)
    for node in nodes:
        _add_constant_specs(node, plan, settings)
    return plan


def _activation_spec(value: ir.Value, shared: Mapping[ir.Value, ir.Value],
                     ranges: Mapping[str, tuple[float, float]], settings: PlanSettings) -> ValueSpec:
    root = _root(value, shared)
    choice = settings.overrides.get(root.name, "")
    symmetric = {"symmetric": True, "asymmetric": False}.get(choice, settings.symmetric_activations)
    dtype = _dtype_override(root.name, settings.activation_dtype, settings.overrides)
    if root is not value:
        return ValueSpec(dtype, symmetric, source=f"shared-with:{root.name}", range=ranges[root.name])
    return ValueSpec(dtype, symmetric, source="calibrated", range=ranges[value.name])


def _add_constant_specs(node: ir.Node, plan: QuantPlan, settings: PlanSettings) -> None:
    """Weight specs of a quantized node's constant inputs, and its bias spec."""
    role = LINEAR_OPS.get(op_key(node))
    for index, value in enumerate(node.inputs):
        if value is None or not _is_float(value) or value.name in plan.values or constant_array(value) is None:
            continue
        if role is not None and index == role.bias:
            if value.shape is None or not is_channel_bias(node, tuple(value.shape)):
                continue  # a broadcast Gemm C is not a per-channel bias: it stays float
            weight = node.inputs[1]
            weight_spec = plan.values.get(weight.name) if weight is not None else None
            axis = 0 if weight_spec is not None and weight_spec.axis is not None else None
            plan.values[value.name] = ValueSpec("int32", True, axis=axis, source="bias")
        elif role is not None and index in role.inputs:
            rank = len(value.shape) if value.shape is not None else 0
            axis = weight_axis(node, index, rank) if settings.per_channel else None
            dtype = _dtype_override(value.name, settings.weight_dtype, settings.overrides)
            plan.values[value.name] = ValueSpec(dtype, True, axis=axis, source="weight",
                                                narrow=settings.narrow_weights and dtype == "int8")
        elif role is None:  # a constant operand of an included op, e.g. QLinearAdd's: quantized like activations
            plan.values[value.name] = ValueSpec(settings.activation_dtype, settings.symmetric_activations,
                                                source="weight")
