"""Lossless load/save through ``onnxsmith.ir``: what it means and how it is checked.

A round trip (write the case's proto, ``onnxsmith.ir.load`` it, ``onnxsmith.ir.save`` it, read the
result with ``onnx.load``) is lossless when the result equals the original field by field: graph,
nodes, attributes, subgraphs, functions, initializers and their data, ``value_info`` (in order),
doc strings, ``metadata_props``, opset imports and model header. Only representation differences
that carry no meaning are allowed:

- an unset scalar field equals the same field set to its default (protobuf presence, e.g. an
  explicit ``domain: ""``), and an unset message field equals an empty one;
- NaN equals NaN in float fields;
- a ``value_info`` entry for a graph's own input or output is redundant when it repeats that
  declaration's type, and is folded into the declaration when the declaration has no type: the
  IR keeps one type per value, so the type moves, it is not lost.

The backend cases rarely carry doc strings, metadata or intermediate ``value_info``, so each case
is also round-tripped *annotated*: with doc strings and metadata on the model, graph, every node
and every graph input/output, and with the ``value_info`` ONNX shape inference gives.
"""

from __future__ import annotations

import math
import os

import onnx
import onnx_ir as ir
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

import onnxsmith.ir

__all__ = ["annotate", "canonical", "first_difference", "round_trip"]


def _same_scalar(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _repeated(field: FieldDescriptor) -> bool:
    # ``is_repeated`` replaced ``label`` in protobuf 6; support both.
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return field.label == FieldDescriptor.LABEL_REPEATED


def first_difference(a: Message, b: Message, path: str = "model") -> str | None:
    """The path of the first field where ``a`` and ``b`` differ (in the sense above), or None."""
    for field in a.DESCRIPTOR.fields:
        where = f"{path}.{field.name}"
        x, y = getattr(a, field.name), getattr(b, field.name)
        if _repeated(field):
            if len(x) != len(y):
                return f"{where} has {len(y)} entries instead of {len(x)}"
            for i, (u, v) in enumerate(zip(x, y)):
                found = (first_difference(u, v, f"{where}[{i}]") if field.type == FieldDescriptor.TYPE_MESSAGE
                         else None if _same_scalar(u, v) else f"{where}[{i}]: {v!r:.60} instead of {u!r:.60}")
                if found:
                    return found
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if not (a.HasField(field.name) or b.HasField(field.name)):
                continue  # also stops the walk down recursive types (TypeProto in TypeProto)
            found = first_difference(x, y, where)
            if found:
                return found
        elif not _same_scalar(x, y):
            return f"{where}: {y!r:.60} instead of {x!r:.60}"
    return None


def _graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def canonical(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without redundant value_info entries for graph inputs/outputs (see module docstring)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    for graph in _graphs(result.graph):
        declared = {v.name: v for v in (*graph.input, *graph.output)}
        kept = []
        for entry in graph.value_info:
            target = declared.get(entry.name)
            if target is None or (target.HasField("type") and target.type != entry.type):
                kept.append(entry)
            elif not target.HasField("type"):
                target.type.CopyFrom(entry.type)
        if len(kept) != len(graph.value_info):
            del graph.value_info[:]
            graph.value_info.extend(kept)
    return result


def annotate(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with doc strings, metadata and inferred value_info everywhere they can go."""
    try:
        annotated = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        annotated = onnx.ModelProto()
        annotated.CopyFrom(model)
    annotated.doc_string = "model doc"
    annotated.metadata_props.add(key="onnxsmith-conformance", value="annotated")
    graph = annotated.graph
    graph.doc_string = "graph doc"
    for i, node in enumerate(graph.node):
        node.doc_string = f"node {i} doc"
        if annotated.ir_version >= 10:
            node.metadata_props.add(key="index", value=str(i))
    for value in (*graph.input, *graph.output):
        value.doc_string = f"{value.name} doc"
    return annotated


def round_trip(model: onnx.ModelProto, folder: str) -> tuple[str | None, ir.Model]:
    """Saves ``model``, loads and saves it with onnxsmith.ir; returns (first difference, loaded model)."""
    source, target = os.path.join(folder, "case.onnx"), os.path.join(folder, "saved.onnx")
    onnx.save(model, source)
    loaded = onnxsmith.ir.load(source)
    onnxsmith.ir.save(loaded, target)
    return first_difference(canonical(model), onnx.load(target)), loaded
