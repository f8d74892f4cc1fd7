"""Numpy implementations of the ONNX ops that constant subgraphs are mostly made of.

Exporters compute shapes and small constants with Shape/Gather/Concat/Unsqueeze/Reshape/Cast and
integer arithmetic; evaluating those in numpy is much faster than building an onnxruntime
session per node. Every kernel here is *exact* with respect to onnxruntime: only data movement,
comparisons, integer arithmetic and correctly rounded IEEE operations (+, -, *, /, sqrt) are
implemented. Anything else (transcendentals, reductions, MatMul, float Range, NaN-sensitive
Min/Max) raises :class:`Unsupported` and is left to onnxruntime.

A kernel takes ``(node, inputs, opset)`` where ``inputs`` are numpy arrays (None for a missing
optional input) and ``opset`` is the default-domain opset version, and returns the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx_ir as ir

__all__ = ["KERNELS", "Unsupported"]


class Unsupported(Exception):
    """The numpy kernel cannot evaluate this node exactly; use another evaluator."""


Arrays = Sequence[np.ndarray | None]
Kernel = Callable[[ir.Node, Arrays, int], list[np.ndarray]]

KERNELS: dict[str, Kernel] = {}

_PLAIN = frozenset(np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.float16, np.float32, np.float64,
))


def _kernel(*op_types: str) -> Callable[[Kernel], Kernel]:
    def register(fn: Kernel) -> Kernel:
        for op_type in op_types:
            KERNELS[op_type] = fn
        return fn

    return register


def _plain(*arrays: np.ndarray | None) -> None:
    for a in arrays:
        if a is not None and a.dtype not in _PLAIN:
            raise Unsupported(f"dtype {a.dtype}")


def _ints(node: ir.Node, name: str, default: list[int] | None = None) -> list[int] | None:
    attr = node.attributes.get(name)
    if attr is None:
        return default
    if attr.is_ref():
        raise Unsupported("attribute reference")
    return list(attr.as_ints())


def _int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    if attr is None:
        return default
    if attr.is_ref():
        raise Unsupported("attribute reference")
    return attr.as_int()


def _axes(node: ir.Node, inputs: Arrays, index: int, opset: int, since: int) -> list[int] | None:
    """Axes from the attribute (before opset ``since``) or from input ``index``."""
    if opset < since:
        return _ints(node, "axes")
    value = inputs[index] if len(inputs) > index else None
    return None if value is None else [int(a) for a in value.reshape(-1)]


def _normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise Unsupported(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


@_kernel("Identity")
def _identity(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    return [inputs[0]]


@_kernel("Dropout")
def _dropout(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    # Callers only evaluate Dropout when it is known to run in inference mode.
    x = inputs[0]
    return [x, np.ones(x.shape, dtype=np.bool_)][: len(node.outputs)]


def _cast_to(x: np.ndarray, target: np.dtype) -> np.ndarray:
    _plain(x)
    if target not in _PLAIN:
        raise Unsupported(f"cast to {target}")
    if x.dtype.kind == "f" and target.kind in "iub" and not np.all(np.isfinite(x)):
        raise Unsupported("cast of a non-finite float to an integer or bool")
    if x.dtype.kind == "f" and target.kind in "iu":
        info = np.iinfo(target)
        if x.size and (np.min(x) < info.min or np.max(x) > info.max):
            raise Unsupported("cast out of the integer range")
    return x.astype(target)


@_kernel("Cast")
def _cast(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    return [_cast_to(inputs[0], ir.DataType(_int(node, "to", 0)).numpy())]


@_kernel("CastLike")
def _cast_like(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    return [_cast_to(inputs[0], inputs[1].dtype)]


@_kernel("Shape")
def _shape(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    dims = inputs[0].shape
    start, end = _int(node, "start", 0), node.attributes.get("end")
    stop = len(dims) if end is None else end.as_int()
    return [np.array(dims[slice(start, stop)], dtype=np.int64)]


@_kernel("Size")
def _size(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    return [np.array(inputs[0].size, dtype=np.int64)]


@_kernel("Reshape")
def _reshape(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    if opset < 5:
        raise Unsupported("Reshape-1 takes its shape as an attribute")
    target = [int(d) for d in inputs[1].reshape(-1)]
    if not _int(node, "allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return [x.reshape(target)]


@_kernel("Flatten")
def _flatten(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axis = _int(node, "axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return [x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))]


@_kernel("Unsqueeze")
def _unsqueeze(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axes = _axes(node, inputs, 1, opset, 13) or []
    rank = x.ndim + len(axes)
    return [np.expand_dims(x, tuple(sorted(_normalize_axis(a, rank) for a in axes)))]


@_kernel("Squeeze")
def _squeeze(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axes = _axes(node, inputs, 1, opset, 13)
    if axes is None:
        return [np.squeeze(x)]
    axes = [_normalize_axis(a, x.ndim) for a in axes]
    if any(x.shape[a] != 1 for a in axes):
        raise Unsupported("squeezing a dimension that is not 1")
    return [np.squeeze(x, tuple(axes))]


@_kernel("Concat")
def _concat(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    arrays = [a for a in inputs if a is not None]
    if len({a.dtype for a in arrays}) != 1:
        raise Unsupported("mixed dtypes")
    return [np.concatenate(arrays, axis=_normalize_axis(_int(node, "axis", 0), arrays[0].ndim))]


@_kernel("Gather")
def _gather(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    data, indices = inputs[0], inputs[1]
    axis = _normalize_axis(_int(node, "axis", 0), data.ndim)
    dim = data.shape[axis]
    if indices.size and (indices.min() < -dim or indices.max() >= dim):
        raise Unsupported("index out of range")
    return [np.take(data, np.where(indices < 0, indices + dim, indices).astype(np.int64), axis=axis)]


def _slice_bounds(start: int, end: int, step: int, dim: int) -> slice:
    """ONNX Slice clamping rules turned into a Python slice."""
    if step == 0:
        raise Unsupported("slice step 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        return slice(start, end, step)
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return slice(start, None if end < 0 else end, step)


@_kernel("Slice")
def _slice(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    if opset < 10:
        starts, ends = _ints(node, "starts") or [], _ints(node, "ends") or []
        axes, steps = _ints(node, "axes"), [1] * len(starts)
    else:
        starts = [int(v) for v in inputs[1].reshape(-1)]
        ends = [int(v) for v in inputs[2].reshape(-1)]
        axes_input = inputs[3] if len(inputs) > 3 else None
        axes = None if axes_input is None else [int(v) for v in axes_input.reshape(-1)]
        step_input = inputs[4] if len(inputs) > 4 else None
        steps = [1] * len(starts) if step_input is None else [int(v) for v in step_input.reshape(-1)]
    axes = list(range(len(starts))) if axes is None else [_normalize_axis(a, x.ndim) for a in axes]
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        index[axis] = _slice_bounds(start, end, step, x.shape[axis])
    return [x[tuple(index)]]


@_kernel("Split")
def _split(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axis = _normalize_axis(_int(node, "axis", 0), x.ndim)
    dim, parts = x.shape[axis], len(node.outputs)
    if opset < 13:
        sizes = _ints(node, "split")
    else:
        sizes = None if len(inputs) < 2 or inputs[1] is None else [int(v) for v in inputs[1].reshape(-1)]
    if sizes is None:
        chunk = -(-dim // parts)
        if opset < 18 and dim % parts:
            raise Unsupported("uneven split before opset 18")
        sizes = [min(chunk, dim - i * chunk) for i in range(parts)]
    if sum(sizes) != dim or len(sizes) != parts:
        raise Unsupported("split sizes do not add up")
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


@_kernel("Transpose")
def _transpose(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    perm = _ints(node, "perm")
    return [np.transpose(inputs[0], perm)]


def _same_dtype(*arrays: np.ndarray) -> np.dtype:
    _plain(*arrays)
    if len({a.dtype for a in arrays}) != 1:
        raise Unsupported("operands of different dtypes")
    return arrays[0].dtype


def _elementwise(fn: Callable[..., np.ndarray]) -> Kernel:
    def kernel(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
        dtype = _same_dtype(*inputs)
        with np.errstate(all="ignore"):
            return [np.asarray(fn(*inputs)).astype(dtype, copy=False)]

    return kernel


KERNELS["Add"] = _elementwise(np.add)
KERNELS["Sub"] = _elementwise(np.subtract)
KERNELS["Mul"] = _elementwise(np.multiply)
KERNELS["Neg"] = _elementwise(np.negative)
KERNELS["Abs"] = _elementwise(np.abs)


def _float_only(fn: Callable[..., np.ndarray]) -> Kernel:
    inner = _elementwise(fn)

    def kernel(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
        if inputs[0].dtype.kind != "f":
            raise Unsupported("integer input")
        return inner(node, inputs, opset)

    return kernel


# Correctly rounded in IEEE 754, hence identical to onnxruntime.
KERNELS["Sqrt"] = _float_only(np.sqrt)
KERNELS["Reciprocal"] = _float_only(np.reciprocal)
KERNELS["Floor"] = _float_only(np.floor)
KERNELS["Ceil"] = _float_only(np.ceil)


@_kernel("Div")
def _div(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    a, b = inputs
    dtype = _same_dtype(a, b)
    if dtype.kind == "f":
        with np.errstate(all="ignore"):
            return [np.divide(a, b).astype(dtype, copy=False)]
    if np.any(b == 0):
        raise Unsupported("integer division by zero")
    # ONNX integer division truncates toward zero (C semantics); numpy floors.
    quotient = np.floor_divide(a, b)
    inexact = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return [(quotient + inexact.astype(dtype)).astype(dtype, copy=False)]


def _compare(fn: Callable[..., np.ndarray]) -> Kernel:
    def kernel(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
        _same_dtype(*inputs)
        return [np.asarray(fn(*inputs), dtype=np.bool_)]

    return kernel


for _op, _fn in (("Equal", np.equal), ("Less", np.less), ("Greater", np.greater),
                 ("LessOrEqual", np.less_equal), ("GreaterOrEqual", np.greater_equal),
                 ("And", np.logical_and), ("Or", np.logical_or), ("Xor", np.logical_xor), ("Not", np.logical_not)):
    KERNELS[_op] = _compare(_fn)


@_kernel("Where")
def _where(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    cond, a, b = inputs
    dtype = _same_dtype(a, b)
    return [np.where(cond, a, b).astype(dtype, copy=False)]


@_kernel("Max", "Min")
def _min_max(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    dtype = _same_dtype(*inputs)
    if dtype.kind not in "iub":
        raise Unsupported("float Min/Max (NaN handling differs between implementations)")
    fn = np.maximum if node.op_type == "Max" else np.minimum
    out = inputs[0]
    for a in inputs[1:]:
        out = fn(out, a)
    return [np.asarray(out, dtype=dtype)]


@_kernel("Sum")
def _sum(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    dtype = _same_dtype(*inputs)
    out = inputs[0]
    with np.errstate(all="ignore"):
        for a in inputs[1:]:
            out = np.add(out, a)
    return [np.asarray(out).astype(dtype, copy=False)]


@_kernel("Range")
def _range(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    start, limit, delta = (np.asarray(a).reshape(()) for a in inputs)
    dtype = _same_dtype(start, limit, delta)
    if dtype.kind not in "iu":
        raise Unsupported("float Range (onnxruntime accumulates, numpy multiplies)")
    if delta == 0:
        raise Unsupported("Range with delta 0")
    count = max(-(-(int(limit) - int(start)) // int(delta)), 0)
    return [(int(start) + int(delta) * np.arange(count, dtype=np.int64)).astype(dtype)]


@_kernel("ConstantOfShape")
def _constant_of_shape(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    attr = node.attributes.get("value")
    fill = np.zeros(1, np.float32) if attr is None else attr.as_tensor().numpy().reshape(-1)
    _plain(fill)
    return [np.full([int(d) for d in inputs[0].reshape(-1)], fill[0], dtype=fill.dtype)]


@_kernel("Expand")
def _expand(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    x, shape = inputs
    target = np.broadcast_shapes(x.shape, tuple(int(d) for d in shape.reshape(-1)))
    return [np.array(np.broadcast_to(x, target))]


@_kernel("Tile")
def _tile(node: ir.Node, inputs: Arrays, opset: int) -> list[np.ndarray]:
    x, repeats = inputs[0], inputs[1]
    if repeats.size != x.ndim:
        raise Unsupported("repeats do not match the rank")
    return [np.tile(x, [int(r) for r in repeats.reshape(-1)])]
