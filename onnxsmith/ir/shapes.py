"""Shape and type inference on the IR through ONNX's shape inference.

Inference runs on a proto copy of the model in which initializers larger than 1 KiB are declared
as typed graph inputs instead of carrying data, so weights are never read or copied to infer
shapes. The inferred types are then written back value by value (main graph and subgraphs,
matched by name), without deserializing the inferred model: that keeps inference linear and
cheap on graphs with hundreds of thousands of nodes.

The copy holds only what inference reads: per node its op, domain, overload, input and output
names and attributes (no names, doc strings or metadata), and per typed value its name and type.
The main graph's nodes, value infos and small initializers are encoded as protobuf bytes by
``_fast_serialize.Encoder`` (names, op types, plain attributes and types encoded once each), so
it is written at a fraction of the cost of a full serialization; what the encoder leaves out,
subgraphs and model-local functions are serialized by onnx_ir (a value's ``TypeProto`` once per
distinct type). Inferred tensor types are read back keyed by their serialized bytes, and shapes
are built with ``_fast_shape.new_shape``, fresh per value.
"""

from __future__ import annotations

import logging

import onnx
import onnx_ir as ir

from onnxsmith.errors import first_line
from onnxsmith.ir._fast_serialize import (GRAPH_INITIALIZER, GRAPH_NODE, GRAPH_VALUE_INFO, Encoder, Pending,
                                          tensor_bytes, varint)
from onnxsmith.ir._fast_shape import new_shape
from onnxsmith.ir.queries import nbytes

__all__ = ["infer_shapes"]

log = logging.getLogger(__name__)

#: Initializers larger than this are given to ONNX shape inference as typed inputs without data.
_DATA_LIMIT_BYTES = 1024

_TypeKey = tuple[ir.DataType, tuple | None]
_UNSEEN = object()


def infer_shapes(model: ir.Model, *, strict: bool = False) -> bool:
    """Infers types and shapes of all values in place; returns True if anything changed.

    Args:
        model: The model to annotate.
        strict: Raise on inference errors instead of keeping what could be inferred.
    """
    proto = _inference_proto(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=strict, strict_mode=strict, data_prop=True)
    except Exception as e:  # onnx raises InferenceError, ValidationError or RuntimeError
        if strict:
            raise
        log.warning("shape inference failed, model left unchanged: %s", first_line(e))
        return False
    return _apply(model.graph, inferred.graph, {})


def _inference_proto(model: ir.Model) -> onnx.ModelProto:
    """The model as a proto for inference, with large initializers turned into data-free graph inputs."""
    graph = model.graph
    proto = onnx.ModelProto(ir_version=model.ir_version)
    for domain, version in graph.opset_imports.items():
        proto.opset_import.add(domain=domain, version=version)
    for function in model.functions.values():
        ir.serde.serialize_function_into(proto.functions.add(), function)
    into = proto.graph
    if graph.name:
        into.name = graph.name
    inputs, small = list(graph.inputs), []
    input_ids = {id(v) for v in inputs}
    for value in graph.initializers.data.values():
        tensor = value.const_value
        if tensor is not None and _nbytes(tensor) <= _DATA_LIMIT_BYTES:
            small.append(value)
        elif id(value) not in input_ids:
            inputs.append(value)
    types = _TypeProtos()
    for value in inputs:
        types.write(into.input.add(), value)
    encoder = Encoder(slim=True)
    pending = Pending(into)
    parts = pending.parts
    for value in small:
        if value.type is not None or value.shape is not None:
            _write_value_info(value, encoder, types, pending)
        encoded = tensor_bytes(value.const_value, value.name) if isinstance(value.name, str) else None
        if encoded is None:
            tensor_proto = pending.flush().initializer.add()
            ir.serde.serialize_tensor_into(tensor_proto, value.const_value)
            tensor_proto.name = value.name
        else:
            parts.append(GRAPH_INITIALIZER + varint(len(encoded)) + encoded)
    for node in graph:
        encoded = encoder.node(node)
        if encoded is None:
            _write_node(pending.flush().node.add(), node)
        else:
            parts.append(GRAPH_NODE + varint(len(encoded)) + encoded)
        for out in node.outputs:
            if out.name and (out.type is not None or out.shape is not None) and not out.is_graph_output():
                _write_value_info(out, encoder, types, pending)
    pending.flush()
    for value in graph.outputs:
        types.write(into.output.add(), value)
    return proto


def _write_value_info(value: ir.Value, encoder: Encoder, types: _TypeProtos, pending: Pending) -> None:
    """Appends the value's name and type to the graph's value infos (encoded, or written after what is pending)."""
    encoded = encoder.value_info(value, slim=True)
    if not encoded:  # None, or empty for a value without a name: written as it is
        types.write(pending.flush().value_info.add(), value)
    else:
        pending.parts.append(GRAPH_VALUE_INFO + varint(len(encoded)) + encoded)


def _write_node(proto: onnx.NodeProto, node: ir.Node) -> None:
    """What inference reads of a node: op, domain, overload, value names and attributes."""
    proto.op_type = node.op_type
    if node.domain:
        proto.domain = node.domain
    if node.overload:
        proto.overload = node.overload
    proto.input.extend(["" if v is None else v.name for v in node.inputs])
    outputs = [v.name or "" for v in node.outputs]
    while outputs and not outputs[-1]:  # trailing unnamed outputs are omitted, as onnx_ir does
        outputs.pop()
    proto.output.extend(outputs)
    for attr in node.attributes.data.values():
        if attr.is_ref():
            ir.serde.serialize_reference_attribute_into(proto.attribute.add(), attr)
        else:
            ir.serde.serialize_attribute_into(proto.attribute.add(), attr)


