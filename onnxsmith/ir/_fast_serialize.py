"""A faster ``ir.serde.serialize_model``: the main graph's nodes and value infos written as protobuf bytes.

onnx_ir's serializer sets every field of every ``NodeProto`` and ``ValueInfoProto`` through the
Python protobuf API, a dozen calls per node; on a graph of 30,000 nodes that is most of the time
``save`` takes. Here the main graph's nodes and their outputs' value infos are encoded directly
in the protobuf wire format, from pieces that repeat and are therefore encoded once each:

- a value name (``input``/``output`` of a node, ``name`` of a value info);
- an op type with its domain and overload;
- an attribute of a plain type (int, float, string and their lists) with a given name and value,
  as onnx_ir writes it into a scratch ``AttributeProto``;
- a tensor type with its shape (most values of a graph share one of a few), and each dimension.

The bytes of a run of nodes and value infos are merged into the ``GraphProto`` in one
``MergeFromString``, which appends to its repeated fields in order, so the result is the message
onnx_ir builds; the tests compare the serialized bytes with onnx_ir's on the onnx backend models,
random models and hand-made edge cases. Whatever the fast path does not cover is written by
onnx_ir in place (after merging what is pending, so the order is kept): a node with a doc string,
metadata, device configurations, a name that is not a string, a reference attribute or one of a
tensor, graph, sparse or type type; a value info of a value with metadata, a doc string, a
denotation or a type other than a tensor's; and everything outside the main graph's nodes and
value infos (inputs, initializer tensors, outputs, functions, subgraphs). A model with device
configurations, or with functions in an IR version that stores their value infos in the main
graph, is serialized by onnx_ir as a whole.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable

import onnx
import onnx_ir as ir

__all__ = ["GRAPH_INITIALIZER", "GRAPH_NODE", "GRAPH_VALUE_INFO", "MAX_TENSOR_BYTES", "Encoder", "Pending",
           "serialize_model", "tensor_bytes", "varint"]

#: ``value.meta`` key onnx_ir serializes as a graph's quantization annotation.
_QUANT_KEY = "quant_parameter_tensor_names"
#: Lowest IR version whose FunctionProto has value_info (below it onnx_ir writes them into the main graph).
_FUNCTION_VALUE_INFO_IR_VERSION = 10

# Wire tags (field number << 3 | length-delimited) of the fields written here.
GRAPH_NODE, GRAPH_VALUE_INFO = b"\x0a", b"\x6a"
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP_TYPE = b"\x0a", b"\x12", b"\x1a", b"\x22"
_NODE_ATTRIBUTE, _NODE_DOMAIN, _NODE_OVERLOAD = b"\x2a", b"\x3a", b"\x42"
_VALUE_INFO_NAME, _VALUE_INFO_TYPE = b"\x0a", b"\x12"
GRAPH_INITIALIZER = b"\x2a"
_TENSOR_DIM, _TENSOR_DATA_TYPE, _TENSOR_NAME, _TENSOR_RAW_DATA = b"\x08", b"\x10", b"\x42", b"\x4a"

_PLAIN_ATTRIBUTES = frozenset({ir.AttributeType.INT, ir.AttributeType.FLOAT, ir.AttributeType.STRING,
                               ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS})
_FLOAT_ATTRIBUTES = frozenset({ir.AttributeType.FLOAT, ir.AttributeType.FLOATS})
_SMALL_VARINTS = [bytes((i,)) for i in range(128)]
_EMPTY_STRING = b"\x00"  # length-prefixed ""
_UNSET = object()
#: Largest tensor ``tensor_bytes`` encodes.
MAX_TENSOR_BYTES = 1 << 16
#: Element types onnx_ir validates before copying a TensorProto (their packing has a canonical form).
_VALIDATED_TYPES = frozenset({ir.DataType.FLOAT6E2M3, ir.DataType.FLOAT6E3M2}) \
    if hasattr(ir.DataType, "FLOAT6E2M3") else frozenset()


def varint(n: int) -> bytes:
    """Protobuf varint; a negative number as its 64-bit two's complement (as int64 fields are written)."""
    if 0 <= n < 128:
        return _SMALL_VARINTS[n]
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _prefixed(text: str) -> bytes:
    """A string as a length-delimited payload: length, UTF-8 bytes."""
    encoded = text.encode("utf-8")  # AttributeError when not a str: the caller falls back
    size = len(encoded)
    return (_SMALL_VARINTS[size] if size < 128 else varint(size)) + encoded


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + varint(len(payload)) + payload


