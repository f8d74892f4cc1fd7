"""Reading a large model file without holding its weights twice.

Parsing a ``.onnx`` file needs the file's bytes and then the parsed ModelProto, each as large as
the weights, and giving the tensors arrays of their own copies them again while the proto is
alive. ``read_skeleton`` instead reads the file's protobuf wire format field by field and returns
the model's bytes with the large ``raw_data`` of each main-graph initializer replaced by an
external-data reference to those very bytes in the model file (location, offset, length), so
the parsed proto is small; ``load`` then reads each such tensor straight from the file into its
own array (``is_self_reference``). Anything off the plain layout (a repeated graph or raw_data
field, groups, a tensor already external or whose data does not match its header) is left as it
is: inline, and checked as before.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import onnx
import onnx_ir as ir

from onnxsmith.ir._validate import _expected_nbytes

__all__ = ["SKELETON_MIN_RAW_BYTES", "is_self_reference", "read_skeleton"]

#: Initializer data of at least this many bytes is referenced in place instead of copied.
SKELETON_MIN_RAW_BYTES = 4096

_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_DIMS, _DATA_TYPE, _RAW_DATA, _EXTERNAL_DATA, _DATA_LOCATION = 1, 2, 9, 13, 14
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class _Layout(Exception):
    """The file is not in the plain layout this reader handles; it is read whole instead."""


def read_skeleton(path: Path) -> bytes | None:
    """The model's bytes with large initializer data referenced in the file, or None to read it whole."""
    if path.is_symlink() or path.stat().st_nlink > 1:  # the reference must name the file itself
        return None
    with open(path, "rb") as file:
        reader = _Reader(file, path.stat().st_size)
        try:
            return _model(reader, path.name)
        except _Layout:
            return None


def is_self_reference(tensor: ir.TensorProtocol, path: Path) -> bool:
    """Whether ``tensor`` is one of the references ``read_skeleton`` made into the model file at ``path``."""
    return isinstance(tensor, ir.ExternalTensor) and Path(tensor.path) == path.resolve()


class _Reader:
    def __init__(self, file: io.BufferedReader, size: int) -> None:
        self.file, self.size = file, size

    def read(self, offset: int, length: int) -> bytes:
        if offset + length > self.size:
            raise _Layout
        self.file.seek(offset)
        return self.file.read(length)

    def fields(self, start: int, stop: int):
        """``(number, wire_type, field_start, payload_start, payload_stop)`` of each field in a range."""
        offset = start
        while offset < stop:
            tag, payload = self.varint(offset)
            number, wire = tag >> 3, tag & 7
            if wire == _VARINT:
                end = self.varint(payload)[1]
            elif wire == _FIXED64:
                end = payload + 8
            elif wire == _FIXED32:
                end = payload + 4
            elif wire == _LENGTH:
                length, payload = self.varint(payload)
                end = payload + length
            else:
                raise _Layout
            if end > stop:
                raise _Layout
            yield number, wire, offset, payload, end
            offset = end

    def varint(self, offset: int) -> tuple[int, int]:
        """``(value, offset after it)``."""
        data = self.read(offset, min(10, self.size - offset))
        value = 0
        for i, byte in enumerate(data):
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value, offset + i + 1
        raise _Layout


def _model(reader: _Reader, location: str) -> bytes:
    out, graphs = bytearray(), 0
    for number, wire, start, payload, end in reader.fields(0, reader.size):
        if number == _MODEL_GRAPH and wire == _LENGTH:
            graphs += 1
            if graphs > 1:  # repeated message fields merge; leave that to protobuf
                raise _Layout
            out += _length_field(_MODEL_GRAPH, _graph(reader, payload, end, location))
        else:
            out += reader.read(start, end - start)
    return bytes(out)


def _graph(reader: _Reader, start: int, stop: int, location: str) -> bytes:
    out = bytearray()
    for number, wire, field_start, payload, end in reader.fields(start, stop):
        if number == _GRAPH_INITIALIZER and wire == _LENGTH:
            out += _length_field(_GRAPH_INITIALIZER, _tensor(reader, payload, end, location))
        else:
            out += reader.read(field_start, end - field_start)
    return bytes(out)


def _tensor(reader: _Reader, start: int, stop: int, location: str) -> bytes:
    """The tensor's bytes, its large raw_data replaced by a reference when its layout is plain."""
    kept, raw, dims, data_type, plain = bytearray(), [], [], 0, True
    for number, wire, field_start, payload, end in reader.fields(start, stop):
        if number == _RAW_DATA and wire == _LENGTH:
            raw.append((payload, end - payload))
            continue
        if number in (_EXTERNAL_DATA, _DATA_LOCATION):
            plain = False
        elif number == _DIMS and wire == _VARINT:
            dims.append(_signed(reader.varint(payload)[0]))
        elif number == _DIMS and wire == _LENGTH:
            offset = payload
            while offset < end:
                value, offset = reader.varint(offset)
                dims.append(_signed(value))
        elif number == _DATA_TYPE and wire == _VARINT:
            data_type = reader.varint(payload)[0]
        kept += reader.read(field_start, end - field_start)
    if not plain or len(raw) != 1 or raw[0][1] < SKELETON_MIN_RAW_BYTES or raw[0][1] != _nbytes(data_type, dims):
        return reader.read(start, stop - start)
    offset, length = raw[0]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        kept += _length_field(_EXTERNAL_DATA, _length_field(1, key.encode()) + _length_field(2, value.encode()))
    kept += _varint(_DATA_LOCATION << 3 | _VARINT) + _varint(onnx.TensorProto.EXTERNAL)
    return bytes(kept)


def _nbytes(data_type: int, dims: list[int]) -> int | None:
    """Bytes of raw data the header implies (as the header check computes them), None if not fixed."""
    if min(dims, default=0) < 0:
        return None
    return _expected_nbytes(data_type, math.prod(dims))


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LENGTH) + _varint(len(payload)) + payload
