"""The storage layout of onnxruntime's ``com.microsoft::MatMulNBits`` weights.

For a weight ``W [K, N]`` quantized in blocks of ``block_size`` along ``K`` (``k_blocks =
ceil(K / block_size)``), MatMulNBits takes the transposed integers, column by column:

- ``B``: uint8 ``[N, k_blocks, block_size * bits / 8]``; within a byte the element with the lower
  ``K`` index sits in the low bits (two 4-bit values per byte, one 8-bit value per byte). The last
  block is padded to ``block_size`` with the zero point, which dequantizes to 0.
- ``scales``: ``[N, k_blocks]``, the type of ``A``.
- ``zero_points`` (optional, default ``2^(bits - 1)``): uint8 ``[N, ceil(k_blocks * bits / 8)]``,
  packed along ``k_blocks`` the same way.

``com.microsoft::GatherBlockQuantized`` packs its uint8 ``data`` and ``zero_points`` the same way,
along their last axis (:func:`pack_pairs`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["pack_blocks", "pack_pairs", "pack_zero_points"]


def pack_pairs(values: np.ndarray, bits: int) -> np.ndarray:
    """uint8 values along the last axis packed ``8 // bits`` per byte, lowest index in the low bits.

    8-bit values come back as they are when already a contiguous uint8 array (no copy).
    """
    values = np.ascontiguousarray(values, dtype=np.uint8)
    if bits == 8:
        return values
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros((*values.shape[:-1], 1), np.uint8)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def pack_blocks(q: np.ndarray, bits: int, block_size: int, zero_point: np.ndarray) -> np.ndarray:
    """``B`` for the integers ``q [K, N]`` (values in ``[0, 2^bits)``).

    Args:
        q: Quantized weight, ``[K, N]``.
        bits: 4 or 8.
        block_size: Block length along ``K``.
        zero_point: ``[k_blocks, N]``; pads the last block.
    """
    k, n = q.shape
    blocks = -(-k // block_size)
    padded = np.repeat(zero_point.astype(np.uint8).T, block_size, axis=1)  # [N, k_blocks * block_size]
    padded[:, :k] = q.T
    return pack_pairs(padded.reshape(n, blocks, block_size), bits)


def pack_zero_points(zero_point: np.ndarray, bits: int) -> np.ndarray:
    """``zero_points`` for per-block zero points ``[k_blocks, N]``."""
    return pack_pairs(zero_point.T, bits)
