"""Reading a ModelProto into onnx_ir: a lean path for the common main graph.

``ir.serde.deserialize_model`` builds every node through general code: per input it searches a
stack of scopes, per node and attribute it wraps the call to capture errors, and it prepares for
cases most graphs never have. ``deserialize_model`` here builds the same objects through onnx_ir's
public constructors and serde helpers, with one dictionary of the graph's values, when the main
graph is *plain*:

- no node holds a subgraph (If/Loop/Scan bodies need onnx_ir's scope handling) or device
  configurations, and the model has none;
- the graph has no quantization annotations;
- every node input names a graph input, an initializer or a node output, every graph output is
  defined, every initializer is named, and no name is defined twice;
- the model has no functions, or its IR version keeps function value infos in the functions
  themselves (10 or later).

Anything else is read by ``ir.serde.deserialize_model`` itself, and so is a plain graph on which
the lean path fails, so that onnx_ir raises its own error for what it refuses. The lean path builds what onnx_ir builds, in the same order (values,
their names and annotations, node order, attributes, metadata and doc strings): the serialized
forms of both models are identical, which the tests check on every ONNX backend test model.
"""

from __future__ import annotations

from itertools import repeat

import onnx
import onnx_ir as ir

__all__ = ["deserialize_model"]

_SUBGRAPH_ATTRIBUTES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
#: The IR version from which value infos of function bodies live in the functions (onnx_ir reads
#: older ones from the main graph, a case left to it).
_FUNCTION_VALUE_INFO_IR_VERSION = 10


class _NotPlain(Exception):
    """The graph needs onnx_ir's general deserializer."""


def deserialize_model(proto: onnx.ModelProto) -> ir.Model:
    """``ir.serde.deserialize_model``, faster on a plain main graph (see the module docstring)."""
    if not _plain_model(proto):
        return ir.serde.deserialize_model(proto)
    try:
        graph = _deserialize_graph(proto.graph)
    except Exception:  # _NotPlain, or a construct onnx_ir refuses: let it say so in its own words
        return ir.serde.deserialize_model(proto)
    graph.opset_imports.update(ir.serde.deserialize_opset_import(proto.opset_import))
    return ir.Model(
        graph,
        ir_version=proto.ir_version,
        producer_name=_field(proto, "producer_name"),
        producer_version=_field(proto, "producer_version"),
        domain=_field(proto, "domain"),
        model_version=_field(proto, "model_version"),
        doc_string=_field(proto, "doc_string"),
        functions=[ir.serde.deserialize_function(function) for function in proto.functions],
        metadata_props=ir.serde.deserialize_metadata_props(proto.metadata_props),
    )


def _plain_model(proto: onnx.ModelProto) -> bool:
    if getattr(proto, "configuration", None) or proto.graph.quantization_annotation:
        return False
    return not proto.functions or proto.ir_version >= _FUNCTION_VALUE_INFO_IR_VERSION


def _field(proto, name: str):
    """The field's value when set, else None (as onnx_ir reads optional fields)."""
    return getattr(proto, name) if proto.HasField(name) else None


def _deserialize_graph(proto: onnx.GraphProto) -> ir.Graph:
    """The main graph, as ``onnx_ir.serde`` builds it; raises ``_NotPlain`` for what it leaves to onnx_ir."""
    value_info = {info.name: info for info in proto.value_info}
    inputs = [ir.Value(name=info.name) for info in proto.input]
    for info, value in zip(proto.input, inputs):
        ir.serde.deserialize_value_info_proto(info, value)
    values: dict[str, ir.Value] = {value.name: value for value in inputs}  # type: ignore[misc]
    initializers = []
    for tensor in map(ir.serde.deserialize_tensor, proto.initializer):
        name = tensor.name
        if not name:
            raise _NotPlain
        value = values.get(name)
        if value is not None:  # the initializer of a graph input
            value.const_value = tensor
        else:
            value = ir.Value(None, index=None, name=name, type=ir.TensorType(tensor.dtype), shape=tensor.shape,
                             const_value=tensor)
            if name in value_info:
                ir.serde.deserialize_value_info_proto(value_info[name], value)
            values[name] = value
        initializers.append(value)
    node_protos = list(proto.node)
    node_outputs = [_declare_outputs(node, values, value_info) for node in node_protos]
    nodes = list(map(_deserialize_node, node_protos, node_outputs, repeat(values)))
    outputs = []
    for info in proto.output:
        value = values.get(info.name)
        if value is None:
            raise _NotPlain
        ir.serde.deserialize_value_info_proto(info, value)
        outputs.append(value)
    return ir.Graph(inputs, outputs, nodes=nodes, initializers=initializers, doc_string=_field(proto, "doc_string"),
                    name=_field(proto, "name"), metadata_props=ir.serde.deserialize_metadata_props(proto.metadata_props))


def _declare_outputs(proto: onnx.NodeProto, values: dict[str, ir.Value],
                     value_info: dict[str, onnx.ValueInfoProto]) -> list[ir.Value]:
    """The node's output values, each named one also entered in ``values``.

    All nodes' outputs are declared before any node is built: a graph may use a value before the
    node defining it (onnx_ir reads such graphs too).
    """
    outputs = []
    for name in proto.output:
        if not name:
            outputs.append(ir.Value(name=""))
            continue
        if name in values:
            raise _NotPlain  # defined twice: onnx_ir raises its own error
        value = values[name] = ir.Value(name=name)
        if name in value_info:
            ir.serde.deserialize_value_info_proto(value_info[name], value)
        outputs.append(value)
    return outputs


def _deserialize_node(proto: onnx.NodeProto, outputs: list[ir.Value], values: dict[str, ir.Value]) -> ir.Node:
    try:
        inputs = [values[name] if name else None for name in proto.input]
    except KeyError:
        raise _NotPlain from None  # onnx_ir creates the missing value, with a warning
    if getattr(proto, "device_configurations", None):
        raise _NotPlain
    attributes: list[ir.Attr] | tuple = ()
    if proto.attribute:
        if any(attr.type in _SUBGRAPH_ATTRIBUTES for attr in proto.attribute):
            raise _NotPlain
        attributes = [ir.serde.deserialize_attribute(attr) for attr in proto.attribute]
    metadata = proto.metadata_props
    return ir.Node(proto.domain, proto.op_type, inputs, attributes, overload=getattr(proto, "overload", ""),
                   outputs=outputs, name=proto.name, doc_string=_field(proto, "doc_string"),
                   metadata_props=ir.serde.deserialize_metadata_props(metadata) if metadata else None)
