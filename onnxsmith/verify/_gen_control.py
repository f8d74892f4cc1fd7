"""Op generator for control flow: If, with small then/else subgraphs.

Each branch reads an outer-scope operand ``x`` directly (no subgraph inputs, as ONNX requires
for If) and computes a value of ``x``'s type and shape: one elementwise op, sometimes followed by
an Add of a Constant node defined inside the branch, sometimes with an Identity on the way and
a node nothing reads. So passes meet outer-scope uses, constants and no-ops inside subgraphs,
and dead code there. The output interval is the union of the two branches' intervals.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import onnx_ir as ir

from onnxsmith.verify._model_draft import FLOAT_TYPES, Decline, ModelDraft, Operand, span

__all__ = ["GENERATORS"]

# op -> image of an interval (all monotonic or even, defined everywhere)
_BRANCH_OPS: dict[str, Callable[[float, float], tuple[float, float]]] = {
    "Relu": lambda lo, hi: (max(lo, 0.0), max(hi, 0.0)),
    "Neg": lambda lo, hi: (-hi, -lo),
    "Tanh": lambda lo, hi: (math.tanh(lo), math.tanh(hi)),
    "Abs": lambda lo, hi: (0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi)), max(abs(lo), abs(hi))),
}


def _condition(d: ModelDraft, x: Operand) -> Operand:
    """A boolean scalar: a bool scalar from the pool, or ``ReduceMax(x) > c``."""

    def make() -> Operand:
        peak = d.node("ReduceMax", [x], outputs=[(x.dtype, (), x.lo, x.hi)], keepdims=0)[0]
        threshold = d.fresh(x.dtype, (), lo=-0.5, hi=0.5)
        return d.node("Greater", [peak, threshold], outputs=[(ir.DataType.BOOL, (), 0, 1)])[0]

    return d.pick(lambda o: o.dtype == ir.DataType.BOOL and o.shape == (), make)


def _branch(d: ModelDraft, x: Operand, label: str) -> tuple[ir.Graph, float, float]:
    """A subgraph computing a value like ``x`` from ``x``; returns it with the value's interval."""
    nodes: list[ir.Node] = []

    def emit(op_type: str, inputs: list[ir.Value], **attributes: object) -> ir.Value:
        node = ir.Node("", op_type, inputs, attributes=ir.convenience.convert_attributes(attributes),
                       num_outputs=1, name=d.name(f"{label}_{op_type}_"))
        node.outputs[0].name = f"{node.name}_out"
        nodes.append(node)
        return node.outputs[0]

    source = emit("Identity", [x.value]) if d.integer(0, 3) == 0 else x.value
    op = d.choice(sorted(_BRANCH_OPS))
    value = emit(op, [source])
    lo, hi = _BRANCH_OPS[op](x.lo, x.hi)
    if d.flag():
        shift = d.random_array(x.dtype, ())
        value = emit("Add", [value, emit("Constant", [], value=ir.tensor(shift))])
        lo, hi = lo + float(shift), hi + float(shift)
    if d.integer(0, 3) == 0:
        emit("Neg", [x.value])  # dead: nothing reads it
    value.type, value.shape = ir.TensorType(x.dtype), ir.Shape(list(x.shape))
    return ir.Graph([], [value], nodes=nodes, name=d.name(f"{label}_branch")), lo, hi


def gen_if(d: ModelDraft, op: str) -> None:
    usable = FLOAT_TYPES & set(d.dtypes)
    if not usable:
        raise Decline
    x = d.pick(lambda o: o.dtype in usable, lambda: d.fresh(d.choice(sorted(usable)), d.shape(min_rank=0)))
    cond = _condition(d, x)
    then_branch, then_lo, then_hi = _branch(d, x, "then")
    else_branch, else_lo, else_hi = _branch(d, x, "else")
    lo, hi = span(then_lo, then_hi, else_lo, else_hi)
    d.node("If", [cond], outputs=[(x.dtype, x.shape, lo, hi)], constant=x.constant and cond.constant,
           then_branch=then_branch, else_branch=else_branch)


GENERATORS: dict[str, Callable[[ModelDraft, str], None]] = {"If": gen_if}
