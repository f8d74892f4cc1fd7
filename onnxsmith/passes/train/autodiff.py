"""Reverse-mode differentiation of an ONNX graph: the reverse sweep.

Given parameters ``w`` (values of the graph) and a scalar ``loss`` value, :func:`differentiate`
appends to the graph the nodes that compute ``d loss / d w`` and returns those values.

1. **Active values** (forward): a value is active when it is a parameter, or a floating-point
   output of a node with an active input in a differentiable position (see
   :mod:`~onnxsmith.passes.train.registry`). Integer and boolean values are not, except the
   outputs a rule declares gradient-carrying (the codes of a QuantizeLinear -> DequantizeLinear
   pair).
2. **Relevant nodes** (backward): nodes with an active input that the loss depends on. Only they
   are differentiated, so ops without a rule elsewhere in the graph do not matter; a relevant node
   without a rule is an error naming it.
3. **Forward outputs**: a relevant node whose rule reads optional outputs the model left out
   (``forward_outputs``, e.g. LayerNormalization's Mean and InvStdDev) is replaced by the same
   node with those outputs.
4. **Sweep**: starting from the seed (``1`` for a scalar loss, or ones of the output's shape), the
   relevant nodes are visited in reverse topological order. A value read by several nodes
   receives several gradient contributions; they are added (one ``Sum`` node) when its producer is
   reached. Each rule is told which of its inputs need a gradient, so nothing is computed that no
   requested gradient uses.

The result is plain default-domain ONNX at the model's opset (13 or later), runnable by stock
onnxruntime.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import UnsupportedError
from onnxsmith.passes.train.context import GradContext, RuleOptions, dims_of
from onnxsmith.passes.train.registry import find_rule, get_rule

__all__ = ["DIFFERENTIABLE_TYPES", "GradientGraph", "differentiate"]

log = logging.getLogger(__name__)

#: Element types that carry gradients.
DIFFERENTIABLE_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16,
                                  ir.DataType.BFLOAT16})

MIN_OPSET = 13


@dataclass
class GradientGraph:
    """What :func:`differentiate` appended.

    Attributes:
        gradients: For each parameter, its gradient value, or None when the loss does not depend
            on it through differentiable inputs.
        nodes: The backward nodes appended to the graph, in order.
    """

    gradients: dict[ir.Value, ir.Value | None] = field(default_factory=dict)
    nodes: list[ir.Node] = field(default_factory=list)


def differentiate(graph: ir.Graph, parameters: Sequence[ir.Value], loss: ir.Value, *,
                  seed: str = "scalar", options: RuleOptions | None = None) -> GradientGraph:
    """Appends the gradients of ``loss`` with respect to ``parameters`` to ``graph``.

    Args:
        graph: A topologically sorted graph whose values have inferred types and shapes.
        parameters: Values to differentiate with respect to (initializers or graph inputs).
        loss: The value to differentiate.
        seed: ``"scalar"``: ``loss`` must hold one element, seeded with 1; ``"ones"``: seeded
            with ones of its shape (the gradient of ``ReduceSum(loss)``).
        options: Choices of the rules that have some (e.g. scale gradients of fake quantization).

    Returns:
        The gradient of each parameter and the appended nodes.

    Raises:
        UnsupportedError: The opset is older than 13, ``loss`` is not a floating-point scalar, or a
            node between a parameter and the loss has no gradient rule or cannot be differentiated.
    """
    opset = graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 0))
    if opset < MIN_OPSET:
        raise UnsupportedError(f"gradients need opset {MIN_OPSET} or later, the model has opset {opset}",
                               "convert the model with onnx.version_converter first")
    active = _active_values(graph, parameters)
    relevant = _relevant_nodes(graph, active, loss)
    ctx = GradContext(graph, opset, options or RuleOptions())
    relevant = [_with_forward_outputs(ctx, node, active) for node in relevant]
    grads: dict[ir.Value, list[ir.Value]] = {loss: [_seed(ctx, loss, seed)]} if loss in active else {}
    for node in reversed(relevant):
        rule = get_rule(node)
        output_grads = [_accumulate(ctx, grads, out) for out in node.outputs]
        if all(g is None for g in output_grads):
            continue
        needs = [v is not None and v in active and rule.differentiable(i) for i, v in enumerate(node.inputs)]
        ctx.begin(node, needs)
        input_grads = list(rule.function(ctx, node, output_grads))
        if len(input_grads) > len(node.inputs):
            raise RuntimeError(f"the gradient rule of {node.op_type} returned {len(input_grads)} gradients "
                               f"for {len(node.inputs)} inputs")
        for value, grad, needed in zip(node.inputs, input_grads, needs):
            if needed and grad is not None:
                grads.setdefault(value, []).append(grad)
    result = GradientGraph(nodes=ctx.nodes)
    for p in parameters:
        result.gradients[p] = _accumulate(ctx, grads, p)
    log.debug("appended %d backward nodes for %d parameters", len(ctx.nodes), len(parameters))
    return result


def _active_values(graph: ir.Graph, parameters: Sequence[ir.Value]) -> set[ir.Value]:
    active = {p for p in parameters if p.dtype in DIFFERENTIABLE_TYPES}
    for node in graph:
        rule = find_rule(node)
        if any(v in active and (rule is None or rule.differentiable(i)) for i, v in enumerate(node.inputs)):
            active.update(out for out in node.outputs if out.dtype in DIFFERENTIABLE_TYPES or (
                rule is not None and rule.integer_outputs is not None and rule.integer_outputs(out)))
    return active


def _relevant_nodes(graph: ir.Graph, active: set[ir.Value], loss: ir.Value) -> list[ir.Node]:
    """Nodes with an active input that ``loss`` depends on, in graph order."""
    needed: set[ir.Node] = set()
    work = [loss.producer()]
    while work:
        node = work.pop()
        if node is None or node in needed or node.graph is not graph:
            continue
        if not any(out in active for out in node.outputs):
            continue
        needed.add(node)
        work.extend(v.producer() for v in node.inputs if v is not None and v in active)
    return [node for node in graph if node in needed]


def _with_forward_outputs(ctx: GradContext, node: ir.Node, active: set[ir.Value]) -> ir.Node:
    """``node``, or its replacement with the optional outputs its rule reads (``forward_outputs``)."""
    rule = find_rule(node)  # a missing rule is reported by the sweep
    wanted = rule.forward_outputs if rule is not None else 0
    present = len(node.outputs)
    while present and not node.outputs[present - 1].name:  # trailing optional outputs left out
        present -= 1
    if present >= wanted or not all(out.name for out in node.outputs[:present]):
        return node
    attributes = list(node.attributes.values())
    replacement = ir.Node(node.domain, node.op_type, node.inputs, attributes=attributes, num_outputs=wanted,
                          name=node.name, version=node.version)
    old, new = list(node.outputs[:present]), list(replacement.outputs[:present])
    for before, after in zip(old, new):
        after.type, after.shape = before.type, before.shape
        if before in active:
            active.add(after)
    base = node.outputs[0].name
    for i, out in enumerate(replacement.outputs[present:], present):
        out.name = ctx.fresh(f"{base}_output{i}")
    graph = node.graph
    assert graph is not None
    ir.convenience.replace_nodes_and_values(graph, node, [node], [replacement], old, new)
    log.debug("gave %s node '%s' %d outputs for its gradient", node.op_type, node.name, wanted)
    return replacement


def _seed(ctx: GradContext, loss: ir.Value, seed: str) -> ir.Value:
    dims = dims_of(loss)
    if seed == "ones":
        static = ctx.static_shape(loss)
        if static is not None:
            return ctx.const(np.ones(static), dtype=loss.dtype)
        return ctx.op("ConstantOfShape", ctx.shape(loss), value=ir.tensor(np.ones(1, loss.dtype.numpy())))
    if dims is None or any(d != 1 for d in dims):
        raise UnsupportedError(f"the loss '{loss.name}' is not a scalar (shape {dims})",
                               "reduce it to one element first, or seed with ones (seed=ones)")
    return ctx.const(np.ones([1] * len(dims)), dtype=loss.dtype)


def _accumulate(ctx: GradContext, grads: dict[ir.Value, list[ir.Value]], value: ir.Value) -> ir.Value | None:
    """The total gradient of ``value``: its single contribution, or one Sum of all of them."""
    parts = grads.get(value)
    if not parts:
        return None
    if len(parts) > 1:
        grads[value] = parts = [ctx.op("Sum", *parts)]
    return parts[0]
