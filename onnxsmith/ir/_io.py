"""Loading and saving models: safe, lazy and atomic.

``load`` parses only the protobuf; tensors stored as external data stay on disk and are
memory-mapped on first use (onnx_ir's ``ExternalTensor``), so a pipeline whose passes do not
touch the weights never reads them. Before anything is deserialized every tensor is checked:
external data must live inside the model's folder and must be as large as the tensor's declared
shape says; inline data must match its declared size. Hostile or corrupt files therefore fail
with a one-line error instead of crashing or allocating what their headers claim.

``save`` writes the protobuf to a temporary file next to the destination and renames it into
place, so a failure never leaves a half-written model. Large tensors go to external data next
to the output (``<name>.data``) whenever the input used external data or the model would not
fit in one protobuf.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from onnxsmith.errors import ModelInputError, OutputError
from onnxsmith.ir.queries import has_external_data, tensor_bytes

__all__ = ["load", "save", "load_proto_checked", "PROTOBUF_LIMIT"]

#: Protobuf cannot serialize messages of 2 GiB or more.
PROTOBUF_LIMIT = 2**31 - 1
#: Above this total tensor size ``save`` switches to external data on its own.
AUTO_EXTERNAL_BYTES = 1_500_000_000
#: Tensors smaller than this stay inline when writing external data.
EXTERNAL_THRESHOLD_BYTES = 1024


def load(path: str | os.PathLike, *, check: bool = True) -> ir.Model:
    """Loads an ONNX model lazily, refusing corrupt or hostile files.

    Args:
        path: Path to a ``.onnx`` file (protobuf); external data is resolved next to it.
        check: Also run the ONNX checker on the graph (without loading external data).

    Returns:
        The model as an ``onnx_ir.Model``; external tensors are not read until used.

    Raises:
        ModelInputError: The file is missing, not ONNX, corrupt, invalid or hostile.
    """
    proto = load_proto_checked(path, check=check)
    model = ir.serde.deserialize_model(proto)
    base_dir = os.path.dirname(os.path.abspath(path))
    ir.external_data.set_base_dir(model.graph, base_dir)
    for function in model.functions.values():
        ir.external_data.set_base_dir(function, base_dir)  # type: ignore[arg-type]
    return model


def load_proto_checked(path: str | os.PathLike, *, check: bool = True) -> onnx.ModelProto:
    """Reads the ModelProto without external data and validates every tensor header."""
    path = Path(path)
    if not path.exists():
        raise ModelInputError(f"model file not found: {path}", "check the path")
    if path.is_dir():
        raise ModelInputError(f"model path is a directory: {path}", "pass the .onnx file inside it")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelInputError(f"cannot read model file {path}: {e.strerror}", "check permissions") from e
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelInputError(
            f"{path} is not an ONNX model (protobuf parse failed)",
            "pass a .onnx file exported by a framework",
        ) from e
    del data
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise ModelInputError(
            f"{path} is not an ONNX model (no graph or ir_version)",
            "pass a .onnx file exported by a framework",
        )
    base_dir = path.resolve().parent
    for where, tensor in _iter_tensors(proto):
        _check_tensor(tensor, where, base_dir)
    if check:
        _run_checker(proto, path)
    return proto


def _run_checker(proto: onnx.ModelProto, path: Path) -> None:
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid model"
        raise ModelInputError(
            f"{path} fails the ONNX checker: {first}",
            "fix the exporter output, or re-export with a supported opset",
        ) from e


def _iter_graph_tensors(graph: onnx.GraphProto, where: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    for t in graph.initializer:
        yield f"{where}initializer '{t.name}'", t
    for st in graph.sparse_initializer:
        yield f"{where}sparse initializer '{st.values.name}'", st.values
        yield f"{where}sparse initializer '{st.values.name}' indices", st.indices
    for node in graph.node:
        yield from _iter_node_tensors(node, where)


def _iter_node_tensors(node: onnx.NodeProto, where: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    label = f"{where}node '{node.name or node.op_type}'"
    for attr in node.attribute:
        if attr.HasField("t"):
            yield f"{label} attribute '{attr.name}'", attr.t
        for t in attr.tensors:
            yield f"{label} attribute '{attr.name}'", t
        if attr.HasField("g"):
            yield from _iter_graph_tensors(attr.g, f"{label} subgraph: ")
        for g in attr.graphs:
            yield from _iter_graph_tensors(g, f"{label} subgraph: ")


def _iter_tensors(proto: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    yield from _iter_graph_tensors(proto.graph, "")
    for fn in proto.functions:
        for node in fn.node:
            yield from _iter_node_tensors(node, f"function '{fn.name}' ")


_PACKED_4BIT = {
    onnx.TensorProto.INT4,
    onnx.TensorProto.UINT4,
    *(getattr(onnx.TensorProto, n) for n in ("FLOAT4E2M1",) if hasattr(onnx.TensorProto, n)),
}
_PACKED_2BIT = {getattr(onnx.TensorProto, n) for n in ("INT2", "UINT2") if hasattr(onnx.TensorProto, n)}


def _expected_nbytes(tensor: onnx.TensorProto, numel: int) -> int | None:
    if tensor.data_type in _PACKED_4BIT:
        return (numel + 1) // 2
    if tensor.data_type in _PACKED_2BIT:
        return (numel + 3) // 4
    if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    return numel * itemsize


def _typed_count(tensor: onnx.TensorProto) -> tuple[str, int] | None:
    for field in (
        "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data",
    ):
        n = len(getattr(tensor, field))
        if n:
            return field, n
    return None


def _check_tensor(tensor: onnx.TensorProto, where: str, base_dir: Path) -> None:
    if any(d < 0 for d in tensor.dims):
        raise ModelInputError(f"{where} has a negative dimension {list(tensor.dims)}", "the file is corrupt")
    numel = math.prod(tensor.dims)
    expected = _expected_nbytes(tensor, numel)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        _check_external(tensor, where, base_dir, expected)
        return
    if tensor.HasField("raw_data") or tensor.raw_data:
        if expected is not None and len(tensor.raw_data) != expected:
            raise ModelInputError(
                f"{where} declares shape {list(tensor.dims)} ({expected} bytes) "
                f"but holds {len(tensor.raw_data)} bytes",
                "the file is corrupt or was truncated",
            )
        return
    typed = _typed_count(tensor)
    if typed is None:
        if numel != 0:
            raise ModelInputError(
                f"{where} declares shape {list(tensor.dims)} but holds no data",
                "the file is corrupt or was truncated",
            )
        return
    field, count = typed
    if tensor.data_type in _PACKED_4BIT:
        want = (numel + 1) // 2
    elif tensor.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128):
        want = 2 * numel
    else:
        want = numel
    if count != want:
        raise ModelInputError(
            f"{where} declares shape {list(tensor.dims)} ({want} values) but holds {count} in {field}",
            "the file is corrupt or was truncated",
        )


def _check_external(tensor: onnx.TensorProto, where: str, base_dir: Path, expected: int | None) -> None:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location:
        raise ModelInputError(f"{where} is stored externally but names no file", "the file is corrupt")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        raise ModelInputError(
            f"{where} points to external data at absolute path '{location}'",
            "external data must sit in the model's folder; refusing to read it",
        )
    target = (base_dir / location).resolve()
    if base_dir != target and base_dir not in target.parents:
        raise ModelInputError(
            f"{where} points to external data '{location}' outside the model's folder",
            "external data must sit in the model's folder; refusing to read it",
        )
    if not target.is_file():
        raise ModelInputError(
            f"{where} needs external data file '{location}', which does not exist next to the model",
            "copy the .data file next to the .onnx file",
        )
    try:
        offset = int(info.get("offset", "0") or 0)
        length = int(info["length"]) if info.get("length") not in (None, "") else None
    except ValueError as e:
        raise ModelInputError(f"{where} has a non-integer external data offset/length", "the file is corrupt") from e
    if offset < 0 or (length is not None and length < 0):
        raise ModelInputError(f"{where} has a negative external data offset/length", "the file is corrupt")
    if expected is not None and length is not None and length != expected:
        raise ModelInputError(
            f"{where} declares shape {list(tensor.dims)} ({expected} bytes) but its external data length is {length}",
            "the file is corrupt",
        )
    need = length if length is not None else expected
    size = target.stat().st_size
    if need is not None and offset + need > size:
        raise ModelInputError(
            f"{where} needs bytes {offset}..{offset + need} of '{location}', which has only {size}",
            "the external data file is truncated",
        )


def save(
    model: ir.Model,
    path: str | os.PathLike,
    *,
    external_data: bool | None = None,
    size_threshold_bytes: int = EXTERNAL_THRESHOLD_BYTES,
) -> None:
    """Saves a model atomically.

    Args:
        model: The model; it is not changed by saving.
        path: Destination ``.onnx`` path. External data goes to ``<basename>.data`` beside it.
        external_data: Force (True) or forbid (False) external data; by default it is used when
            the model already had external tensors or would exceed the protobuf limit.
        size_threshold_bytes: Tensors at least this large go to external data when it is used.

    Raises:
        OutputError: The destination folder does not exist or is not writable, or the model is too
            large for a single protobuf and external data was forbidden.
    """
    path = Path(path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}", "create it first")
    if path.is_dir():
        raise OutputError(f"output path is a directory: {path}", "give a file name such as out.onnx")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}", "choose another output path")
    total, has_external = tensor_bytes(model), has_external_data(model)
    if external_data is None:
        external_data = has_external or total > AUTO_EXTERNAL_BYTES
    if not external_data and total > PROTOBUF_LIMIT:
        raise OutputError(
            f"model holds {total / 2**30:.1f} GiB of tensors, over the 2 GiB protobuf limit",
            "save with external data",
        )
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputError(f"cannot write to {parent}: {e.strerror or e}", "choose another output path") from e
    os.close(fd)
    try:
        if external_data:
            ir.save(
                model,
                tmp,
                external_data=f"{path.name}.data",
                size_threshold_bytes=size_threshold_bytes,
            )
        else:
            if has_external:
                # Bring tensors inline so the file does not point into another folder's data.
                model = ir.external_data.load_to_model(model)
            ir.save(model, tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}", "check the output path and free space") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
