"""Read-only questions about a model: node counts, op histograms, sizes, graphs."""

from __future__ import annotations

import math
import weakref
from collections import Counter
from collections.abc import Iterator
from functools import partial
from itertools import chain
from operator import attrgetter, is_not

import numpy as np
import onnx_ir as ir

from onnxsmith.ir._fields import NODE_ATTRIBUTE_DICT, NODE_DOMAIN_OP, node_list
from onnxsmith.ir._gc import gc_paused

__all__ = ["Dim", "all_graphs", "all_nodes", "census", "count_nodes", "dims_of", "has_external_data", "header_dims",
           "initializer_bytes", "model_size", "name_ops", "nbytes", "node_subgraphs", "nodes_with_subgraphs",
           "op_histogram", "op_key", "tensor_bytes"]


_GRAPH = ir.AttributeType.GRAPH
_GRAPHS = ir.AttributeType.GRAPHS
_GRAPH_KINDS = frozenset({_GRAPH, _GRAPHS})
_ATTR_TYPE = attrgetter("type")
_CONST_VALUE = attrgetter("const_value")
_is_not_none = partial(is_not, None)


def _itemsizes() -> dict[int, float]:
    sizes = {}
    for dtype in ir.DataType:
        try:
            sizes[int(dtype)] = dtype.itemsize
        except (TypeError, ValueError):  # UNDEFINED and STRING have no fixed item size
            continue
    return sizes


#: Bytes per element by ``TensorProto.data_type`` (fractional for sub-byte types).
_ITEMSIZE_BY_CODE = _itemsizes()
#: The same by ``ir.DataType``.
_ITEMSIZE_BY_DTYPE = {ir.DataType(code): size for code, size in _ITEMSIZE_BY_CODE.items()}
#: ``nbytes`` of the tensors read from files, while they live.
_PROTO_TENSOR_BYTES: weakref.WeakKeyDictionary[ir.TensorProtoTensor, int] = weakref.WeakKeyDictionary()


def node_subgraphs(node: ir.Node) -> list[ir.Graph]:
    """The graphs held by the node's attributes (If branches, Loop and Scan bodies), in order."""
    found: list[ir.Graph] = []
    for attr in node.attributes.data.values():  # the plain dict: iterating the UserDict costs more
        kind = attr.type
        if (kind is _GRAPH or kind is _GRAPHS) and not attr.is_ref():
            if kind is _GRAPH:
                found.append(attr.value)
            else:
                found.extend(attr.value)
    return found


def all_graphs(model: ir.Model | ir.Graph | ir.Function) -> Iterator[ir.Graph]:
    """The main graph (or the function) and every subgraph (If/Loop/Scan bodies), depth first."""
    graph = model.graph if isinstance(model, ir.Model) else model
    yield graph
    for node in nodes_with_subgraphs(node_list(graph)):
        if node.graph is graph:  # not removed while an earlier subgraph was being visited
            for sub in node_subgraphs(node):
                yield from all_graphs(sub)


def nodes_with_subgraphs(nodes: list[ir.Node]) -> list[ir.Node]:
    """The nodes among ``nodes`` that hold a graph attribute, in order.

    Most graphs have none: that is decided from the set of all attribute types, read in bulk,
    without a Python step per node.
    """
    dicts = list(filter(None, map(NODE_ATTRIBUTE_DICT, nodes)))
    if not dicts or _GRAPH_KINDS.isdisjoint(map(_ATTR_TYPE, chain.from_iterable(map(dict.values, dicts)))):
        return []
    return [node for node in nodes if node_subgraphs(node)]


def all_nodes(model: ir.Model | ir.Graph | ir.Function) -> Iterator[ir.Node]:
    """Every node of the graph and its subgraphs (not of model-local functions), each before its subgraphs."""
    graph = model.graph if isinstance(model, ir.Model) else model
    for node in graph:
        yield node
        if node.attributes.data:
            for sub in node_subgraphs(node):
                yield from all_nodes(sub)


def count_nodes(model: ir.Model | ir.Graph) -> int:
    return sum(len(graph) for graph in all_graphs(model))


