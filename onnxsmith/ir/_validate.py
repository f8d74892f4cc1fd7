"""Validating the tensors of an untrusted ModelProto before anything is deserialized.

Every tensor in a file (initializers, sparse initializers, tensor attributes, in the main graph,
in subgraphs and in model-local functions) is checked against its own header:

- dimensions are non-negative;
- inline data holds exactly ``prod(dims)`` elements (``raw_data`` exactly that many bytes, packed
  for 4-bit and 2-bit types), so a header claiming ``[10**12]`` over 4 bytes fails at once,
  without allocating anything;
- external data names a relative location that resolves, symlinks followed, inside the model's
  folder; the file is regular, neither a symbolic link (the ONNX checker refuses those) nor
  hard-linked (onnx_ir refuses those before mapping the file), and holds ``offset + length``
  bytes, where ``length`` (if given) equals the size the header implies.

Only sizes are compared: no tensor data is read. Failures are ``ModelInputError`` with a single
line naming the tensor and the file.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import onnx
from google.protobuf.message import Message

from onnxsmith.errors import ModelInputError

__all__ = ["TensorFacts", "Where", "check_tensors", "iter_tensors", "quoted", "shown_path"]

_PACKED_4BIT = {
    onnx.TensorProto.INT4,
    onnx.TensorProto.UINT4,
    *(getattr(onnx.TensorProto, n) for n in ("FLOAT4E2M1",) if hasattr(onnx.TensorProto, n)),
}
_PACKED_2BIT = {getattr(onnx.TensorProto, n) for n in ("INT2", "UINT2") if hasattr(onnx.TensorProto, n)}
_COMPLEX = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}
_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")
_HOSTILE_REMEDY = "external data must sit in the model's folder; refusing to read it"


def quoted(text: str, limit: int = 80) -> str:
    """``text`` in single quotes, escaped to one line and shortened (names come from untrusted files)."""
    escaped = text.encode("unicode_escape").decode("ascii").replace("'", "\\'")
    if len(escaped) > limit:
        escaped = escaped[: limit - 3] + "..."
    return f"'{escaped}'"


def shown_path(path: str | os.PathLike) -> str:
    """A path for a one-line message: as is when printable, else escaped and quoted."""
    text = os.fspath(path)
    return text if text.isprintable() else quoted(text, limit=200)


class Where:
    """Where a tensor sits in the file, spelled out only when a message needs it.

    A location is its parent's text, then ``text``, then the quoted ``name`` (if any), then
    ``suffix``. The name may be given as the proto that has it (a node's name is its op type when
    empty), read only when the location is spelled out: building one is cheap, so walking a large
    file describes nothing it does not report.
    """

    __slots__ = ("_parent", "_text", "_name", "_suffix")

    def __init__(self, parent: Where | None, text: str, name: str | Message | None = None, suffix: str = "") -> None:
        self._parent, self._text, self._name, self._suffix = parent, text, name, suffix

    def __str__(self) -> str:
        parent = "" if self._parent is None else str(self._parent)
        name = self._name
        if isinstance(name, onnx.NodeProto):
            name = name.name or name.op_type
        elif isinstance(name, Message):
            name = name.name
        return f"{parent}{self._text}{'' if name is None else quoted(name)}{self._suffix}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    @property
    def in_sparse_initializer(self) -> bool:
        """Whether the tensor is a part (values or indices) of a sparse initializer."""
        return self._text is _SPARSE_INITIALIZER


_SPARSE_INITIALIZER = "sparse initializer "


class TensorFacts(NamedTuple):
    """What ``check_tensors`` saw: whether any tensor is stored externally, any initializer sparse."""

    external: bool
    sparse: bool


def iter_tensors(proto: onnx.ModelProto) -> Iterator[tuple[Where, onnx.TensorProto]]:
    """Every TensorProto in the model with a description of where it sits."""
    yield from _graph_tensors(proto.graph, None)
    for fn in proto.functions:
        yield from _nodes_tensors(fn.node, Where(None, "function ", fn, " "))


def _graph_tensors(graph: onnx.GraphProto, where: Where | None) -> Iterator[tuple[Where, onnx.TensorProto]]:
    for t in graph.initializer:
        yield Where(where, "initializer ", t), t
    for st in graph.sparse_initializer:
        yield Where(where, _SPARSE_INITIALIZER, st.values), st.values
        yield Where(where, _SPARSE_INITIALIZER, st.values, " indices"), st.indices
    yield from _nodes_tensors(graph.node, where)


def _nodes_tensors(nodes: Iterable[onnx.NodeProto], where: Where | None) -> Iterator[tuple[Where, onnx.TensorProto]]:
    for node in nodes:
        attributes = node.attribute
        if attributes:  # most nodes have none: skip the generator
            yield from _node_tensors(node, attributes, where)


def _node_tensors(node: onnx.NodeProto, attributes: Iterable[onnx.AttributeProto], where: Where | None,
                  ) -> Iterator[tuple[Where, onnx.TensorProto]]:
    label = Where(where, "node ", node)
    for attr in attributes:
        if attr.HasField("t"):
            yield Where(label, " attribute ", attr), attr.t
        for t in attr.tensors:
            yield Where(label, " attribute ", attr), t
        if attr.HasField("sparse_tensor"):
            yield Where(label, " attribute ", attr, " values"), attr.sparse_tensor.values
            yield Where(label, " attribute ", attr, " indices"), attr.sparse_tensor.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g, Where(label, " subgraph: "))
        for g in attr.graphs:
            yield from _graph_tensors(g, Where(label, " subgraph: "))


def check_tensors(proto: onnx.ModelProto, model_path: Path) -> TensorFacts:
    """Raises ModelInputError for the first tensor whose data does not match its header.

    Args:
        proto: The parsed model, external data not loaded.
        model_path: The ``.onnx`` file; external data is resolved in its folder.

    Returns:
        Whether any tensor stores its data externally, and whether any initializer is sparse.
    """
    base_dir, file_name = model_path.resolve().parent, model_path.name
    external = sparse = False
    for where, tensor in iter_tensors(proto):
        external |= _check_tensor(tensor, where, base_dir, file_name)
        sparse = sparse or where.in_sparse_initializer
    return TensorFacts(external, sparse)


def _expected_nbytes(data_type: int, numel: int) -> int | None:
    """Bytes of ``raw_data``/external data a header implies; None when not fixed (strings)."""
    if data_type in _PACKED_4BIT:
        return (numel + 1) // 2
    if data_type in _PACKED_2BIT:
        return (numel + 3) // 4
    if data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    itemsize = _itemsize(data_type)
    return None if itemsize is None else numel * itemsize


@functools.cache
def _itemsize(data_type: int) -> int | None:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None


def _expected_typed_count(tensor: onnx.TensorProto, numel: int) -> int:
    """Entries of the typed ``*_data`` field the header implies."""
    if tensor.data_type in _PACKED_4BIT:
        return (numel + 1) // 2
    if tensor.data_type in _PACKED_2BIT:
        return (numel + 3) // 4
    if tensor.data_type in _COMPLEX:
        return 2 * numel
    return numel


def _check_tensor(tensor: onnx.TensorProto, where: Where, base_dir: Path, file_name: str) -> bool:
    """Checks one tensor against its header; returns whether its data is external."""
    where = Where(where, " in ", file_name)
    shape = list(tensor.dims)
    if shape and min(shape) < 0:
        raise ModelInputError(f"{where} has a negative dimension in shape {shape}", "the file is corrupt")
    numel = math.prod(shape)
    expected = _expected_nbytes(tensor.data_type, numel)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        _check_external(tensor, where, base_dir, expected)
        return True
    if tensor.HasField("raw_data"):
        if expected is not None and len(tensor.raw_data) != expected:
            raise ModelInputError(
                f"{where} declares shape {shape} ({expected} bytes) but holds {len(tensor.raw_data)} bytes",
                "the file is corrupt or was truncated",
            )
        return False
    counts = [(field, len(getattr(tensor, field))) for field in _TYPED_FIELDS if len(getattr(tensor, field))]
    if not counts:
        if numel != 0:
            raise ModelInputError(f"{where} declares shape {shape} but holds no data",
                                  "the file is corrupt or was truncated")
        return False
    field, count = counts[0]
    want = _expected_typed_count(tensor, numel)
    if count != want:
        raise ModelInputError(
            f"{where} declares shape {shape} ({want} values) but holds {count} in {field}",
            "the file is corrupt or was truncated",
        )
    return False


def _external_info(tensor: onnx.TensorProto, where: Where) -> tuple[str, int, int | None]:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location:
        raise ModelInputError(f"{where} is stored externally but names no file", "the file is corrupt")
    try:
        offset = int(info.get("offset") or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError as e:
        raise ModelInputError(f"{where} has a non-integer external data offset or length",
                              "the file is corrupt") from e
    if offset < 0 or (length is not None and length < 0):
        raise ModelInputError(f"{where} has a negative external data offset or length", "the file is corrupt")
    return location, offset, length


def _check_external(tensor: onnx.TensorProto, where: Where, base_dir: Path, expected: int | None) -> None:
    location, offset, length = _external_info(tensor, where)
    shown = quoted(location)
    if os.path.isabs(location) or location.startswith(("/", "\\")) or location[1:2] == ":":
        raise ModelInputError(f"{where} points to external data at absolute path {shown}", _HOSTILE_REMEDY)
    if "\x00" in location:
        raise ModelInputError(f"{where} has an external data location {shown} with a NUL byte",
                              "the file is corrupt")
    target = (base_dir / location).resolve()
    if base_dir != target and base_dir not in target.parents:
        raise ModelInputError(f"{where} points to external data {shown}, outside the model's folder",
                              _HOSTILE_REMEDY)
    if (base_dir / location).is_symlink():
        raise ModelInputError(f"{where} reads external data through the symbolic link {shown}",
                              "replace the link by the file itself (the ONNX checker refuses links)")
    if not target.is_file():
        raise ModelInputError(f"{where} needs external data file {shown}, which is missing or not a file",
                              "copy the data file next to the .onnx file")
    stat = target.stat()
    if stat.st_nlink > 1:
        raise ModelInputError(f"{where} reads external data file {shown}, which has {stat.st_nlink} hard links",
                              "onnx_ir refuses hard-linked data files; copy the file instead of linking it")
    if expected is not None and length is not None and length != expected:
        raise ModelInputError(
            f"{where} declares shape {list(tensor.dims)} ({expected} bytes) "
            f"but its external data length is {length}",
            "the file is corrupt",
        )
    need = length if length is not None else expected
    if need is not None and offset + need > stat.st_size:
        raise ModelInputError(
            f"{where} needs bytes {offset}..{offset + need} of {shown}, which has only {stat.st_size}",
            "the external data file is truncated",
        )
