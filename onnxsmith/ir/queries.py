"""Read-only questions about a model: node counts, op histograms, sizes, graphs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import onnx_ir as ir

__all__ = ["all_graphs", "all_nodes", "count_nodes", "op_histogram", "tensor_bytes", "has_external_data", "op_key"]


def all_graphs(model: ir.Model | ir.Graph) -> Iterator[ir.Graph]:
    """The main graph and every subgraph (If/Loop/Scan bodies), depth first."""
    graph = model.graph if isinstance(model, ir.Model) else model
    yield graph
    for node in ir.traversal.RecursiveGraphIterator(graph):
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                yield attr.value
            elif attr.type == ir.AttributeType.GRAPHS:
                yield from attr.value


def all_nodes(model: ir.Model | ir.Graph) -> Iterator[ir.Node]:
    """Every node of the graph and its subgraphs (not of model-local functions)."""
    graph = model.graph if isinstance(model, ir.Model) else model
    return iter(ir.traversal.RecursiveGraphIterator(graph))


def count_nodes(model: ir.Model | ir.Graph) -> int:
    return sum(1 for _ in all_nodes(model))


def op_key(node: ir.Node) -> str:
    """``OpType`` for the default domain, ``domain::OpType`` otherwise."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def op_histogram(model: ir.Model | ir.Graph) -> Counter[str]:
    return Counter(op_key(n) for n in all_nodes(model))


def _tensors(model: ir.Model) -> Iterator[ir.TensorProtocol]:
    for graph in all_graphs(model):
        for value in graph.initializers.values():
            if value.const_value is not None:
                yield value.const_value


def tensor_bytes(model: ir.Model) -> int:
    """Bytes of all initializers (from their headers: external data is not read)."""
    return sum(t.nbytes for t in _tensors(model))


def has_external_data(model: ir.Model) -> bool:
    return any(isinstance(t, ir.ExternalTensor) for t in _tensors(model))