def op_key(node: ir.Node) -> str:
    """``OpType`` for the default domain, ``domain::OpType`` otherwise."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def op_histogram(model: ir.Model | ir.Graph) -> Counter[str]:
    return Counter(op_key(n) for n in all_nodes(model))


def census(model: ir.Model) -> tuple[int, int, Counter[str]]:
    """``(count_nodes, tensor_bytes, op_histogram)`` of the model in one walk over its graphs.

    The pass manager takes this after every pass that changed the model, so it reads each node
    once: op types are counted per ``(domain, op_type)`` pair and named by ``op_key`` once per pair.
    The collector is paused meanwhile: the pairs are freed on return, and collections triggered by
    allocating them would rescan the whole graph.
    """
    pairs: Counter[tuple[str, str]] = Counter()
    nodes = size = 0
    pending = [model.graph]
    with gc_paused():
        while pending:
            graph = pending.pop()
            members = node_list(graph)
            nodes += len(members)
            pairs.update(map(NODE_DOMAIN_OP, members))
            for node in nodes_with_subgraphs(members):
                pending.extend(node_subgraphs(node))
            size += initializer_bytes(graph)
    return nodes, size, name_ops(pairs)


def name_ops(pairs: Counter[tuple[str, str]]) -> Counter[str]:
    """An op histogram by ``op_key`` from counts per ``(domain, op_type)`` pair."""
    ops: Counter[str] = Counter()
    for (domain, op_type), count in pairs.items():
        ops[op_type if domain in ("", "ai.onnx") else f"{domain}::{op_type}"] += count
    return ops


def initializer_bytes(graph: ir.Graph) -> int:
    """Bytes of the graph's own initializers (not those of its subgraphs), from their headers."""
    tensors = map(_CONST_VALUE, graph.initializers.data.values())  # the plain dict: the UserDict iterates slowly
    return sum(map(nbytes, filter(_is_not_none, tensors)))


def _tensors(model: ir.Model) -> Iterator[ir.TensorProtocol]:
    for graph in all_graphs(model):
        for value in graph.initializers.data.values():
            if value.const_value is not None:
                yield value.const_value


def nbytes(tensor: ir.TensorProtocol) -> int:
    """``tensor.nbytes``, computed without building a Shape for tensors still in their proto.

    ``TensorProtoTensor.shape`` makes a new ``Shape`` on every access, which dominates summing
    the sizes of tens of thousands of initializers; the dims are read from the proto instead, once
    per tensor (a tensor read from a file never changes its header; the pass manager's census sums
    the same tensors after every pass). String tensors have no fixed item size: their size is the
    sum of their UTF-8 lengths.
    """
    if type(tensor) is ir.TensorProtoTensor:
        size = _PROTO_TENSOR_BYTES.get(tensor)
        if size is not None:
            return size
        raw = tensor.raw
        itemsize = _ITEMSIZE_BY_CODE.get(raw.data_type)
        if itemsize is not None:  # the common case, without building the tensor's DataType
            size = _PROTO_TENSOR_BYTES[tensor] = math.ceil(itemsize * math.prod(raw.dims))
            return size
    elif type(tensor) is ir.Tensor:
        array = tensor.raw
        # An array of the tensor's own shape and item size (not a packed or unpacked sub-byte
        # type) holds exactly the tensor's bytes; TensorBase.nbytes would build a Shape array.
        if type(array) is np.ndarray and array.dtype.itemsize == _ITEMSIZE_BY_DTYPE.get(tensor.dtype) \
                and array.shape == tensor.shape.dims:
            return array.nbytes
    if tensor.dtype == ir.DataType.STRING:
        return sum(len(s if isinstance(s, bytes) else str(s).encode()) for s in tensor.numpy().flat)
    if type(tensor) is ir.TensorProtoTensor:
        return math.ceil(tensor.dtype.itemsize * math.prod(tensor.raw.dims))
    return tensor.nbytes


#: A dimension as recorded in an ``ir.Shape``: a static size, a symbolic name or unknown (None).
Dim = int | str | None


def dims_of(value: ir.Value) -> list[Dim] | None:
    """The dimensions of ``value`` (int, symbolic name or None), or None when its rank is unknown."""
    if value.shape is None:
        return None
    return [d if isinstance(d, int) else d.value for d in value.shape.dims]


def header_dims(tensor: ir.TensorProtocol) -> tuple[int, ...]:
    """The tensor's dimensions; read from the proto for a tensor still in its proto (no ``Shape`` built)."""
    if type(tensor) is ir.TensorProtoTensor:
        return tuple(tensor.raw.dims)
    return tuple(tensor.shape.dims)


def tensor_bytes(model: ir.Model) -> int:
    """Bytes of all initializers (from their headers: external data is not read)."""
    return sum(nbytes(t) for t in _tensors(model))


def model_size(model: ir.Model) -> tuple[int, int]:
    """``(count_nodes(model), tensor_bytes(model))`` in one walk over the graphs."""
    nodes = size = 0
    for graph in all_graphs(model):
        nodes += len(graph)
        size += initializer_bytes(graph)
    return nodes, size


def has_external_data(model: ir.Model) -> bool:
    return any(isinstance(t, ir.ExternalTensor) for t in _tensors(model))