def tensor_bytes(tensor: ir.TensorProtocol, name: str) -> bytes | None:
    """The TensorProto onnx_ir writes for ``tensor``, named ``name``; None to leave it to onnx_ir.

    Encoded here: a tensor still in its proto (its bytes, with the name field appended, which a
    parser takes over an earlier one), and an in-memory ``ir.Tensor`` of a fixed-size element
    type; either without metadata and of at most ``MAX_TENSOR_BYTES`` (onnx_ir copies a larger one
    in place, once, where bytes would be copied several times).
    """
    kind = type(tensor)
    if kind is ir.TensorProtoTensor:
        raw = tensor.raw
        if tensor.metadata_props or raw.data_type in _VALIDATED_TYPES or raw.ByteSize() > MAX_TENSOR_BYTES:
            return None
        return raw.SerializeToString() + _TENSOR_NAME + _prefixed(name)
    if kind is not ir.Tensor or tensor.metadata_props or tensor.doc_string:
        return None
    dtype = tensor.dtype
    if dtype == ir.DataType.STRING:
        return None
    data = tensor.tobytes()  # what onnx_ir writes as raw_data; a large tensor's copy is dropped at once
    if len(data) > MAX_TENSOR_BYTES:
        return None
    dims = b"".join([_TENSOR_DIM + varint(dim) for dim in tensor.shape.numpy()])
    return dims + _TENSOR_DATA_TYPE + varint(dtype.value) + _TENSOR_NAME + _prefixed(name) + \
        _TENSOR_RAW_DATA + varint(len(data)) + data


