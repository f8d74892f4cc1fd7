"""Scales and zero points: from a real range to integer parameters, and tensors through them.

Linear quantization of a real ``x`` with ``scale > 0`` and integer ``zero_point`` (ONNX
QuantizeLinear/DequantizeLinear)::

    q = saturate(round_half_to_even(x / scale) + zero_point)      # QuantizeLinear
    x' = (q - zero_point) * scale                                  # DequantizeLinear

For a range ``[lo, hi]`` (widened to contain 0, so that zero and zero padding are exact) and an
integer type with bounds ``[qmin, qmax]``:

- asymmetric: ``scale = (hi - lo) / (qmax - qmin)``,
  ``zero_point = clip(round(qmin - lo / scale), qmin, qmax)``;
- symmetric: ``scale = max(|lo|, |hi|) / ((qmax - qmin) / 2)``, zero point 0 for signed types and
  ``(qmax + qmin + 1) / 2`` (128, 32768, 8) for unsigned ones. With ``narrow=True`` a signed type
  drops its lowest value (int8 in [-127, 127], as TensorRT and onnxruntime's s8 weights expect).

A range of zero width gets scale 1 (every value is 0, any scale is exact). Inside the clipped
range the round-trip error of one element is at most ``scale / 2``: the error bound the
quantization passes state.

Per-channel parameters follow ``axis`` (one scale per index along it); blockwise parameters cut
the ``axis`` dimension into blocks of ``block_size`` (the last block may be short) and have the
tensor's shape with that dimension replaced by the number of blocks, as in QuantizeLinear-21.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

__all__ = [
    "INTEGER_BOUNDS",
    "QuantParams",
    "block_ranges",
    "channel_ranges",
    "dequantize",
    "matmul_error_bound",
    "params_for_range",
    "quantize",
    "quantize_blockwise",
    "quantize_weight",
]

#: Integer type -> (qmin, qmax).
INTEGER_BOUNDS: dict[ir.DataType, tuple[int, int]] = {
    ir.DataType.UINT8: (0, 255),
    ir.DataType.INT8: (-128, 127),
    ir.DataType.UINT16: (0, 65535),
    ir.DataType.INT16: (-32768, 32767),
    ir.DataType.UINT4: (0, 15),
    ir.DataType.INT4: (-8, 7),
}

_STORAGE = {
    ir.DataType.UINT8: np.uint8, ir.DataType.INT8: np.int8,
    ir.DataType.UINT16: np.uint16, ir.DataType.INT16: np.int16,
    # 4-bit values are held one per int8/uint8 element; packing is the IR's job on save.
    ir.DataType.UINT4: np.uint8, ir.DataType.INT4: np.int8,
}


@dataclass(frozen=True)
class QuantParams:
    """Quantization parameters of one tensor.

    Attributes:
        scale: float32, 0-d (per tensor), 1-d (per channel along ``axis``) or the blockwise shape.
        zero_point: Same shape as ``scale``, stored in ``dtype``'s numpy type.
        dtype: The integer type.
        axis: Channel or block axis, None per tensor.
        block_size: Block length along ``axis`` for blockwise parameters, else None.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    dtype: ir.DataType
    axis: int | None = None
    block_size: int | None = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None and self.block_size is None

    @property
    def symmetric(self) -> bool:
        """True when the zero point is the type's midpoint (0 for signed types)."""
        qmin, qmax = INTEGER_BOUNDS[self.dtype]
        mid = 0 if qmin < 0 else (qmax + qmin + 1) // 2
        return bool(np.all(self.zero_point.astype(np.int64) == mid))

    def error_bound(self) -> np.ndarray:
        """Largest round-trip error of an element inside the range: ``scale / 2``."""
        return self.scale.astype(np.float64) / 2


