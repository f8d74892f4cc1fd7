"""Carrying the parts of an ONNX file that onnx_ir does not represent across load and save.

``onnx_ir`` (1.1) drops or alters a few things of a ModelProto; ``deserialize`` and
``finish_proto`` put them back so that load followed by save reproduces the input:

- Sparse initializers (``GraphProto.sparse_initializer``) are dropped by onnx_ir. On load each
  becomes an ordinary initializer whose tensor is a lazy densification of the sparse one, so the
  verifier, the passes and onnxruntime see a normal constant and nothing is allocated unless a
  pass reads it. On save, an initializer that still holds that very tensor object is written back
  as the original sparse tensor (under the value's current name, with external parts read
  inline, since their location belongs to the input's folder); one a pass replaced is written
  dense like any other.
- ``ModelProto.training_info`` is dropped by onnx_ir. It is kept verbatim in ``model.meta`` and
  written back; passes do not see or update it.
- A tensor's ``metadata_props`` are written twice by onnx_ir when the tensor came from a file;
  ``finish_proto`` keeps one entry per key (the last, i.e. the current value).
- onnx_ir adds a value_info for every initializer that is not a graph input; ``finish_proto``
  removes those that only repeat the initializer's own element type and shape.

What is *not* restored: a value_info naming a value that no node, input or initializer defines
(it describes nothing). ``model.clone()`` does not copy ``meta``, so a clone is saved with its
sparse initializers dense and without training info.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from onnxsmith.errors import ModelInputError
from onnxsmith.ir._fast_deserialize import deserialize_model
from onnxsmith.ir._validate import iter_tensors, quoted
from onnxsmith.ir.queries import all_graphs

__all__ = [
    "SPARSE_META_KEY",
    "SparseSource",
    "TRAINING_INFO_META_KEY",
    "deserialize",
    "finish_proto",
    "model_graphs",
    "sparse_detached",
]

#: ``value.meta`` key: the ``SparseSource`` of an initializer read as sparse.
SPARSE_META_KEY = "onnxsmith.sparse_initializer"
#: ``model.meta`` key: the model's ``TrainingInfoProto`` list, kept verbatim.
TRAINING_INFO_META_KEY = "onnxsmith.training_info"


@dataclass(frozen=True)
class SparseSource:
    """A sparse initializer as read from a file, and the lazy dense tensor the IR holds for it."""

    proto: onnx.SparseTensorProto
    base_dir: Path
    tensor: ir.LazyTensor = field(init=False)

    def __post_init__(self) -> None:
        dtype = ir.DataType(self.proto.values.data_type)
        tensor = ir.LazyTensor(self.dense, dtype=dtype, shape=ir.Shape(self.proto.dims),
                               name=self.proto.values.name, cache=True)
        object.__setattr__(self, "tensor", tensor)

    def self_contained(self, name: str) -> onnx.SparseTensorProto:
        """The original under ``name``, with any external data of its parts read inline."""
        sparse = _copy(self.proto)
        sparse.values.name = name
        for part in (sparse.values, sparse.indices):
            if part.data_location == onnx.TensorProto.EXTERNAL:
                onnx.external_data_helper.load_external_data_for_tensor(part, str(self.base_dir))
                part.data_location = onnx.TensorProto.DEFAULT
                del part.external_data[:]
        return sparse

    def dense(self) -> ir.Tensor:
        """The dense tensor: zeros except at the stored indices (flat, or one row per value)."""
        name = self.proto.values.name
        sparse = self.self_contained(name)
        values = onnx.numpy_helper.to_array(sparse.values)
        indices = onnx.numpy_helper.to_array(sparse.indices).astype(np.int64)
        shape = tuple(sparse.dims)
        dense = np.zeros(math.prod(shape), dtype=values.dtype)
        try:
            flat = indices if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), shape)
            dense[flat] = values
        except (IndexError, ValueError) as e:
            raise ModelInputError(f"sparse initializer {quoted(name)} has indices outside its shape {list(shape)}",
                                  "the file is corrupt") from e
        return ir.Tensor(dense.reshape(shape), dtype=self.tensor.dtype, name=name)


#: Sparse initializers taken out of each graph for serialization, by ``id(graph)``.
Detached = dict[int, list[tuple[ir.Value, SparseSource]]]


def deserialize(proto: onnx.ModelProto, base_dir: Path, *, sparse: bool = True) -> ir.Model:
    """``ir.serde.deserialize_model`` that keeps sparse initializers and training info.

    Args:
        proto: A validated ModelProto; it is modified (placeholders for sparse initializers).
        base_dir: Folder of the model file, for sparse tensors stored as external data.
        sparse: False when the caller knows no graph has sparse initializers (spares a walk).
    """
    training = [onnx.TrainingInfoProto.FromString(t.SerializeToString()) for t in proto.training_info]
    proto.ClearField("training_info")
    has_sparse = False
    for graph_proto in _graph_protos(proto) if sparse else ():
        for sparse in graph_proto.sparse_initializer:
            has_sparse = True
            placeholder = graph_proto.initializer.add()
            placeholder.name = sparse.values.name
            placeholder.data_type = sparse.values.data_type
            placeholder.dims.extend(sparse.dims)
    model = deserialize_model(proto)
    for graph, graph_proto in _paired_graphs(model, proto) if has_sparse else ():
        for sparse in graph_proto.sparse_initializer:
            value = graph.initializers[sparse.values.name]
            source = SparseSource(_copy(sparse), base_dir)  # a view would keep the whole ModelProto alive
            value.const_value = source.tensor
            value.meta[SPARSE_META_KEY] = source
    if training:
        model.meta[TRAINING_INFO_META_KEY] = training
    return model


def _copy(sparse: onnx.SparseTensorProto) -> onnx.SparseTensorProto:
    copy = onnx.SparseTensorProto()
    copy.CopyFrom(sparse)
    return copy


@contextlib.contextmanager
def sparse_detached(model: ir.Model, graphs: Iterable[ir.Graph] | None = None) -> Iterator[Detached]:
    """Takes unchanged sparse initializers out of the model for the duration of the block.

    Inside the block the model serializes (and writes external data) without them; they are
    put back afterwards, whatever happens. Yields what was taken out, for ``finish_proto``.
    ``graphs`` are the model's graphs (``model_graphs``) when the caller has them.
    """
    detached: Detached = {}
    taken: list[tuple[ir.Graph, ir.Value]] = []
    for graph in model_graphs(model) if graphs is None else graphs:
        for name, value in list(graph.initializers.data.items()):
            if not isinstance(value.const_value, ir.LazyTensor):
                continue  # a sparse initializer holds its SparseSource's lazy tensor
            source = value.meta.get(SPARSE_META_KEY)
            if source is not None and source.tensor is value.const_value:
                graph.initializers.pop(name)
                detached.setdefault(id(graph), []).append((value, source))
                taken.append((graph, value))
    try:
        yield detached
    finally:
        for graph, value in taken:
            graph.register_initializer(value)


def finish_proto(proto: onnx.ModelProto, model: ir.Model, detached: Detached) -> None:
    """Completes a ModelProto serialized by onnx_ir from ``model`` (see the module docstring)."""
    if detached:
        for graph, graph_proto in _paired_graphs(model, proto):
            for value, source in detached.get(id(graph), ()):
                graph_proto.sparse_initializer.append(source.self_contained(value.name or source.proto.values.name))
    for graph_proto in _graph_protos(proto):
        _drop_redundant_value_info(graph_proto)
    proto.training_info.extend(model.meta.get(TRAINING_INFO_META_KEY, ()))
    for _, tensor in iter_tensors(proto):
        _dedupe_metadata(tensor)


def _dedupe_metadata(tensor: onnx.TensorProto) -> None:
    entries = {entry.key: entry.value for entry in tensor.metadata_props}
    if len(entries) == len(tensor.metadata_props):
        return
    del tensor.metadata_props[:]
    for key, value in entries.items():
        tensor.metadata_props.add(key=key, value=value)


def _drop_redundant_value_info(graph_proto: onnx.GraphProto) -> None:
    """Removes the value_info entries equal to ``make_tensor_value_info`` of an initializer's own header.

    onnx_ir writes those first, so they usually form a leading block, deleted in one step.
    """
    initializers = {t.name: t for t in graph_proto.initializer}
    if not initializers:
        return
    header_types: dict[tuple[int, tuple[int, ...]], bytes] = {}
    redundant = [i for i, info in enumerate(graph_proto.value_info)
                 if info.name in initializers and _repeats_header(info, initializers[info.name], header_types)]
    if not redundant:
        return
    if redundant[-1] == len(redundant) - 1:
        del graph_proto.value_info[:len(redundant)]
        return
    dropped = set(redundant)
    kept = [info for i, info in enumerate(graph_proto.value_info) if i not in dropped]
    del graph_proto.value_info[:]
    graph_proto.value_info.extend(kept)


def _repeats_header(info: onnx.ValueInfoProto, tensor: onnx.TensorProto,
                    header_types: dict[tuple[int, tuple[int, ...]], bytes]) -> bool:
    """``info == make_tensor_value_info(info.name, tensor.data_type, tensor.dims)``, types compared serialized."""
    if info.HasField("doc_string") or len(info.metadata_props):
        return False
    key = (tensor.data_type, tuple(tensor.dims))
    expected = header_types.get(key)
    if expected is None:
        expected = header_types[key] = onnx.helper.make_tensor_value_info("", *key).type.SerializeToString()
    return info.type.SerializeToString() == expected


def model_graphs(model: ir.Model) -> Iterator[ir.Graph]:
    """The main graph, its subgraphs and those of model-local functions (each once, outer before inner)."""
    seen: dict[ir.Graph, None] = dict.fromkeys(all_graphs(model.graph))
    for function in model.functions.values():
        seen.update(dict.fromkeys(graph for graph in all_graphs(function) if graph is not function))
    yield from seen


def _graph_protos(proto: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    """The main graph, its subgraphs and those of model-local functions, depth first."""
    yield from _graph_and_subgraphs(proto.graph)
    for function in proto.functions:
        yield from _subgraphs(function.node)


def _graph_and_subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    yield from _subgraphs(graph.node)


def _subgraphs(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.GraphProto]:
    for node in nodes:
        if not node.attribute:
            continue
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graph_and_subgraphs(attr.g)
            for sub in attr.graphs:
                yield from _graph_and_subgraphs(sub)


def _paired_graphs(model: ir.Model, proto: onnx.ModelProto) -> Iterator[tuple[ir.Graph, onnx.GraphProto]]:
    """Pairs each IR graph with the GraphProto it was read from or serialized to.

    onnx_ir keeps node order and attribute names in both directions, so a parallel walk suffices.
    """
    yield from _paired_graph(model.graph, proto.graph)
    for function, function_proto in zip(model.functions.values(), proto.functions, strict=True):
        yield from _paired_subgraphs(function, function_proto.node)


def _paired_graph(graph: ir.Graph, graph_proto: onnx.GraphProto) -> Iterator[tuple[ir.Graph, onnx.GraphProto]]:
    yield graph, graph_proto
    yield from _paired_subgraphs(graph, graph_proto.node)


def _paired_subgraphs(nodes: Iterable[ir.Node], node_protos: Iterable[onnx.NodeProto],
                      ) -> Iterator[tuple[ir.Graph, onnx.GraphProto]]:
    for node, node_proto in zip(nodes, node_protos, strict=True):
        for attr_proto in node_proto.attribute:
            attr = node.attributes.get(attr_proto.name)
            if attr is None or attr.is_ref():
                continue
            if attr.type == ir.AttributeType.GRAPH:
                yield from _paired_graph(attr.value, attr_proto.g)
            elif attr.type == ir.AttributeType.GRAPHS:
                for sub, sub_proto in zip(attr.value, attr_proto.graphs, strict=True):
                    yield from _paired_graph(sub, sub_proto)