class Encoder:
    """Encodes nodes and value infos as protobuf bytes, the pieces that repeat encoded once each.

    ``node`` and ``value_info`` return None for what they leave to onnx_ir. With ``slim`` a node
    is written with only what shape inference reads: op type, domain, overload, inputs, outputs
    and attributes (no name; a doc string or metadata does not make it fall back). One encoder
    serves one serialization: value names are cached by value.
    """

    def __init__(self, *, slim: bool = False) -> None:
        self._slim = slim
        self._names: dict[ir.Value, bytes] = {}
        self._heads: dict[tuple[str, str, str], bytes] = {}
        self._attributes: dict[Hashable, bytes] = {}
        self._types: dict[Hashable, bytes] = {}
        self._dims: dict[int | ir.SymbolicDim, bytes] = {}
        self._scratch_attribute = onnx.AttributeProto()

    def name(self, value: ir.Value) -> bytes:
        """The value's name as a length-delimited payload."""
        encoded = self._names.get(value)
        if encoded is None:
            encoded = self._names[value] = _prefixed(value.name)
        return encoded

    def node(self, node: ir.Node) -> bytes | None:
        """The NodeProto's bytes, or None to write it with onnx_ir."""
        name = node.name
        if not self._slim and (node.doc_string or node.metadata_props or getattr(node, "device_configurations", ())
                               or (name is not None and type(name) is not str)):
            return None
        try:
            key = (node.op_type, node.domain, node.overload)
            head = self._heads.get(key)
            if head is None:
                head = self._heads[key] = self._head(*key)
            parts = [head]
            names, named = self._names, self.name
            for value in node.inputs:
                parts.append(_NODE_INPUT)
                parts.append(_EMPTY_STRING if value is None else names.get(value) or named(value))
            outputs = node.outputs
            if outputs and not outputs[-1].name:  # trailing unnamed outputs are omitted, as onnx_ir does
                outputs = list(outputs)
                while outputs and not outputs[-1].name:
                    outputs.pop()
            for value in outputs:
                parts.append(_NODE_OUTPUT)
                parts.append(names.get(value) or named(value))
            if name and not self._slim:
                parts.append(_NODE_NAME)
                parts.append(_prefixed(name))
            attributes = node.attributes.data
            if attributes:
                for attr in attributes.values():
                    encoded = self._attribute(attr)
                    if encoded is None:
                        return None
                    parts.append(encoded)
        except (AttributeError, TypeError, ValueError):  # e.g. a name that is not a str: onnx_ir reports it
            return None
        return b"".join(parts)

    def _head(self, op_type: str, domain: str, overload: str) -> bytes:
        head = _NODE_OP_TYPE + _prefixed(op_type)
        if domain:
            head += _NODE_DOMAIN + _prefixed(domain)
        if overload:
            head += _NODE_OVERLOAD + _prefixed(overload)
        return head

    def _attribute(self, attr: ir.Attr) -> bytes | None:
        """The attribute field of a plain attribute, or None."""
        type_ = attr.type
        if type(attr) is not ir.Attr or type_ not in _PLAIN_ATTRIBUTES or attr.is_ref() or attr.doc_string:
            return None
        value = attr.value
        if type_ in _FLOAT_ATTRIBUTES:  # by bits: 0.0 == -0.0, but they are written differently
            value = struct.pack("<d", value) if type_ == ir.AttributeType.FLOAT else \
                struct.pack(f"<{len(value)}d", *value)
        elif type_ == ir.AttributeType.STRING and type(value) is not str:
            return None  # bytes: onnx_ir warns about it on each write
        key = (attr.name, type_, value)
        encoded = self._attributes.get(key)
        if encoded is None:
            scratch = self._scratch_attribute
            scratch.Clear()
            ir.serde.serialize_attribute_into(scratch, attr)
            encoded = self._attributes[key] = _field(_NODE_ATTRIBUTE, scratch.SerializeToString())
        return encoded

    def value_info(self, value: ir.Value, *, slim: bool = False) -> bytes | None:
        """The ValueInfoProto's bytes; empty when onnx_ir writes none, None to leave the value to onnx_ir.

        Encoded here: a value with a tensor type (and shape) and no metadata, doc string or
        denotation. With ``slim`` only the name and type are written (metadata and doc strings
        are left out, not left to onnx_ir).
        """
        type_ = value.type
        if not slim and (value.doc_string or value.metadata_props):
            return None
        if type_ is None:
            return b"" if value.shape is None else None
        if type(type_) is not ir.TensorType or type_.denotation:
            return None
        shape = value.shape
        try:
            if shape is None:
                key = (int(type_.dtype), None)
            else:
                denotations = getattr(shape, "_denotations", _UNSET)  # onnx_ir's list, else the accessor
                if denotations is _UNSET:
                    denotations = list(map(shape.get_denotation, range(len(shape))))
                if any(denotations):
                    return None
                key = (int(type_.dtype), shape.dims)
            field = self._types.get(key)
            if field is None:
                field = self._types[key] = self._type_field(*key)
            name = value.name
            if not name:
                return b""
            return _VALUE_INFO_NAME + (self._names.get(value) or self.name(value)) + field
        except (AttributeError, TypeError, ValueError):  # e.g. a name that is not a str: onnx_ir reports it
            return None

    def _type_field(self, dtype: int, dims: tuple[int | ir.SymbolicDim, ...] | None) -> bytes:
        """The ValueInfoProto's ``type`` field of a tensor type, as onnx_ir writes it."""
        tensor = b"\x08" + varint(dtype)  # elem_type
        if dims is not None:
            tensor += _field(b"\x12", b"".join(map(self._dim, dims)))  # shape: written even when empty
        return _field(_VALUE_INFO_TYPE, _field(b"\x0a", tensor))  # TypeProto.tensor_type

    def _dim(self, dim: int | ir.SymbolicDim) -> bytes:
        """A TensorShapeProto.dim field: dim_value, dim_param or neither (an unknown dimension)."""
        encoded = self._dims.get(dim)
        if encoded is None:
            if isinstance(dim, int):
                payload = b"\x08" + varint(dim)
            elif dim.value is None:
                payload = b""
            else:
                payload = b"\x12" + _prefixed(str(dim.value))
            encoded = self._dims[dim] = _field(b"\x0a", payload)
        return encoded


