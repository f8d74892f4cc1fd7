"""Loading and saving models: safe, lazy, lossless and atomic.

``load`` parses only the protobuf. Before anything is deserialized every tensor header is
checked (``_validate``): external data must live inside the model's folder and be as large as
the tensor's shape says, inline data must match its declared size. Hostile or corrupt files
therefore fail with a one-line ``ModelInputError`` instead of crashing or allocating what their
headers claim. A file of ``DETACH_MIN_BYTES`` or more is parsed without its large initializer
data (``_skeleton``), which is then read from the file into arrays of their own: one copy of the
weights, not two; the ONNX checker checks that skeleton too (``_checker_verdict``). A smaller
file is checked by the checker reading the file itself, before ``load`` does, so that its copy of
the model is gone before ours is parsed. The checker's verdict is reported only after the header
checks pass, which name a problem more precisely.
Tensors stored as external data stay on disk: onnx_ir's ``ExternalTensor`` memory-maps its file
on first use, so a pipeline whose passes do not touch the weights never reads them.

``save`` writes into a temporary folder next to the destination and renames the results into
place (the data file first, then the ``.onnx``), so a failure never leaves a half-written model
and never touches the previous one. Tensors go to external data (``<name>.data`` beside the
output) when the input used external data or the model would not fit in one protobuf. An
unchanged external tensor is copied file to file by the kernel (``copy_file_range``), never
through Python memory, so saving a 4 GB model costs little RSS. Saving over the very data file
the model's tensors are read from is safe: those tensors are re-pointed to the new file.

Round trips are lossless for everything ONNX carries (metadata, doc strings, functions,
subgraphs, opset imports, value info, sparse initializers, training info); see
``_proto_extras`` for what onnx_ir alone would lose and how it is put back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from onnxsmith.errors import ModelInputError, OutputError, first_line
from onnxsmith.ir._fast_serialize import serialize_model
from onnxsmith.ir._gc import gc_paused
from onnxsmith.ir._proto_extras import deserialize, finish_proto, model_graphs, sparse_detached
from onnxsmith.ir._skeleton import is_self_reference, read_skeleton
from onnxsmith.ir._validate import TensorFacts, check_tensors, iter_tensors, shown_path
from onnxsmith.ir.queries import all_nodes, nbytes

__all__ = ["AUTO_EXTERNAL_BYTES", "EXTERNAL_THRESHOLD_BYTES", "PROTOBUF_LIMIT", "load", "load_proto_checked",
           "save"]

#: Protobuf cannot serialize messages of 2 GiB or more.
PROTOBUF_LIMIT = 2**31 - 1
#: Above this total tensor size ``save`` switches to external data on its own.
AUTO_EXTERNAL_BYTES = 1_500_000_000
#: When external data is written, tensors of at most this many bytes stay inline.
EXTERNAL_THRESHOLD_BYTES = 1024


def load(path: str | os.PathLike, *, check: bool = True) -> ir.Model:
    """Loads an ONNX model lazily, refusing corrupt or hostile files.

    Args:
        path: Path to a ``.onnx`` file (protobuf); external data is resolved in its folder.
        check: Also run the ONNX checker (it does not read external data).

    Returns:
        The model as an ``onnx_ir.Model``; external tensors are not read until used.

    Raises:
        ModelInputError: The file is missing, not ONNX, corrupt, invalid or hostile.
    """
    path = Path(path)
    large = os.path.getsize(path) >= DETACH_MIN_BYTES if path.is_file() else False
    proto, facts = _read_proto(path, check=check, skeleton=large)
    base_dir = path.resolve().parent
    try:
        with gc_paused():
            model = deserialize(proto, base_dir, sparse=facts.sparse)
    except ModelInputError:
        raise
    except Exception as e:  # onnx_ir raises assorted types on malformed protos
        raise ModelInputError(f"{shown_path(path)} cannot be read into the IR: {first_line(e, 200)}",
                              "the file is corrupt or uses an unsupported construct") from e
    if facts.external:
        for tensor in _all_tensors(model):
            if isinstance(tensor, ir.ExternalTensor):
                tensor.base_dir = base_dir
    if large:
        _detach_from_proto(model, path.resolve())
    return model


#: Size of the .onnx file from which ``load`` frees the parsed ModelProto (see ``_detach_from_proto``)
#: and parses it without its large initializer data (``_skeleton``).
DETACH_MIN_BYTES = 16 * 2**20


def _in_memory(tensor: ir.TensorProtocol, model_file: Path) -> ir.TensorProtocol:
    """A raw-data tensor (inline, or referenced in the model file by ``_skeleton``) as an ``ir.Tensor``
    of its own array, else as is."""
    if is_self_reference(tensor, model_file):
        array = tensor.numpy()
        array = array.astype(array.dtype.newbyteorder("="))  # a copy: the file is unmapped below
        tensor.release()
    elif isinstance(tensor, ir.serde.TensorProtoTensor) and tensor.raw.HasField("raw_data") \
            and tensor.dtype != ir.DataType.STRING:
        array = tensor.numpy()
    else:
        return tensor
    return ir.Tensor(array, dtype=tensor.dtype, name=tensor.name, doc_string=tensor.doc_string,
                     metadata_props=dict(tensor.metadata_props))


def _detach_from_proto(model: ir.Model, model_file: Path) -> None:
    """Gives initializers and tensor attributes their own arrays, so the parsed ModelProto can be freed.

    A ``TensorProtoTensor`` keeps the whole ModelProto alive (protobuf sub-messages share their
    parent's memory) and copies its bytes on every ``numpy()``; an ``ir.Tensor`` holds one array and
    returns it. The copies are made while the proto is alive, which the load peak already covers.
    Converting costs about 60 us per tensor, so ``load`` does it only for a file large enough
    (``DETACH_MIN_BYTES``) for the retained proto to matter.
    """
    for graph in model_graphs(model):
        for value in graph.initializers.data.values():
            if value.const_value is not None:
                value.const_value = _in_memory(value.const_value, model_file)
    for node in _all_nodes(model):
        for name, attr in list(node.attributes.items()):
            if attr.is_ref() or attr.type != ir.AttributeType.TENSOR:
                continue
            tensor = _in_memory(attr.value, model_file)
            if tensor is not attr.value:
                node.attributes[name] = ir.Attr(name, attr.type, tensor, doc_string=attr.doc_string)


def load_proto_checked(path: str | os.PathLike, *, check: bool = True) -> onnx.ModelProto:
    """Reads the ModelProto without external data and validates every tensor header.

    Raises:
        ModelInputError: As for :func:`load`.
    """
    return _read_proto(Path(path), check=check)[0]


def _read_proto(path: Path, *, check: bool, skeleton: bool = False) -> tuple[onnx.ModelProto, TensorFacts]:
    """:func:`load_proto_checked`, also telling whether any tensor is external, any initializer sparse.

    With ``skeleton`` the large initializer data is left in the file, referenced as external data
    (``_skeleton``), so that the file's bytes and the parsed proto are not both as large as the weights.
    """
    shown = shown_path(path)
    if not path.exists():
        raise ModelInputError(f"model file not found: {shown}", "check the path")
    if path.is_dir():
        raise ModelInputError(f"model path is a folder: {shown}", "pass the .onnx file inside it")
    try:
        data = read_skeleton(path) if skeleton else None
        verdict = _checker_verdict(path, data) if check else None
        data = data or path.read_bytes()
    except OSError as e:
        raise ModelInputError(f"cannot read model file {shown}: {e.strerror}", "check permissions") from e
    if not data:
        raise ModelInputError(f"model file {shown} is empty", "pass a .onnx file exported by a framework")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelInputError(f"{shown} is not an ONNX model (protobuf parse failed)",
                              "pass a .onnx file exported by a framework; a truncated download also fails so") from e
    del data
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise ModelInputError(f"{shown} is not an ONNX model (no graph or ir_version)",
                              "pass a .onnx file exported by a framework")
    facts = check_tensors(proto, path)
    if verdict is not None:
        raise ModelInputError(f"{shown} fails the ONNX checker: {first_line(verdict, 200)}",
                              "fix the exporter output, or re-export with a supported opset") from verdict
    return proto, facts


def _checker_verdict(path: Path, skeleton: bytes | None = None) -> onnx.checker.ValidationError | None:
    """The ONNX checker's objection to the model file at ``path``, or None.

    Given the path (not a ModelProto, which it would serialize into a second copy) the checker
    parses the file on its own, resolves external data against the model's folder and never
    reads that data. Given the file's ``skeleton`` (``read_skeleton``) as well, it checks that
    instead, so that a large file is not parsed whole once more: each reference the skeleton
    made into the file is named ``#<file>``, which the checker takes as data held elsewhere
    (it checks the reference and the tensor header, not the bytes; the skeleton references
    only data whose size matches its header). A skeleton with external tensors of the file's
    own, which the checker would look for in the working folder, and any objection to the
    skeleton, send the checker to the file itself: its verdict on the file is the one given.
    """
    if skeleton is not None:
        proto = _checkable_skeleton(skeleton, path.name)
        if proto is not None:
            try:
                onnx.checker.check_model(proto)
                return None
            except (onnx.checker.ValidationError, ValueError):
                pass
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        return e
    return None


def _checkable_skeleton(skeleton: bytes, file_name: str) -> bytes | None:
    """The skeleton with its references into the model file named ``#<file_name>``; None if the
    model has external data of its own or the skeleton references nothing (the file is then
    checked as it is)."""
    proto = onnx.ModelProto.FromString(skeleton)
    renamed = 0
    for _, tensor in iter_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e for e in tensor.external_data if e.key == "location"), None)
        if location is None or location.value != file_name:
            return None
        location.value = "#" + file_name
        renamed += 1
    return proto.SerializeToString() if renamed else None


def save(
    model: ir.Model,
    path: str | os.PathLike,
    *,
    external_data: bool | None = None,
    size_threshold_bytes: int = EXTERNAL_THRESHOLD_BYTES,
) -> None:
    """Saves a model atomically.

    Args:
        model: The model. Saving does not change it, except that tensors read from the very
            data file being replaced are re-pointed to the new one.
        path: Destination ``.onnx`` path. External data goes to ``<file name>.data`` beside it.
        external_data: Force (True) or forbid (False) external data; by default it is used when
            the model already had external tensors or holds more than ``AUTO_EXTERNAL_BYTES``.
        size_threshold_bytes: With external data, tensors larger than this go to the data file.

    Raises:
        OutputError: The destination cannot be written, or the model is too large for a single
            protobuf and external data was forbidden.
    """
    path = Path(path)
    folder = _output_folder(path)
    graphs = list(model_graphs(model))  # one walk for every step below
    total, has_external = _initializer_totals(graphs)
    if external_data is None:
        external_data = has_external or total > AUTO_EXTERNAL_BYTES
    if not external_data and total > PROTOBUF_LIMIT:
        raise OutputError(f"model holds {total / 2**30:.1f} GiB of tensors, over the 2 GiB protobuf limit",
                          "save with external data")
    data_name = f"{path.name}.data"
    data_path = folder / data_name
    stale = _reading(model, data_path) if external_data else []
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder))
    except OSError as e:
        raise OutputError(f"cannot write in {shown_path(folder)}: {e.strerror}", "choose another output path") from e
    try:
        with gc_paused():
            proto, fresh, inlined = _serialize(model, graphs, staging, data_name if external_data else None,
                                               size_threshold_bytes, has_external)
        (staging / path.name).write_bytes(proto)
        if any(isinstance(tensor, ir.ExternalTensor) for tensor in fresh.values()):
            os.replace(staging / data_name, data_path)
        os.replace(staging / path.name, path)
    except OSError as e:
        where = f" ({shown_path(e.filename)})" if isinstance(e.filename, str) else ""
        raise OutputError(f"cannot write {shown_path(path)}: {e.strerror or e}{where}",
                          "check the output path and free space") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _repoint(stale, fresh, inlined, folder)


def _output_folder(path: Path) -> Path:
    folder = path.absolute().parent
    if not folder.exists():
        raise OutputError(f"output folder does not exist: {shown_path(folder)}", "create it first")
    if not folder.is_dir():
        raise OutputError(f"output folder {shown_path(folder)} is a file", "choose another output path")
    if path.is_dir():
        raise OutputError(f"output path is a folder: {shown_path(path)}", "give a file name such as out.onnx")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder is not writable: {shown_path(folder)}", "choose another output path")
    return folder


_Swap = tuple[ir.Node, ir.Attr, ir.Attr]


def _initializer_totals(graphs: list[ir.Graph]) -> tuple[int, bool]:
    """Bytes of all initializers of ``graphs`` (from their headers) and whether any is external."""
    tensors = [v.const_value for graph in graphs for v in graph.initializers.data.values() if v.const_value is not None]
    return sum(map(nbytes, tensors)), any(isinstance(t, ir.ExternalTensor) for t in tensors)


def _serialize(model: ir.Model, graphs: list[ir.Graph], staging: Path, data_name: str | None, threshold: int,
               has_external: bool) -> tuple[bytes, dict[int, ir.TensorProtocol | None], list[_Swap]]:
    """The serialized model, with external data (if named) written into ``staging``.

    ``graphs`` are the model's (``model_graphs``); ``has_external`` tells whether any initializer
    is external. Returns the protobuf bytes, the tensor each initializer held in the written model
    (by ``id`` of its value) and the attributes whose external tensors were inlined.
    """
    with _initializers_restored(graphs) as originals, sparse_detached(model, graphs) as detached, \
            _attribute_tensors_inlined(model) as inlined:
        try:
            if data_name is not None:
                ir.external_data.unload_from_model(model, staging, data_name, size_threshold_bytes=threshold)
            elif has_external:  # else there is nothing to load
                ir.external_data.load_to_model(model)
            proto = serialize_model(model)
        except ValueError as e:  # e.g. onnx_ir refusing a hard-linked or invalidated data file
            raise OutputError(f"cannot serialize the model: {first_line(e, 200)}") from e
        fresh = {id(value): value.const_value for value, _ in originals}
    finish_proto(proto, model, detached)
    try:
        return proto.SerializeToString(), fresh, inlined
    except ValueError as e:  # protobuf refuses messages over 2 GiB
        raise OutputError(f"cannot serialize the model: {first_line(e, 200)}", "save with external data") from e


@contextlib.contextmanager
def _initializers_restored(graphs: list[ir.Graph]) -> Iterator[list[tuple[ir.Value, ir.TensorProtocol | None]]]:
    """Puts every initializer's tensor back on exit (writing external data swaps them)."""
    originals = [(value, value.const_value) for graph in graphs for value in graph.initializers.data.values()]
    try:
        yield originals
    finally:
        for value, tensor in originals:
            value.const_value = tensor


def _attribute_tensors(attr: ir.Attr) -> list[ir.TensorProtocol]:
    if attr.is_ref():
        return []
    if attr.type == ir.AttributeType.TENSOR:
        return [attr.value]
    if attr.type == ir.AttributeType.TENSORS:
        return list(attr.value)
    return []


def _all_nodes(model: ir.Model) -> Iterator[ir.Node]:
    """Nodes of the main graph, its subgraphs and model-local functions."""
    yield from all_nodes(model.graph)
    for function in model.functions.values():
        yield from all_nodes(function)


def _all_tensors(model: ir.Model) -> Iterator[ir.TensorProtocol]:
    """Initializer and attribute tensors, everywhere in the model."""
    for graph in model_graphs(model):
        for value in graph.initializers.data.values():
            if value.const_value is not None:
                yield value.const_value
    for node in _all_nodes(model):
        for attr in node.attributes.values():
            yield from _attribute_tensors(attr)


@contextlib.contextmanager
def _attribute_tensors_inlined(model: ir.Model) -> Iterator[list[_Swap]]:
    """Replaces tensor attributes stored as external data by in-memory copies until exit.

    Their locations are relative to the input's folder, and onnx_ir writes only initializers
    to the new data file; inline is the one form that stays valid wherever the model goes.
    """
    swaps: list[_Swap] = []
    for node in _all_nodes(model):
        if not node.attributes.data:  # most nodes have none
            continue
        for name, attr in list(node.attributes.data.items()):
            tensors = _attribute_tensors(attr)
            if not any(isinstance(t, ir.ExternalTensor) for t in tensors):
                continue
            loaded = [ir.external_data.convert_tensors_from_external([t])[0] if isinstance(t, ir.ExternalTensor)
                      else t for t in tensors]
            value = loaded[0] if attr.type == ir.AttributeType.TENSOR else loaded
            inline = ir.Attr(name, attr.type, value, doc_string=attr.doc_string)
            node.attributes[name] = inline
            swaps.append((node, attr, inline))
    try:
        yield swaps
    finally:
        for node, original, _ in swaps:
            node.attributes[original.name] = original


def _reads(tensor: ir.TensorProtocol | None, file: Path) -> bool:
    if not isinstance(tensor, ir.ExternalTensor):
        return False
    try:
        return os.path.samefile(tensor.path, file)
    except OSError:
        return False


def _reading(model: ir.Model, file: Path) -> list[tuple[ir.Value | ir.Node, ir.TensorProtocol | ir.Attr]]:
    """Initializers and attributes whose tensors read ``file`` (which is about to be replaced)."""
    if not file.exists():
        return []
    found: list[tuple[ir.Value | ir.Node, ir.TensorProtocol | ir.Attr]] = [
        (value, value.const_value) for graph in model_graphs(model) for value in graph.initializers.data.values()
        if _reads(value.const_value, file)]
    for node in _all_nodes(model):
        found.extend((node, attr) for attr in node.attributes.values()
                     if any(_reads(t, file) for t in _attribute_tensors(attr)))
    return found


def _repoint(stale: list, fresh: dict[int, ir.TensorProtocol | None], inlined: list[_Swap], folder: Path) -> None:
    """After a successful save, moves tensors that read the replaced data file onto the new one."""
    inline_by_attr = {id(original): (node, inline) for node, original, inline in inlined}
    for owner, old in stale:
        if isinstance(owner, ir.Node):
            node, inline = inline_by_attr[id(old)]
            node.attributes[old.name] = inline
            continue
        tensor = fresh[id(owner)]
        if isinstance(tensor, ir.ExternalTensor):
            tensor.base_dir = folder
        owner.const_value = tensor
        old.release()
