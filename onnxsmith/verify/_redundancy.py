"""Injected redundancy, so that cleanup passes have work in generated models.

- ``duplicate-constants``: another initializer or Constant node with the same content as one
  already in the model.
- ``identity-chains``: one to three Identity nodes in a row.
- ``constant-subgraphs``: a few ops applied to constants only (foldable at compile time).
- ``dead-branches``: ops whose results nothing reads and that are not graph outputs.
- ``repeated-subexpressions``: a copy of an existing node reading the same inputs with the same
  attributes (what common-subexpression elimination merges).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import onnx_ir as ir

from onnxsmith.verify._model_draft import Decline, ModelDraft, Operand

__all__ = ["INJECTIONS", "Step"]

#: An op generator: ``(draft, op_type) -> None``; raises Decline when it cannot apply.
Step = Callable[[ModelDraft, str], None]


def _constant_array(operand: Operand) -> np.ndarray | None:
    """The data of an initializer or of a Constant node written with ``value``."""
    if operand.value.const_value is not None:
        return operand.value.const_value.numpy()
    producer = operand.value.producer()
    if producer is not None and producer.op_type == "Constant" and "value" in producer.attributes:
        return producer.attributes["value"].value.numpy()
    return None


def duplicate_constant(d: ModelDraft, generators: Mapping[str, Step]) -> None:
    source = d.pick(lambda o: _constant_array(o) is not None)
    array = np.array(_constant_array(source), copy=True)
    if "Constant" in d.ops and d.flag():
        d.constant_node(array)
    else:
        d.weight(array)


def identity_chain(d: ModelDraft, generators: Mapping[str, Step]) -> None:
    x = d.pick(lambda o: True)
    for _ in range(d.integer(1, 3)):
        x = d.unary("Identity", x, x.lo, x.hi)


def constant_subgraph(d: ModelDraft, generators: Mapping[str, Step]) -> None:
    d.constant_only = True
    try:
        for _ in range(d.integer(1, 3)):
            op = d.choice(sorted(generators))
            generators[op](d, op)
    finally:
        d.constant_only = False


def dead_branch(d: ModelDraft, generators: Mapping[str, Step]) -> None:
    start = len(d.pool)
    for _ in range(d.integer(1, 2)):
        op = d.choice(sorted(generators))
        generators[op](d, op)
    for operand in d.pool[start:]:
        if operand.value.producer() is not None:
            d.retire(operand)


def _has_subgraph(node: ir.Node) -> bool:
    # A copy would share the subgraph object with the original; If nodes are not repeated.
    return any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values())


def repeated_subexpression(d: ModelDraft, generators: Mapping[str, Step]) -> None:
    by_value = {id(o.value): o for o in d.pool}
    candidates = [n for n in d.builder.nodes if all(id(v) in by_value for v in n.outputs) and not _has_subgraph(n)]
    if not candidates:
        raise Decline
    node = d.choice(candidates)
    attributes = {name: attr.value for name, attr in node.attributes.items()}
    copy = d.builder.op(node.op_type, *node.inputs, _outputs=len(node.outputs), **attributes)
    copies = [copy] if len(node.outputs) == 1 else list(copy)
    for original, value in zip(node.outputs, copies):
        operand = by_value[id(original)]
        value.type, value.shape = ir.TensorType(operand.dtype), ir.Shape(list(operand.shape))
        d.reuse(operand, value=value)


INJECTIONS: dict[str, Callable[[ModelDraft, Mapping[str, Step]], None]] = {
    "duplicate-constants": duplicate_constant,
    "identity-chains": identity_chain,
    "constant-subgraphs": constant_subgraph,
    "dead-branches": dead_branch,
    "repeated-subexpressions": repeated_subexpression,
}
