"""``dedup-initializers``: make byte-identical initializers one.

Semantics: two initializers of one graph with the same dtype, shape and bytes hold the same
tensor, so every use of the later one reads the earlier one and the later one is dropped.
Comparison is exact (bytes, so ``-0.0`` and ``0.0`` stay apart and NaNs with equal bits merge).

Cost: tensors are first grouped by (dtype, shape) from their headers; only groups with two or
more members are read at all. Tensors up to ``inline-size`` bytes are keyed by their bytes. Larger
ones are keyed by their first 64 KiB (distinct weights almost always differ there, so most are
never read further), then, among those sharing a prefix, by a BLAKE2b digest, and a match is
confirmed by a byte comparison. Everything is read in chunks, external data straight from its
file, so nothing is mapped or held in memory. Tensors larger than ``max-size`` bytes are never
read. Graph inputs (overridable) and graph outputs are left alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.base import ALL, Pass, PassContext, PassResult
from onnxsmith.passes.cleanup._constants import string_items, tensor_nbytes
from onnxsmith.passes.cleanup._graphs import all_graphs
from onnxsmith.passes.registry import register_pass

__all__ = ["DedupInitializers", "DedupInitializersOptions"]

_CHUNK = 1 << 22
_PREFIX = 1 << 16
_LITTLE_ENDIAN = sys.byteorder == "little"


@dataclass
class DedupInitializersOptions:
    """Options of ``dedup-initializers``.

    Attributes:
        max_size: Tensors larger than this many bytes are never compared (nor read).
        inline_size: Tensors up to this many bytes are compared by their bytes, larger ones by digest.
    """

    max_size: int = 64 << 20
    inline_size: int = 4096


@register_pass
class DedupInitializers(Pass):
    """Merge initializers with identical dtype, shape and bytes.

    See the module docstring for how large and external tensors are compared.
    """

    name = "dedup-initializers"
    Options = DedupInitializersOptions
    preserves = ALL

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        removed = saved = 0
        for graph in all_graphs(model, functions=False):
            for group in _candidate_groups(graph, self.options.max_size):
                for duplicate, original in self._duplicates(group):
                    saved += tensor_nbytes(duplicate.const_value)  # type: ignore[arg-type]
                    duplicate.replace_all_uses_with(original)
                    assert duplicate.name is not None
                    graph.initializers.pop(duplicate.name)
                    removed += 1
        return PassResult(removed > 0, {"removed_initializers": removed, "saved_bytes": saved})

    def _duplicates(self, group: list[ir.Value]) -> Iterator[tuple[ir.Value, ir.Value]]:
        """(duplicate, original) pairs within one (dtype, shape) group; originals come first in graph order."""
        small: dict[bytes, list[ir.Value]] = {}
        large: dict[bytes, list[ir.Value]] = {}
        for value in group:
            tensor = value.const_value
            assert tensor is not None
            if tensor_nbytes(tensor) <= self.options.inline_size:
                small.setdefault(_small_bytes(tensor), []).append(value)
            else:
                large.setdefault(bytes(next(_chunks(tensor, _PREFIX), b"")), []).append(value)
        for values in small.values():
            yield from ((v, values[0]) for v in values[1:])
        for values in large.values():
            if len(values) > 1:
                yield from _large_duplicates(values)


def _candidate_groups(graph: ir.Graph, max_size: int) -> list[list[ir.Value]]:
    """Initializers that could have a twin, grouped by (dtype, shape), from headers only."""
    groups: dict[tuple, list[ir.Value]] = {}
    for value in graph.initializers.data.values():
        tensor = value.const_value
        if tensor is None or value.is_graph_input() or value.is_graph_output():
            continue
        if tensor_nbytes(tensor) > max_size:
            continue
        groups.setdefault((tensor.dtype, tuple(tensor.shape.dims)), []).append(value)
    return [g for g in groups.values() if len(g) > 1]


def _large_duplicates(values: list[ir.Value]) -> Iterator[tuple[ir.Value, ir.Value]]:
    """(duplicate, original) pairs among large tensors: digest first, then exact bytes."""
    by_digest: dict[bytes, list[ir.Value]] = {}
    for value in values:
        originals = by_digest.setdefault(_digest(value.const_value), [])  # type: ignore[arg-type]
        match = next((o for o in originals if _same_bytes(o.const_value, value.const_value)), None)  # type: ignore[arg-type]
        if match is None:
            originals.append(value)
        else:
            yield value, match


def _small_bytes(tensor: ir.TensorProtocol) -> bytes:
    """All bytes of a small tensor, as ``_chunks`` gives them (the little-endian array bytes)."""
    if _LITTLE_ENDIAN and type(tensor) is ir.serde.TensorProtoTensor and tensor.raw.HasField("raw_data") \
            and tensor.dtype != ir.DataType.STRING and tensor.dtype.bitwidth >= 8:
        return tensor.raw.raw_data  # already the array's bytes (not packed 4-bit data): no array built
    return b"".join(_chunks(tensor))


def _chunks(tensor: ir.TensorProtocol, size: int = _CHUNK) -> Iterator[bytes | memoryview]:
    """The tensor's bytes in chunks of ``size``; external data is read from its file, never mapped."""
    if isinstance(tensor, ir.ExternalTensor) and tensor.length is not None:
        with open(tensor.path, "rb") as f:
            f.seek(tensor.offset or 0)
            left = tensor.length
            while left > 0:
                chunk = f.read(min(size, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        return
    if tensor.dtype == ir.DataType.STRING:
        for item in string_items(tensor):  # length-prefixed, so that ("ab", "c") != ("a", "bc")
            yield len(item).to_bytes(8, "little") + item
        return
    array = tensor.numpy()
    data = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _digest(tensor: ir.TensorProtocol) -> bytes:
    import hashlib  # here, not at module level: importing it loads OpenSSL (3.5 MiB); most runs never digest

    h = hashlib.blake2b(digest_size=32)
    for chunk in _chunks(tensor):
        h.update(chunk)
    return h.digest()


def _same_bytes(a: ir.TensorProtocol | None, b: ir.TensorProtocol) -> bool:
    if a is None:
        return False
    left, right = _chunks(a), _chunks(b)
    buffer_a = buffer_b = b""
    while True:
        if not buffer_a:
            buffer_a = bytes(next(left, b""))
        if not buffer_b:
            buffer_b = bytes(next(right, b""))
        if not buffer_a or not buffer_b:
            return not buffer_a and not buffer_b
        n = min(len(buffer_a), len(buffer_b))
        if buffer_a[:n] != buffer_b[:n]:
            return False
        buffer_a, buffer_b = buffer_a[n:], buffer_b[n:]
