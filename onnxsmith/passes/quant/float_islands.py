"""Decomposed normalizations and GELUs: subgraphs whose internals must stay in float.

Exporters often write LayerNorm and GELU with primitive ops::

    LayerNorm:  d = x - mean(x);  y = d / sqrt(mean(d^2) + eps) * gamma + beta
    variance as E[x^2] - E[x]^2:  y = (x - m) * 1/sqrt(max(mean(x*x) - m*m, 0) + eps) ...
    GELU (erf):  y = x * 0.5 * (1 + erf(x / sqrt(2)))
    GELU (tanh): y = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))

Quantizing their internals is ruinous: each term of ``E[x^2] - E[x]^2`` is quantized with a step
larger than the variance itself (../shared/QUANT-NOTES.md: magika agreement fell to ~50%). Such a
subgraph is found from its *anchor* (the Sqrt of a normalization whose upstream holds a
ReduceMean/ReduceSum, or the Erf/Tanh of a GELU) as the *island*:

1. upstream: the anchor's ancestors through element-wise and reduction ops, up to the one
   non-constant value that enters from outside (the island's input ``x``);
2. downstream: the anchor's descendants through the same ops, up to the first node that also
   reads ``x`` or an upstream value (the closing Div/Mul), plus a trailing affine
   ``* gamma + beta`` (or ``* 0.5``) by constants.

Only the island's input and output may be quantized; every node inside is reported with the
reason ``inside decomposed LayerNorm`` or ``inside decomposed GELU``.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir

from onnxsmith.ir.queries import op_key

__all__ = ["FloatIsland", "find_float_islands"]

_ISLAND_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "ReduceMean", "ReduceSum", "Max",
                         "Cast", "Erf", "Tanh", "Neg"})
_REDUCTIONS = frozenset({"ReduceMean", "ReduceSum"})
_AFFINE = frozenset({"Mul", "Add", "Div"})
_DEPTH = 10


class FloatIsland:
    """One decomposed normalization or GELU: its kind, anchor node and member nodes."""

    def __init__(self, kind: str, anchor: ir.Node, nodes: list[ir.Node]) -> None:
        self.kind = kind
        self.anchor = anchor
        self.nodes = nodes

    @property
    def reason(self) -> str:
        return f"inside decomposed {self.kind} (anchor {self.anchor.op_type} '{self.anchor.name}')"


def _is_constant(value: ir.Value) -> bool:
    if value.const_value is not None:
        return True
    producer = value.producer()
    return producer is not None and producer.op_type == "Constant"


def _island_op(node: ir.Node | None) -> bool:
    return node is not None and op_key(node) in _ISLAND_OPS


def _users(node: ir.Node) -> list[ir.Node]:
    return [use.node for out in node.outputs for use in out.uses()]


def _ancestors(node: ir.Node) -> set[ir.Node]:
    """``node`` and its ancestors through island ops, at most ``_DEPTH`` steps up."""
    seen = {node}
    layer = [node]
    for _ in range(_DEPTH):
        layer = [p for n in layer for v in n.inputs if v is not None and _island_op(p := v.producer())
                 and p not in seen]
        seen.update(layer)
    return seen


def _descendants(value: ir.Value) -> set[ir.Node]:
    """Nodes reading ``value``, directly or through island ops, at most ``_DEPTH`` steps down."""
    seen: set[ir.Node] = set()
    layer = [use.node for use in value.uses() if _island_op(use.node)]
    for _ in range(_DEPTH):
        layer = [n for n in layer if n not in seen]
        seen.update(layer)
        layer = [u for n in layer for u in _users(n) if _island_op(u)]
    return seen


def _closing(anchor: ir.Node, upstream: set[ir.Node]) -> tuple[ir.Node, list[ir.Value]] | None:
    """The first node below ``anchor`` (single-user chain) that also reads the anchor's upstream.

    Returns it with the candidate island inputs its side operand brings (the operand, or the
    inputs of the one op computing it from upstream values such as ``x - mean`` or ``x * 0.5``).
    """
    upstream_values = {v for n in upstream for v in n.inputs if v is not None}
    previous = anchor
    for _ in range(_DEPTH):
        users = _users(previous)
        if len(users) != 1 or not _island_op(users[0]):
            return None
        node = users[0]
        for side in node.inputs:
            if side is None or side.producer() is previous or _is_constant(side):
                continue
            if side in upstream_values:
                return node, [side]
            producer = side.producer()
            if _island_op(producer):
                inputs = [v for v in producer.inputs if v is not None and not _is_constant(v)]
                if inputs and all(v in upstream_values for v in inputs):
                    return node, inputs
        previous = node
    return None


def _affine_tail(node: ir.Node) -> list[ir.Node]:
    """Trailing ``* c``, ``/ c`` and ``+ c`` nodes by constants after the closing node."""
    tail: list[ir.Node] = []
    for _ in range(3):
        users = _users(node)
        if len(users) != 1 or op_key(users[0]) not in _AFFINE or node.outputs[0].is_graph_output():
            break
        nxt = users[0]
        if not all(v is node.outputs[0] or (v is not None and _is_constant(v)) for v in nxt.inputs):
            break
        tail.append(nxt)
        node = nxt
    return tail


def _island(kind: str, anchor: ir.Node, order: dict[ir.Node, int]) -> list[ir.Node] | None:
    upstream = _ancestors(anchor)
    reductions = [n for n in upstream if op_key(n) in _REDUCTIONS]
    if kind == "LayerNorm" and not reductions:
        return None
    closing = _closing(anchor, upstream)
    if closing is None:
        return None
    node, side = closing
    candidates = [*side, *(r.inputs[0] for r in reductions if r.inputs and r.inputs[0] is not None)]
    root = min(candidates, key=lambda v: order.get(v.producer(), -1) if v.producer() is not None else -1)
    members = _descendants(root) & _ancestors(node)
    if anchor not in members:
        return None
    return sorted(members, key=order.__getitem__) + _affine_tail(node)


def _anchors(graph: ir.Graph) -> Iterator[tuple[str, ir.Node]]:
    for node in graph:
        op = op_key(node)
        if op == "Sqrt":
            yield "LayerNorm", node
        elif op in ("Erf", "Tanh"):
            yield "GELU", node


def find_float_islands(graph: ir.Graph) -> list[FloatIsland]:
    """The decomposed LayerNorms and GELUs of ``graph`` (see module docstring)."""
    order = {node: i for i, node in enumerate(graph)}
    islands: list[FloatIsland] = []
    claimed: set[ir.Node] = set()
    for kind, anchor in _anchors(graph):
        if anchor in claimed:
            continue
        members = _island(kind, anchor, order)
        if members is None:
            continue
        members = [n for n in members if n not in claimed]
        claimed.update(members)
        islands.append(FloatIsland(kind, anchor, members))
    return islands
