"""``cse``: common subexpression elimination.

Semantics: two nodes with the same op (domain, type, overload), the same attributes and the same
input values compute the same outputs, so the later one is removed and its users read the
earlier one's outputs. For commutative ops (Add, Mul, Max, Min, Sum, Mean, And, Or, Xor, Equal,
BitwiseAnd/Or/Xor) the inputs compare as a multiset. Merged nodes can make their users
identical in turn; one forward walk in topological order catches those chains.

Never merged: random ops and training-mode Dropout; nodes holding subgraphs (comparing bodies is
not attempted); nodes with tensor attributes above ``max-tensor-size`` bytes; custom-domain ops and
function calls, unless ``custom-domains`` is set (their determinism is unknown). Subgraph nodes
may merge with nodes of enclosing graphs that precede the subgraph's owner. A duplicate whose
output is a graph output is merged only if the surviving value can take the output's name.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Hashable, MutableMapping
from dataclasses import dataclass

import onnx_ir as ir

from onnxsmith.ir._fields import node_list
from onnxsmith.passes.base import Pass, PassContext, PassResult
from onnxsmith.passes.cleanup._constants import is_default_domain, is_nondeterministic, string_items, tensor_nbytes
from onnxsmith.passes.cleanup._graphs import Discarded, node_subgraphs
from onnxsmith.passes.cleanup._rewire import can_replace, replace_values
from onnxsmith.passes.registry import register_pass

__all__ = ["CommonSubexpressionElimination", "CseOptions"]

COMMUTATIVE_OPS = frozenset({
    "Add", "Mul", "Max", "Min", "Sum", "Mean", "And", "Or", "Xor", "Equal", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
})

Table = MutableMapping[Hashable, ir.Node]


@dataclass
class CseOptions:
    """Options of ``cse``.

    Attributes:
        max_tensor_size: Largest tensor attribute (bytes) compared; nodes with larger ones are kept.
        custom_domains: Also merge custom-domain ops and function calls (assumes they are deterministic).
    """

    max_tensor_size: int = 4096
    custom_domains: bool = False


@register_pass
class CommonSubexpressionElimination(Pass):
    """Merge nodes that compute the same thing from the same inputs (CSE).

    See the module docstring for what is never merged.
    """

    name = "cse"
    Options = CseOptions
    preserves = frozenset({"shapes", "topologically-sorted"})

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        merger = _Merger(self.options)
        merger.walk(model.graph, {})
        for function in model.functions.values():
            merger.walk(function.graph, {})
        merger.discarded.remove()
        return PassResult(merger.merged > 0, {"merged_nodes": merger.merged})


class _Merger:
    def __init__(self, options: CseOptions) -> None:
        self.options = options
        self.merged = 0
        self.discarded = Discarded()  # merged nodes, removed from their graphs at the end

    def walk(self, graph: ir.Graph, table: Table) -> None:
        for node in node_list(graph):
            subgraphs = node_subgraphs(node)
            for sub in subgraphs:
                self.walk(sub, ChainMap({}, table))
            key = None if subgraphs else self._key(node)
            if key is None:
                continue
            original = table.get(key)
            if original is None:
                table[key] = node
            elif can_replace(node.outputs, original.outputs):
                replace_values(node.outputs, original.outputs)
                self.discarded.add(node)
                self.merged += 1

    def _key(self, node: ir.Node) -> Hashable | None:
        """What makes two nodes interchangeable, or None for a node that must not be merged."""
        if not node.outputs or is_nondeterministic(node):
            return None
        if not is_default_domain(node) and node.domain != "ai.onnx.ml" and not self.options.custom_domains:
            return None
        attrs = []
        for name, attr in node.attributes.data.items():  # the plain dict: the UserDict iterates slowly
            value = self._attr_key(attr)
            if value is None:
                return None
            attrs.append((name, value))
        inputs = tuple(id(v) if v is not None else 0 for v in node.inputs)
        if node.op_type in COMMUTATIVE_OPS and is_default_domain(node):
            inputs = tuple(sorted(inputs))
        domain = "" if is_default_domain(node) else node.domain
        return (domain, node.op_type, node.overload, len(node.outputs), inputs, tuple(sorted(attrs)))

    def _attr_key(self, attr: ir.Attr) -> Hashable | None:
        if attr.is_ref():
            return ("ref", attr.ref_attr_name)
        kind, value = attr.type, attr.value
        if kind == ir.AttributeType.FLOAT:
            return (kind, float(value).hex())  # hex keeps -0.0 apart from 0.0
        if kind == ir.AttributeType.FLOATS:
            return (kind, tuple(float(v).hex() for v in value))
        if kind in (ir.AttributeType.INT, ir.AttributeType.STRING):
            return (kind, value)
        if kind in (ir.AttributeType.INTS, ir.AttributeType.STRINGS):
            return (kind, tuple(value))
        if kind == ir.AttributeType.TENSOR:
            if tensor_nbytes(value) > self.options.max_tensor_size:
                return None
            content = tuple(string_items(value)) if value.dtype == ir.DataType.STRING else value.tobytes()
            return (kind, value.dtype, tuple(value.shape.dims), content)
        if kind == ir.AttributeType.TYPE_PROTO:
            return (kind, str(value))
        return None  # graphs, lists of tensors, sparse tensors