def serialize_model(model: ir.Model) -> onnx.ModelProto:
    """``ir.serde.serialize_model(model)``, the same message, faster on large graphs."""
    if getattr(model, "device_configurations", None) or (
            model.functions and model.ir_version < _FUNCTION_VALUE_INFO_IR_VERSION):
        return ir.serde.serialize_model(model)
    proto = onnx.ModelProto(ir_version=model.ir_version)
    for field in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        if getattr(model, field):
            setattr(proto, field, getattr(model, field))
    for domain, version in model.opset_imports.items():
        proto.opset_import.add(domain=domain, version=version)
    _string_map_into(proto.metadata_props, model.metadata_props)
    _serialize_graph_into(proto.graph, model.graph, model.ir_version)
    for function in model.functions.values():
        ir.serde.serialize_function_into(proto.functions.add(), function, create_value_info=True,
                                         model_ir_version=model.ir_version)
    return proto


def _string_map_into(entries, mapping: dict[str, str]) -> None:
    for key in sorted(mapping):
        entries.add(key=key, value=mapping[key])


def _annotate(proto: onnx.GraphProto, value: ir.Value) -> None:
    """The value's quantization annotation, as onnx_ir writes it."""
    if getattr(value, "_metadata", _UNSET) is None:
        return  # onnx_ir makes a value's ``meta`` store on first use: none made, nothing in it
    names = value.meta.get(_QUANT_KEY)
    if names:
        annotation = proto.quantization_annotation.add(tensor_name=value.name)
        _string_map_into(annotation.quant_parameter_tensor_names, names)


def _wants_value_info(value: ir.Value) -> bool:
    """onnx_ir's test for writing a value info of a value."""
    if value.shape is None and value.type is None and not value.metadata_props and not value.doc_string:
        return False
    return bool(value.name)


class Pending:
    """Encoded nodes and value infos not yet merged into the graph proto, in order."""

    def __init__(self, proto: onnx.GraphProto) -> None:
        self._proto = proto
        self.parts: list[bytes] = []  # each a field: tag, length, body

    def flush(self) -> onnx.GraphProto:
        """Merges what is pending; returns the proto (to write the next item into with onnx_ir)."""
        if self.parts:
            self._proto.MergeFromString(b"".join(self.parts))
            self.parts.clear()
        return self._proto


def _serialize_graph_into(proto: onnx.GraphProto, graph: ir.Graph, ir_version: int) -> None:
    """``ir.serde.serialize_graph_into`` with nodes and value infos encoded by an ``Encoder``."""
    serde = ir.serde
    if graph.name:
        proto.name = graph.name
    if graph.doc_string:
        proto.doc_string = graph.doc_string
    initializers = graph.initializers
    for value in graph.inputs:
        serde.serialize_value_into(proto.input.add(), value)
        if value.name not in initializers:
            _annotate(proto, value)
    input_names = {value.name for value in graph.inputs}
    encoder = Encoder()
    pending = Pending(proto)
    for value in initializers.values():
        _annotate(proto, value)
        if value.name not in input_names:
            _value_info(encoder, pending, value)
        tensor = value.const_value
        if tensor is None:
            continue  # onnx_ir logs and skips it
        tensor.name = value.name
        try:
            encoded = tensor_bytes(tensor, value.name)
        except (AttributeError, TypeError, ValueError):  # e.g. a name that is not a str: onnx_ir reports it
            encoded = None
        if encoded is None:
            serde.serialize_tensor_into(pending.flush().initializer.add(), tensor)
        else:
            pending.parts.append(GRAPH_INITIALIZER + varint(len(encoded)) + encoded)
    parts = pending.parts
    for node in graph:
        encoded = encoder.node(node)
        if encoded is None:
            serde.serialize_node_into(pending.flush().node.add(), node, model_ir_version=ir_version)
        else:
            parts.append(GRAPH_NODE + varint(len(encoded)) + encoded)
        for value in node.outputs:
            if value.is_graph_output():
                continue
            _annotate(proto, value)
            _value_info(encoder, pending, value)
    pending.flush()
    for value in graph.outputs:
        serde.serialize_value_into(proto.output.add(), value)
        _annotate(proto, value)
    _string_map_into(proto.metadata_props, graph.metadata_props)


def _value_info(encoder: Encoder, pending: Pending, value: ir.Value) -> None:
    """Appends the value's value info, if onnx_ir would write one."""
    encoded = encoder.value_info(value)
    if encoded:
        pending.parts.append(GRAPH_VALUE_INFO + varint(len(encoded)) + encoded)
    elif encoded is None and _wants_value_info(value):
        ir.serde.serialize_value_into(pending.flush().value_info.add(), value)