class _TypeProtos:
    """Writes value infos, serializing each distinct (type, shape) once."""

    def __init__(self) -> None:
        self._cache: dict[tuple, bytes] = {}

    def write(self, proto: onnx.ValueInfoProto, value: ir.Value) -> None:
        proto.name = value.name
        shape = value.shape
        key = (value.type, None if shape is None else (tuple(shape.dims),
                                                       tuple(shape.get_denotation(i) for i in range(len(shape)))))
        serialized = self._cache.get(key)
        if serialized is None:
            full = onnx.ValueInfoProto()
            ir.serde.serialize_value_into(full, value)
            serialized = self._cache[key] = full.type.SerializeToString()
        proto.type.MergeFromString(serialized)


def _nbytes(tensor: ir.TensorProtocol) -> int:
    try:
        return nbytes(tensor)
    except TypeError:  # string tensors have no fixed item size
        return _DATA_LIMIT_BYTES + 1


def _apply(graph: ir.Graph, proto: onnx.GraphProto, cache: dict[bytes, object]) -> bool:
    """Writes the inferred types of ``proto`` (the inferred copy of ``graph``) back into ``graph``.

    Each value info is read from its serialized bytes: the name (field 1, written first) is looked
    up as UTF-8 bytes, and what follows it (the type) keys ``cache`` (to ``_tensor_key`` of the
    type, or ``_UNTYPED``), so a value info costs one protobuf call; one whose bytes do not start
    with a short name is read field by field.
    """
    by_name: dict[bytes, ir.Value] = {}
    with_subgraphs: list[tuple[int, ir.Node]] = []
    for index, node in enumerate(graph):
        for out in node.outputs:
            if out.name:
                by_name[out.name.encode()] = out
        attributes = node.attributes.data
        if attributes and any(attr.type in _GRAPH_TYPES for attr in attributes.values()):
            with_subgraphs.append((index, node))
    for value in graph.outputs:
        if value.name:
            by_name[value.name.encode()] = value
    changed = False
    for info in (*proto.value_info, *proto.output):
        data = info.SerializeToString()
        size = data[1] if len(data) > 1 and data[0] == 0x0A else 128  # the name's length, if one byte
        if size < 128:
            value, rest = by_name.get(data[2:2 + size]), data[2 + size:]
        else:
            value, rest = by_name.get(info.name.encode()), None
        if value is None:
            continue
        key = _UNSEEN if rest is None else cache.get(rest, _UNSEEN)
        if key is _UNSEEN:
            key = _tensor_key(info.type) if info.HasField("type") else _UNTYPED
            if rest is not None:
                cache[rest] = key
        if key is not _UNTYPED:
            changed |= _set_type(value, key, info.type)
    for index, node in with_subgraphs:
        changed |= _apply_subgraphs(node, proto.node[index], cache)
    return changed


_GRAPH_TYPES = frozenset({ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS})
#: ``cache`` entry of a value info without a type.
_UNTYPED = object()


def _apply_subgraphs(node: ir.Node, node_proto: onnx.NodeProto, cache: dict[bytes, object]) -> bool:
    changed = False
    for attr in node_proto.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            changed |= _apply(node.attributes[attr.name].as_graph(), attr.g, cache)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for sub, sub_proto in zip(node.attributes[attr.name].as_graphs(), attr.graphs):
                changed |= _apply(sub, sub_proto, cache)
    return changed


def _tensor_key(type_proto: onnx.TypeProto) -> _TypeKey | None:
    """(dtype, dims) of a tensor type; None for other types (sequences, optionals...)."""
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.elem_type:
        return None
    shape = ir.serde.deserialize_type_proto_for_shape(type_proto)
    return ir.DataType(type_proto.tensor_type.elem_type), None if shape is None else tuple(shape.dims)


def _set_type(value: ir.Value, key: _TypeKey | None, type_proto: onnx.TypeProto) -> bool:
    """Refines the value's type and shape with inferred ones; fresh objects per value (they are mutable).

    ``key`` is ``_tensor_key(type_proto)``. For a tensor type the comparisons are those of
    ``TensorType`` (same class and dtype) and ``Shape`` equality (same dims), made without
    building the new objects unless they differ.
    """
    if key is None:
        return _set_any_type(value, type_proto)
    dtype, dims = key
    changed = False
    current = value.type
    if type(current) is not ir.TensorType or current.dtype != dtype:
        value.type = ir.TensorType(dtype)
        changed = True
    if dims is not None:
        shape = value.shape
        if shape is None or shape.dims != dims:
            value.shape = new_shape(dims)
            changed = True
    return changed


def _set_any_type(value: ir.Value, type_proto: onnx.TypeProto) -> bool:
    changed = False
    new_type = ir.serde.deserialize_type_proto_for_type(type_proto)
    new_shape = ir.serde.deserialize_type_proto_for_shape(type_proto)
    if new_type is not None and value.type != new_type:
        value.type = new_type
        changed = True
    if new_shape is not None and value.shape != new_shape:
        value.shape = new_shape
        changed = True
    return changed