def params_for_range(low: np.ndarray | float, high: np.ndarray | float, dtype: ir.DataType, *,
                     symmetric: bool = False, narrow: bool = False, axis: int | None = None,
                     block_size: int | None = None) -> QuantParams:
    """Scale and zero point that map ``[low, high]`` (elementwise for arrays) onto ``dtype``.

    Args:
        low: Lower end(s) of the real range.
        high: Upper end(s); ``high >= low``.
        dtype: An integer type of :data:`INTEGER_BOUNDS`.
        symmetric: Zero point at the type's midpoint; the range becomes ``[-T, T]``.
        narrow: Signed types drop their lowest value (int8 in [-127, 127]).
        axis: The channel/block axis the arrays of ends follow (recorded in the result).
        block_size: Block length when the ends are per block.

    Raises:
        ValueError: ``dtype`` is not an integer quantization type, or a bound is not finite.
    """
    if dtype not in INTEGER_BOUNDS:
        raise ValueError(f"cannot quantize to {dtype.name.lower()}")
    lo = np.minimum(np.asarray(low, np.float64), 0.0)
    hi = np.maximum(np.asarray(high, np.float64), 0.0)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("quantization range is not finite")
    qmin, qmax = INTEGER_BOUNDS[dtype]
    if narrow and qmin < 0:
        qmin += 1
    if symmetric:
        bound = np.maximum(-lo, hi)
        scale = bound / ((qmax - qmin) / 2)
        zero = np.full(scale.shape, 0 if qmin < 0 else (qmax + qmin + 1) // 2, np.float64)
    else:
        scale = (hi - lo) / (qmax - qmin)
        safe = np.where(scale > 0, scale, 1.0)
        zero = np.clip(np.round(qmin - lo / safe), qmin, qmax)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    # float32 rounding may make the scale denormal-small; keep it a usable positive number
    scale = np.maximum(scale, np.finfo(np.float32).tiny)
    return QuantParams(scale, zero.astype(_STORAGE[dtype]), dtype, axis, block_size)


def _broadcast(params: QuantParams, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scale, zero = params.scale.astype(np.float32), params.zero_point.astype(np.float32)
    if params.axis is not None and params.block_size is None and scale.ndim == 1:
        shape = [1] * ndim
        shape[params.axis % ndim] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return scale, zero


def _block_views(array: np.ndarray, axis: int, block_size: int) -> list[np.ndarray]:
    """Views of ``array`` in blocks along ``axis``, never copies.

    The axis is moved last and cut into its whole blocks, ``(..., blocks, block_size)`` (possibly
    no blocks), then the short last block if any, ``(..., 1, rest)``. Writing into a view writes into ``array``.
    """
    moved = np.moveaxis(array, axis, -1)
    whole, rest = divmod(moved.shape[-1], block_size)
    lead = moved.shape[:-1]
    # splitting one axis in two is always possible by strides alone
    views = [moved[..., :whole * block_size].reshape(*lead, whole, block_size)]
    if rest:
        views.append(moved[..., whole * block_size:].reshape(*lead, 1, rest))
    assert all(np.may_share_memory(view, array) for view in views if view.size)
    return views


def _parts(array: np.ndarray, params: QuantParams) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(view of array, its scale, its zero point)`` with the parameters broadcastable to the view.

    Blockwise parameters are matched to :func:`_block_views` (one per block, along a new last
    axis) instead of being expanded to the size of ``array``.
    """
    scale, zero = _broadcast(params, array.ndim)
    if params.block_size is None:
        yield array, scale, zero
        return
    axis = params.axis % array.ndim
    scale, zero = np.moveaxis(scale, axis, -1)[..., None], np.moveaxis(zero, axis, -1)[..., None]
    start = 0
    for view in _block_views(array, axis, params.block_size):
        stop = start + view.shape[-2]
        yield view, scale[..., start:stop, :], zero[..., start:stop, :]
        start = stop


#: ``quantize`` works through a large tensor in float32 slices of about this many bytes.
QUANTIZE_CHUNK_BYTES = 4 * 2**20


def quantize(x: np.ndarray, params: QuantParams) -> np.ndarray:
    """``x`` through QuantizeLinear with ``params`` (round half to even, saturate).

    Works in a float32 copy of one slice of ``x`` at a time (``QUANTIZE_CHUNK_BYTES``), in place,
    so quantizing a large weight costs its integer result plus one slice, not a float copy of it.
    """
    x = np.asarray(x)
    out = np.empty(x.shape, _STORAGE[params.dtype])
    for rows, part_params in _row_slices(x, params):
        out[rows] = _quantize_whole(x[rows], part_params)
    return out


def _quantize_whole(x: np.ndarray, params: QuantParams) -> np.ndarray:
    qmin, qmax = INTEGER_BOUNDS[params.dtype]
    work = np.array(x, dtype=np.float32)
    for part, scale, zero in _parts(work, params):
        np.divide(part, scale, out=part)
        np.rint(part, out=part)
        part += zero
        np.clip(part, qmin, qmax, out=part)
    return work.astype(_STORAGE[params.dtype])


def _row_slices(x: np.ndarray, params: QuantParams) -> Iterator[tuple[tuple[slice, ...], QuantParams]]:
    """Slices of ``x`` along an axis other than the quantization axis, with the parameters of each.

    The whole of ``x`` in one piece when it is small, or cannot be cut so that each slice keeps its
    parameters (a vector quantized along its only axis).
    """
    axis = None if params.axis is None else params.axis % max(x.ndim, 1)
    cut = next((i for i in range(x.ndim) if i != axis and x.shape[i] > 1), None)
    if cut is None or x.size * 4 <= QUANTIZE_CHUNK_BYTES:
        yield (slice(None),) * x.ndim, params
        return
    full = params.scale.ndim == x.ndim and params.scale.shape[cut] == x.shape[cut]
    kept = params.scale.ndim == 0 or (params.scale.ndim == 1 and axis is not None and params.block_size is None) \
        or (params.scale.ndim == x.ndim and params.scale.shape[cut] == 1)
    if not (full or kept):
        yield (slice(None),) * x.ndim, params
        return
    step = max(1, QUANTIZE_CHUNK_BYTES // (4 * (x.size // x.shape[cut])))
    for start in range(0, x.shape[cut], step):
        rows = (slice(None),) * cut + (slice(start, start + step),)
        if full:  # parameters with the tensor's rank (blockwise) are cut with it
            part = QuantParams(params.scale[rows], params.zero_point[rows], params.dtype, params.axis,
                               params.block_size)
        else:
            part = params
        yield rows, part


def dequantize(q: np.ndarray, params: QuantParams) -> np.ndarray:
    """``q`` through DequantizeLinear with ``params`` (float32), computed in place in the result."""
    out = np.asarray(q).astype(np.float32)
    for part, scale, zero in _parts(out, params):
        part -= zero
        part *= scale
    return out


def channel_ranges(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(min, max)`` of ``weight`` along ``axis`` (1-d arrays)."""
    axis %= weight.ndim
    others = tuple(i for i in range(weight.ndim) if i != axis)
    return weight.min(axis=others), weight.max(axis=others)


def block_ranges(weight: np.ndarray, axis: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-block ``(min, max)`` along ``axis``; shape of ``weight`` with ``axis`` cut into blocks.

    The last block may be short: its extremes are those of its own elements.
    """
    axis %= weight.ndim
    views = _block_views(weight, axis, block_size)
    low = np.concatenate([view.min(axis=-1) for view in views], axis=-1)
    high = np.concatenate([view.max(axis=-1) for view in views], axis=-1)
    return np.moveaxis(low, -1, axis), np.moveaxis(high, -1, axis)


def quantize_weight(weight: np.ndarray, dtype: ir.DataType, *, axis: int | None = None, symmetric: bool = True,
                    narrow: bool = False) -> tuple[np.ndarray, QuantParams]:
    """Quantizes a constant weight per tensor (``axis=None``) or per channel along ``axis``.

    Returns:
        ``(integers, params)``.
    """
    weight = np.asarray(weight, np.float32)
    if axis is None:
        params = params_for_range(weight.min(initial=0.0), weight.max(initial=0.0), dtype,
                                  symmetric=symmetric, narrow=narrow)
    else:
        low, high = channel_ranges(weight, axis)
        params = params_for_range(low, high, dtype, symmetric=symmetric, narrow=narrow, axis=axis % weight.ndim)
    return quantize(weight, params), params


def quantize_blockwise(weight: np.ndarray, dtype: ir.DataType, *, axis: int, block_size: int,
                       symmetric: bool = True) -> tuple[np.ndarray, QuantParams]:
    """Quantizes a constant weight with one scale per block of ``block_size`` along ``axis`` (RTN).

    Returns:
        ``(integers, params)`` with blockwise ``params``.
    """
    weight = np.asarray(weight, np.float32)
    low, high = block_ranges(weight, axis, block_size)
    params = params_for_range(low, high, dtype, symmetric=symmetric, axis=axis % weight.ndim, block_size=block_size)
    return quantize(weight, params), params


def matmul_error_bound(a_abs: np.ndarray, w_abs: np.ndarray, a_step: float | np.ndarray,
                       w_step: np.ndarray) -> np.ndarray:
    """Elementwise bound on ``|A @ W - A' @ W'|`` when ``A'`` and ``W'`` went through Q/DQ.

    With ``|A - A'| <= a_step / 2`` and ``|W - W'| <= w_step / 2`` (elementwise, ``w_step``
    broadcast to ``W``'s ``[K, N]`` shape: per tensor, per column or per block)::

        |A W - A' W'| <= |A - A'| |W| + |A'| |W - W'|
                      <= a_step / 2 * sum_k |W[k, n]| + sum_k (|A[m, k]| + a_step / 2) * w_step[k, n] / 2

    Args:
        a_abs: ``|A|``, shape ``[..., K]``.
        w_abs: ``|W|``, shape ``[K, N]``.
        a_step: Step (scale) of ``A``'s quantization; 0 when ``A`` stays in float.
        w_step: Steps of ``W``'s quantization, broadcastable to ``[K, N]``.

    Returns:
        The bound, shape ``[..., N]`` (float64; add float32 accumulation error when comparing).
    """
    a_abs = np.asarray(a_abs, np.float64)
    w_abs = np.asarray(w_abs, np.float64)
    a_half = np.asarray(a_step, np.float64) / 2
    w_half = np.broadcast_to(np.asarray(w_step, np.float64), w_abs.shape) / 2
    return a_half * w_abs.sum(axis=0) + (a_abs + a_half) @ w_half
