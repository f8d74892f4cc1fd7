"""A faster ``onnx_ir.serde.deserialize_model`` for the main graph of large models.

onnx_ir deserializes every node through a general routine that searches a stack of scopes for
each input, re-reads optional fields by name, wraps each call in an error-capturing decorator and
builds every attribute through an enum dispatch. On exporter-sized graphs (10^5 nodes) that is most
of ``load``'s time. This module builds the *same* objects (``Node``, ``Value``, ``Attr``,
``TensorProtoTensor``, with the same names, fields, order and defaults) for the main graph along a
straight path:

- inputs are looked up in the main graph's own scope (it has no outer one);
- scalar and list attributes are built by their type's constructor directly; tensor attributes by
  ``serde.deserialize_tensor``;
- a node's fields are set the way ``Node.__init__`` sets them, without its argument checks (which
  a deserialized node passes by construction), and the graph takes its nodes in one batch. This
  relies on onnx_ir's private layout; ``_FAST_NODES`` is False, and ``Node.__init__`` and
  ``Graph.extend`` are used, unless a node built both ways at import matches field by field;
- anything unusual goes through onnx_ir's own routine for that node or attribute: a node whose
  input is not defined anywhere (onnx_ir warns and creates it), a node with device
  configurations, attributes holding graphs (the subgraphs are deserialized by onnx_ir with the
  main graph's scope above them, as ``serde`` does), reference attributes, and every other type.

Functions and everything at model level are deserialized as ``serde.deserialize_model`` does.
``tests/ir/test_fast_deserialize.py`` compares both on varied models; the conformance suite covers
the onnx backend cases. When onnx_ir lacks one of the private helpers used here (another
version), ``deserialize_model`` is onnx_ir's own.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx_ir import serde

from onnxsmith.ir._private import agrees, fields

try:
    from onnx_ir._core import Usage
    from onnx_ir._graph_containers import Attributes
except ImportError:  # another onnx_ir layout: the constructor path (see _same_layout)
    Usage = Attributes = None

__all__ = ["deserialize_model"]

_Value = ir.Value
_Node = ir.Node
_T = onnx.AttributeProto
#: Attribute constructors by AttributeProto type for the types read straight from the proto.
_SIMPLE = {
    _T.INT: lambda p: ir.AttrInt64(p.name, p.i, doc_string=_doc(p)),
    _T.FLOAT: lambda p: ir.AttrFloat32(p.name, p.f, doc_string=_doc(p)),
    _T.INTS: lambda p: ir.AttrInt64s(p.name, p.ints, doc_string=_doc(p)),
    _T.FLOATS: lambda p: ir.AttrFloat32s(p.name, p.floats, doc_string=_doc(p)),
    _T.TENSOR: lambda p: ir.AttrTensor(p.name, serde.deserialize_tensor(p.t), doc_string=_doc(p)),
}


def _new_node(domain: str, op_type: str, inputs: list, attributes: list, overload: str, outputs: list,
              name: str, doc_string: str | None, metadata_props: dict | None) -> ir.Node:
    """``ir.Node(domain, op_type, inputs, attributes, overload=..., outputs=..., name=..., doc_string=...,
    metadata_props=...)`` for outputs without a producer and a domain other than "ai.onnx"."""
    node = _new(_Node)
    node._name = name
    node._domain = domain
    node._op_type = op_type
    node._inputs = inputs = tuple(inputs)
    for i, value in enumerate(outputs):
        value._producer = node
        value._index = i
    node._outputs = tuple(outputs)
    container = _new(Attributes)
    container._owner = node
    container.data = {attr.name: attr for attr in attributes}
    node._attributes = container
    node._overload = overload
    node._version = None
    node._metadata = None
    node._metadata_props = metadata_props
    node.device_configurations = ()
    node._graph = None
    node.doc_string = doc_string
    for i, value in enumerate(inputs):
        if value is not None:
            value._uses[Usage(node, i)] = None
    return node


_new = object.__new__


def _layout(node: ir.Node) -> dict:
    """Every field of a node, containers by content, values by name and uses."""
    found = fields(node)
    found["_inputs"] = [v and (v.name, [(u.node is node, u.idx) for u in v.uses()]) for v in node.inputs]
    found["_outputs"] = [(v.name, v.producer() is node, v.index()) for v in node.outputs]
    attributes = node._attributes
    found["_attributes"] = (type(attributes), vars(attributes).keys(), attributes._owner is node, dict(attributes))
    return found


def _same_layout() -> bool:
    """Whether ``_new_node`` builds what ``Node.__init__`` builds, in this onnx_ir."""
    attr = ir.AttrInt64("axis", 1)
    made = [make("", "Concat", [_Value(name="a"), None], [attr], "", [_Value(name="y")], "n", None, {"k": "v"})
            for make in (_new_node, _init_node)]
    return _layout(made[0]) == _layout(made[1])


def _init_node(domain, op_type, inputs, attributes, overload, outputs, name, doc_string, metadata_props) -> ir.Node:
    return _Node(domain, op_type, inputs, attributes, overload=overload, outputs=outputs, name=name,
                 doc_string=doc_string, metadata_props=metadata_props)


def _doc(proto) -> str | None:
    return proto.doc_string if proto.HasField("doc_string") else None


def _onnx_ir_internals() -> tuple | None:
    try:
        return (serde._deserialize_graph, serde._deserialize_node, serde._deserialize_attribute,
                serde._deserialize_quantization_annotation, serde._get_field,
                serde._resolve_node_device_configurations,
                serde._deserialized_experimental_value_info_for_function_ir9,
                serde._FUNCTION_VALUE_INFO_SUPPORTED_VERSION)
    except AttributeError:
        return None


_INTERNALS = _onnx_ir_internals()
_FAST_NODES = _INTERNALS is not None and agrees(_same_layout)
_make_node = _new_node if _FAST_NODES else _init_node
#: Whether this onnx version has multi-device fields (onnx >= 1.19).
_DEVICES = hasattr(onnx.NodeProto(), "device_configurations")


def deserialize_model(proto: onnx.ModelProto) -> ir.Model:
    """``onnx_ir.serde.deserialize_model(proto)``, built faster (same result)."""
    if _INTERNALS is None:
        return serde.deserialize_model(proto)
    graph = _main_graph(proto.graph)
    graph.opset_imports.update(serde.deserialize_opset_import(proto.opset_import))
    functions = [serde.deserialize_function(f) for f in proto.functions]
    configurations = tuple(serde.deserialize_model_configuration(c) for c in proto.configuration) \
        if _DEVICES and proto.configuration else ()
    get = serde._get_field
    model = ir.Model(graph, ir_version=proto.ir_version, producer_name=get(proto, "producer_name"),
                     producer_version=get(proto, "producer_version"), domain=get(proto, "domain"),
                     model_version=get(proto, "model_version"), doc_string=get(proto, "doc_string"),
                     functions=functions, metadata_props=serde.deserialize_metadata_props(proto.metadata_props),
                     device_configurations=configurations)
    if model.ir_version < serde._FUNCTION_VALUE_INFO_SUPPORTED_VERSION:
        serde._deserialized_experimental_value_info_for_function_ir9(model.functions, proto.graph.value_info)
    serde._resolve_node_device_configurations(model)
    return model


def _main_graph(proto: onnx.GraphProto) -> ir.Graph:
    """``serde._deserialize_graph(proto, [])`` with the node path described in the module docstring."""
    try:
        return _build_graph(proto)
    except Exception as e:  # the message onnx_ir gives for the same failure
        raise serde.SerdeError(f"Error calling _deserialize_graph with: {proto.name}") from e


def _build_graph(proto: onnx.GraphProto) -> ir.Graph:
    annotations = {a.tensor_name: a for a in proto.quantization_annotation}
    annotate = serde._deserialize_quantization_annotation
    read_info = serde.deserialize_value_info_proto
    inputs = [_Value(name=info.name) for info in proto.input]
    for info, value in zip(proto.input, inputs):
        read_info(info, value)
        if value.name in annotations:
            annotate(annotations[value.name], value)
    values: dict[str, ir.Value] = {v.name: v for v in inputs}
    scopes = [values]
    value_info = {info.name: info for info in proto.value_info}

    initializers = []
    for i, tensor in enumerate(serde.deserialize_tensor(t) for t in proto.initializer):
        name = tensor.name
        if not name:
            serde.logger.warning("Initializer tensor must have a name but the %s-th initializer does not. "
                                 "Skipping this initializer.", i)
            continue
        if name in values:
            value = values[name]
            value.const_value = tensor
        else:
            value = _Value(None, index=None, name=name, type=ir.TensorType(tensor.dtype), shape=tensor.shape,
                           const_value=tensor)
            if name in value_info:
                read_info(value_info[name], value)
            if name in annotations:
                annotate(annotations[name], value)
            values[name] = value
        initializers.append(value)

    node_protos = proto.node
    for node in node_protos:  # declared first: subgraphs may refer to values defined later
        for name in node.output:
            if not name:
                continue
            if name in values:
                raise ValueError(f"Output '{name}' is redeclared in the current graph scope. Original "
                                 f"declaration {values[name]}. New declaration: by operator '{node.op_type}' "
                                 f"of node '{node.name}'. The model is invalid")
            value = values[name] = _Value(name=name)
            if name in value_info:
                read_info(value_info[name], value)
            if name in annotations:
                annotate(annotations[name], value)
    nodes = [_node(node, values, scopes, value_info, annotations) for node in node_protos]

    outputs = []
    for info in proto.output:
        value = values.get(info.name)
        if value is None:
            serde.logger.warning("Output '%s' is not produced by any node. The graph has an invalid output",
                                 info.name)
            value = _Value(name=info.name)
        read_info(info, value)
        outputs.append(value)
    get = serde._get_field
    graph = ir.Graph(inputs, outputs, nodes=() if _FAST_NODES else nodes, initializers=initializers,
                     doc_string=get(proto, "doc_string"), name=get(proto, "name"),
                     metadata_props=serde.deserialize_metadata_props(proto.metadata_props))
    if _FAST_NODES:
        _adopt(graph, nodes)
    return graph


def _adopt(graph: ir.Graph, nodes: list[ir.Node]) -> None:
    """``graph.extend(nodes)`` for nodes of no graph whose names and output names are strings."""
    authority = graph._name_authority
    authority._node_names.update([node._name for node in nodes])
    authority._value_names.update([value._name for node in nodes for value in node._outputs])
    for node in nodes:
        node._graph = graph
    graph._nodes.extend(nodes)


def _node(proto: onnx.NodeProto, values: dict[str, ir.Value], scopes: list[dict[str, ir.Value]],
          value_info: dict, annotations: dict) -> ir.Node:
    try:
        inputs = [values[name] if name else None for name in proto.input]
    except KeyError:  # an undefined input: onnx_ir warns and creates it
        inputs = None
    if inputs is None or (_DEVICES and proto.device_configurations):
        return serde._deserialize_node(proto, scopes, value_info, annotations)
    outputs = [values[name] if name else _Value(name="") for name in proto.output]
    attributes = []
    for attr in proto.attribute:
        make = _SIMPLE.get(attr.type)
        if make is None or attr.ref_attr_name:
            attributes.append(serde._deserialize_attribute(attr, scopes))
        else:
            attributes.append(make(attr))
    domain = proto.domain
    return _make_node("" if domain == "ai.onnx" else domain, proto.op_type, inputs, attributes,
                      getattr(proto, "overload", ""), outputs, proto.name, _doc(proto),
                      serde.deserialize_metadata_props(proto.metadata_props))
