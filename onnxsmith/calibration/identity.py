"""Stable value identity: recognising a calibrated value after renames and cleanup.

Value and node names are the first thing cleanup passes and re-exports change, so a range is
recorded with a :class:`ValueIdentity` besides its name: the producer's op type, output index and
node name (for people), and a *cone hash*: a digest of the value's upstream computation.

The cone hash of a value is built bottom-up over the main graph:

* a graph input: its position and element type (not its name);
* a constant (initializer, or any value computed from constants only): the fixed token ``const``,
  whatever its name, shape or content, so folding constants or deduplicating initializers does
  not change the digests downstream (weights are never read);
* an ``Identity`` output, or the first output of an inference-mode ``Dropout``: the digest of its
  input (removing these no-ops changes nothing);
* any other node output: its output index and the node's domain, op type, attributes and input
  digests (sorted for commutative ops, whose operands canonicalisation may swap).

So the hash survives node and value renames, topological re-sorting, constant folding,
initializer deduplication, common-subexpression elimination (duplicates hash alike) and the
removal of Identity and inference Dropout. It changes when the computation upstream
changes (a fusion, a removed Transpose pair): :meth:`Ranges.resolve` then falls back to the
name and reports it. Values inside subgraphs (If/Loop bodies) are not covered: onnxruntime cannot
expose them as outputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import onnx_ir as ir

from onnxsmith.ir.queries import op_key

try:  # CPython's own BLAKE2: hashlib would load OpenSSL (3.5 MiB) for the same digests
    from _blake2 import blake2b as _blake2b
except ImportError:  # another interpreter
    from hashlib import blake2b as _blake2b

__all__ = ["COMMUTATIVE_OPS", "ValueIdentity", "constant_values", "value_identities"]

#: Ops whose input order does not matter (operands are hashed sorted).
COMMUTATIVE_OPS = frozenset({"Add", "Mul", "Max", "Min", "Sum", "Mean", "And", "Or", "Xor", "Equal"})
#: Ops whose outputs are random even with constant inputs (never treated as constants).
_RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                         "Multinomial", "Bernoulli"})
_CONST = "const"


@dataclass(frozen=True)
class ValueIdentity:
    """What a value is, independently of its name.

    Attributes:
        op: Producer op (``Conv``, ``com.microsoft::Attention``), or None for a graph input.
        output: Output index in the producer (input position for a graph input).
        node: Producer node name (informative; not used for matching).
        cone: Digest of the upstream computation (see module docstring).
    """

    op: str | None
    output: int
    node: str | None
    cone: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _digest(*parts: Any) -> str:
    return _blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def _attribute_text(attr: ir.Attr) -> str:
    if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
        return f"{attr.name}=graph"
    if attr.type == ir.AttributeType.TENSOR:
        return f"{attr.name}=tensor"
    return f"{attr.name}={attr.value!r}"


def _topological(graph: ir.Graph) -> list[ir.Node]:
    """The graph's nodes with every producer before its consumers (stable otherwise)."""
    nodes = list(graph)
    position = {id(n): i for i, n in enumerate(nodes)}
    done: set[int] = set()
    order: list[ir.Node] = []
    for root in nodes:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                order.append(node)
                continue
            stack.append((node, True))
            for value in reversed(node.inputs):
                producer = value.producer() if value is not None else None
                if producer is not None and id(producer) in position and id(producer) not in done:
                    stack.append((producer, False))
    return order


def _digests(graph: ir.Graph) -> dict[int, str]:
    """Cone digest by ``id(value)`` for every value of the main graph."""
    digests: dict[int, str] = {}
    for index, value in enumerate(graph.inputs):
        dtype = value.dtype.name if value.dtype is not None else "?"
        digests[id(value)] = _CONST if value.name in graph.initializers else _digest("input", index, dtype)
    for value in graph.initializers.values():
        digests[id(value)] = _CONST
    for node in _topological(graph):
        inputs = [digests.get(id(v), _CONST) if v is not None else "none" for v in node.inputs]
        if all(d == _CONST for d in inputs) and node.op_type not in _RANDOM_OPS:
            for out in node.outputs:
                digests[id(out)] = _CONST
            continue
        operands = sorted(inputs) if node.op_type in COMMUTATIVE_OPS else inputs
        attrs = ",".join(sorted(_attribute_text(a) for a in node.attributes.values()))
        base = _digest(op_key(node), attrs, *operands)
        for out in node.outputs:
            digests[id(out)] = _digest(base, out.index())
        if _passes_through(node):
            digests[id(node.outputs[0])] = inputs[0]
    return digests


def _passes_through(node: ir.Node) -> bool:
    """Identity, or inference-mode Dropout (no ``training_mode`` input): output 0 is input 0."""
    if node.domain not in ("", "ai.onnx") or not node.inputs or node.inputs[0] is None:
        return False
    if node.op_type == "Identity":
        return True
    return node.op_type == "Dropout" and (len(node.inputs) < 3 or node.inputs[2] is None)


def _values(graph: ir.Graph) -> Iterable[ir.Value]:
    yield from graph.inputs
    for node in graph:
        yield from node.outputs


def value_identities(model: ir.Model | ir.Graph) -> dict[str, ValueIdentity]:
    """Identity of every non-constant value of the main graph, by current value name."""
    graph = model.graph if isinstance(model, ir.Model) else model
    digests = _digests(graph)
    out: dict[str, ValueIdentity] = {}
    for value in _values(graph):
        cone = digests[id(value)]
        if cone == _CONST or not value.name:
            continue
        producer = value.producer()
        if producer is None:
            out[value.name] = ValueIdentity(None, graph.inputs.index(value), None, cone)
        else:
            out[value.name] = ValueIdentity(op_key(producer), value.index(), producer.name, cone)
    return out


def constant_values(model: ir.Model | ir.Graph) -> set[str]:
    """Names of main-graph values computed from constants only (weights, folded shapes...)."""
    graph = model.graph if isinstance(model, ir.Model) else model
    digests = _digests(graph)
    return {v.name for v in _values(graph) if v.name and digests[id(v)] == _CONST} | set(graph.initializers)
