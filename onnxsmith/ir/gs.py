"""Interop with onnx-graphsurgeon: ``to_gs``, ``from_gs`` and passes written against a gs Graph.

onnx-graphsurgeon is an optional extra (``pip install onnxsmith[gs]``); it is imported only when
one of these functions is called.

The conversion goes through a ModelProto in both directions (``gs.import_onnx`` /
``gs.export_onnx``), with two refinements:

- Weights stored as external data are not read. In the gs Graph their constants hold lazy
  values backed by the original ``onnx_ir`` tensor; ``from_gs`` puts that very tensor object
  back when the constant's values were never loaded, so a gs pass that does not touch the
  weights does not read them. Reading ``Constant.values`` maps the file and returns a read-only
  array: assign a new array rather than editing it in place. A constant whose values were
  read is written back from memory.
- What graphsurgeon does not represent is taken from ``like`` (the model converted with
  ``to_gs``) when given: model fields (producer, domain, version, doc string, metadata, training
  info), opset imports that gs would drop because no node uses them, graph metadata, and the
  doc strings and metadata of nodes that kept their name and op type.

Function overloads cannot be expressed in graphsurgeon; ``to_gs`` refuses models that use them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import onnx_ir as ir

from onnxsmith.errors import OnnxsmithError, UnsupportedError
from onnxsmith.ir._proto_extras import model_graphs

if TYPE_CHECKING:
    import onnx_graphsurgeon

    from onnxsmith.passes.base import Pass, PassContext, PassResult

__all__ = ["from_gs", "gs_pass", "to_gs"]

_ExternalKey = tuple[str, int, "int | None"]


def _graphsurgeon() -> Any:
    try:
        import onnx_graphsurgeon
    except ImportError as e:
        raise OnnxsmithError("onnx-graphsurgeon is not installed", "pip install onnxsmith[gs]") from e
    return onnx_graphsurgeon


@functools.cache
def _ir_values_class() -> type:
    """gs ``LazyValues`` backed by an ``onnx_ir`` tensor (defined once gs is importable)."""
    _graphsurgeon()
    from onnx_graphsurgeon.ir.tensor import LazyValues

    class IRTensorValues(LazyValues):
        """Lazy gs values whose data comes from an onnx_ir tensor (e.g. a memory-mapped ExternalTensor)."""

        def __init__(self, proto, tensor: ir.TensorProtocol) -> None:
            super().__init__(proto)
            self.ir_tensor = tensor

        def load(self):
            return self.ir_tensor.numpy()

    return IRTensorValues


def _key(tensor: ir.ExternalTensor) -> _ExternalKey:
    """Identifies an external tensor by where its bytes are (names can change in a gs pass)."""
    return str(tensor.location), tensor.offset or 0, tensor.length


def _external_key(proto) -> _ExternalKey | None:
    info = {entry.key: entry.value for entry in proto.external_data}
    if "location" not in info:
        return None
    offset, length = info.get("offset"), info.get("length")
    return info["location"], int(offset) if offset else 0, int(length) if length else None


def _gs_graphs(graph: onnx_graphsurgeon.Graph) -> Iterator[Any]:
    yield graph
    yield from graph.subgraphs(recursive=True)
    for function in graph.functions:
        yield function
        yield from function.subgraphs(recursive=True)


def _gs_constants(graph: onnx_graphsurgeon.Graph) -> Iterator[Any]:
    gs = _graphsurgeon()
    for g in _gs_graphs(graph):
        for tensor in g.tensors().values():
            if isinstance(tensor, gs.Constant):
                yield tensor


def to_gs(model: ir.Model) -> onnx_graphsurgeon.Graph:
    """Converts a model to an onnx-graphsurgeon Graph; external weights stay unread.

    Raises:
        OnnxsmithError: onnx-graphsurgeon is not installed.
        UnsupportedError: The model uses function overloads, which graphsurgeon cannot express.
    """
    gs = _graphsurgeon()
    _refuse_overloads(model)
    external: dict[_ExternalKey, ir.ExternalTensor] = {}
    for graph in model_graphs(model):
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                external[_key(value.const_value)] = value.const_value
    graph = gs.import_onnx(ir.to_proto(model))
    values_class = _ir_values_class()
    for constant in _gs_constants(graph):
        lazy = constant._values  # gs keeps unloaded values here; reading .values would load them
        if isinstance(lazy, values_class.__base__) and not isinstance(lazy, values_class):
            key = _external_key(lazy.tensor)
            if key is not None and key in external:
                constant.values = values_class(lazy.tensor, external[key])
    return graph


def _refuse_overloads(model: ir.Model) -> None:
    for function in model.functions.values():
        if function.overload:
            raise UnsupportedError(
                f"onnx-graphsurgeon cannot express function overloads (function "
                f"'{function.domain}::{function.name}' overload '{function.overload}')",
                "inline or remove the overloaded functions first")


def from_gs(graph: onnx_graphsurgeon.Graph, *, like: ir.Model | None = None) -> ir.Model:
    """Converts an onnx-graphsurgeon Graph back to an ``onnx_ir.Model``.

    Args:
        graph: The gs Graph, typically from :func:`to_gs` and then edited.
        like: The model ``graph`` was made from; supplies what graphsurgeon does not carry
            (see the module docstring).

    Raises:
        OnnxsmithError: onnx-graphsurgeon is not installed.
    """
    gs = _graphsurgeon()
    values_class = _ir_values_class()
    originals = {_key(c._values.ir_tensor): c._values.ir_tensor for c in _gs_constants(graph)
                 if isinstance(c._values, values_class)}
    model = ir.serde.deserialize_model(gs.export_onnx(graph))
    for g in model_graphs(model):
        for value in g.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                original = originals.get(_key(value.const_value))
                if original is not None:
                    value.const_value = original
    if like is not None:
        _carry_over(like, model)
    return model


def _carry_over(source: ir.Model, target: ir.Model) -> None:
    """Copies what graphsurgeon drops from ``source`` into ``target`` (converted from it)."""
    for name in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(target, name, getattr(source, name))
    target.ir_version = max(target.ir_version, source.ir_version)
    target.metadata_props.update(source.metadata_props)
    target.meta.update(source.meta)
    for domain, version in source.opset_imports.items():
        target.opset_imports.setdefault(domain, version)
    target.graph.metadata_props.update(source.graph.metadata_props)
    target.graph.doc_string = target.graph.doc_string or source.graph.doc_string
    named = {(n.name, n.op_type, n.domain): n for n in ir.traversal.RecursiveGraphIterator(source.graph) if n.name}
    for node in ir.traversal.RecursiveGraphIterator(target.graph):
        before = named.get((node.name, node.op_type, node.domain))
        if before is not None:
            node.doc_string = node.doc_string or before.doc_string
            for key, value in before.metadata_props.items():
                node.metadata_props.setdefault(key, value)


def _fingerprint(graph: onnx_graphsurgeon.Graph) -> str:
    import hashlib  # here, not at module level: importing it loads OpenSSL (3.5 MiB)

    proto = _graphsurgeon().export_onnx(graph, do_type_check=False)
    return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()


def gs_pass(fn: Callable[[Any], bool | None] | None = None, *, name: str | None = None,
            register: bool = True, **contract: Any) -> type[Pass] | Callable[[Callable], type[Pass]]:
    """Turns ``fn(graph: gs.Graph) -> bool | None`` into an onnxsmith pass.

    ``fn`` edits the graph in place. If it returns a bool, that says whether it changed the
    graph; if it returns None, the change is detected by comparing the exported graph before
    and after. Usable as ``gs_pass(fn, name="...")`` or as the decorator ``@gs_pass(name="...")``.

    Args:
        fn: The function; its docstring's first line becomes the pass's help.
        name: Kebab-case pass name (default: the function name with dashes).
        register: Register the pass so pipelines can name it (default True).
        **contract: ``requires``, ``provides``, ``preserves``, ``after``, ``before``, ``tolerance``
            as for :func:`onnxsmith.passes.register_pass`.

    Returns:
        The Pass subclass (or, used as a decorator factory, a decorator returning it).
    """
    # Imported here: onnxsmith.passes imports onnxsmith.ir, which exports this module.
    from onnxsmith.passes.base import PassResult, function_pass
    from onnxsmith.passes.registry import register_pass

    if fn is None:
        return functools.partial(gs_pass, name=name, register=register, **contract)
    pass_name = name or fn.__name__.replace("_", "-")

    def run(model: ir.Model, ctx: PassContext) -> PassResult:
        graph = to_gs(model)
        result = fn(graph)
        if result is None:  # fn edited a copy: compare it with a fresh conversion of the model
            result = _fingerprint(graph) != _fingerprint(to_gs(model))
        if not result:
            return PassResult(False)
        edited = from_gs(graph, like=model)
        model.graph = edited.graph
        model.functions.clear()
        model.functions.update(edited.functions)
        return PassResult(True)

    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):  # the help and identity of fn
        setattr(run, attribute, getattr(fn, attribute))
    if register:
        return register_pass(name=pass_name, **contract)(run)
    return function_pass(run, pass_name, **contract)

