"""Embedding tables (``Gather`` of rows of a constant float table) stored as integers.

A table ``E [V, H]`` is quantized per tensor, per row, or per block of ``block_size`` elements of
a row (round to nearest, each group in its own range, nothing clipped)::

    E'[v, h] = (q[v, h] - zp[v, b]) * s[v, b]        b = h // block_size   (per row: one block)

A lookup gathers the integer rows first and dequantizes only those, never the whole table, so
``Gather(E, ids)`` becomes exactly ``E'[ids]``: every form below computes ``(q - zp) * s`` in
float32 for the gathered elements, bit for bit what ``DequantizeLinear`` of the table gives, and
the error is the table's own: ``|E - E'| <= s / 2`` per element.

Forms, with their cost measured with onnxruntime 1.32 (1 thread) on MiniLM's word embeddings
(30522 x 384) for 16 / 128 ids; a float ``Gather`` takes 5 / 9 us:

- :func:`gather_block_quantized`: one ``com.microsoft::GatherBlockQuantized`` (``cpu``) on a uint8
  table (8 bits, or two 4-bit values per byte with the lower column in the low bits): 7 / 23 us
  (4-bit: 12 / 72 us; its int4-typed variant took 75 / 568 us and is not used). Per row is one
  block of the next power of two >= ``H``, the kernel's block sizes being powers of two >= 16.
- :func:`gather_scaled_rows`: ``Mul(Cast(Gather(q, ids)) [- Gather(zp, ids)], Gather(s, ids))``
  with ``s`` and ``zp`` stored ``[V, 1]``: per row in standard ONNX at any opset, 7 / 17 us.
- :func:`gather_dequantize`: ``DequantizeLinear(Gather(q, ids), ...)``; per tensor with scalar
  parameters (the form of ``onnxruntime.quantization.quantize_dynamic``, at any opset) 6 / 13 us;
  blockwise with gathered parameters (opset 21) 12 / 53 us.

Not used: ``Gather(DequantizeLinear(q), ids)`` dequantizes the whole table on every run, 3.4 ms
per row and 13 ms blockwise: more than the whole float MiniLM (6 ms).

Tables are left in float when they are gathered along another axis, are not 2-D, are shared with
other nodes (both copies would be kept), have rows shorter than :data:`MIN_ROW` (the scale costs
what the integers save; this also leaves alone the ``[V, 1]`` scale tables of the per-row form),
or when the gathered values are a ``DequantizeLinear``'s scale or zero point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.quant._nbits import pack_pairs
from onnxsmith.passes.quant._select import NodeSelection
from onnxsmith.passes.quant.scales import INTEGER_BOUNDS, QuantParams, quantize_blockwise, quantize_weight
from onnxsmith.passes.rewrite import Const, Decline, Match, Op, RewriterContext, Rule, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S

__all__ = [
    "BLOCKWISE_OPSET",
    "MIN_ROW",
    "TableScheme",
    "gather_block_quantized",
    "gather_dequantize",
    "gather_rule",
    "gather_scaled_rows",
]

MS_DOMAIN = "com.microsoft"
#: Rows shorter than this stay in float (GatherBlockQuantized's smallest block).
MIN_ROW = 16
#: First default-domain opset whose DequantizeLinear takes ``block_size``.
BLOCKWISE_OPSET = 21

_FLOAT = ir.DataType.FLOAT
_BITS = {ir.DataType.INT8: 8, ir.DataType.UINT8: 8, ir.DataType.INT4: 4, ir.DataType.UINT4: 4}

#: ``lower(op, name, table, ids)``: the replacement of ``Gather(table, ids)``, or why not.
Lowering = Callable[[RewriterContext, str, np.ndarray, ir.Value], "ir.Value | Decline"]


@dataclass(frozen=True)
class TableScheme:
    """How a table is quantized.

    Attributes:
        dtype: INT8, UINT8, INT4 or UINT4.
        granularity: One scale per ``tensor``, per ``row`` or per ``block`` of a row.
        symmetric: Zero point at the type's midpoint (0 for signed types).
        block_size: Block length along a row (``block`` granularity only).
        narrow: Signed types drop their lowest value (int8 in [-127, 127]).
    """

    dtype: ir.DataType
    granularity: Literal["tensor", "row", "block"]
    symmetric: bool = True
    block_size: int | None = None
    narrow: bool = False

    @property
    def bits(self) -> int:
        return _BITS[self.dtype]

    def quantize(self, table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(q, scale, zero_point)``; the parameters are 0-d per tensor, else ``[V, blocks]``."""
        params: QuantParams
        if self.granularity == "block":
            assert self.block_size is not None
            q, params = quantize_blockwise(table, self.dtype, axis=1, block_size=self.block_size,
                                           symmetric=self.symmetric)
        else:
            axis = 0 if self.granularity == "row" else None
            q, params = quantize_weight(table, self.dtype, axis=axis, symmetric=self.symmetric, narrow=self.narrow)
        if self.granularity == "tensor":
            return q, params.scale, params.zero_point
        rows = table.shape[0]
        return q, params.scale.reshape(rows, -1), params.zero_point.reshape(rows, -1)


def gather_block_quantized(op: RewriterContext, name: str, table: np.ndarray, ids: ir.Value,
                           scheme: TableScheme) -> ir.Value | Decline:
    """``com.microsoft::GatherBlockQuantized`` of the table stored as unsigned integers.

    A signed scheme is stored shifted by ``2^(bits - 1)`` (zero point too), which leaves
    ``q - zp`` unchanged; the zero point input is left out where it is the kernel's default
    ``2^(bits - 1)`` everywhere.
    """
    if scheme.granularity == "tensor":
        return Decline("GatherBlockQuantized has no per-tensor form")
    bits, columns = scheme.bits, table.shape[1]
    if bits == 4 and columns % 2:
        return Decline(f"rows of {columns} elements do not pack into 4-bit pairs")
    q, scale, zero = scheme.quantize(table)
    offset = 0 if INTEGER_BOUNDS[scheme.dtype][0] == 0 else 1 << (bits - 1)
    data, zero = _to_unsigned(q, offset), _to_unsigned(zero, offset)
    block_size = scheme.block_size if scheme.granularity == "block" else max(MIN_ROW, 1 << (columns - 1).bit_length())
    zero_points = None if np.all(zero == 1 << (bits - 1)) else op.initializer(
        pack_pairs(zero, bits), f"{name}_zero_points")
    op.import_opset(MS_DOMAIN, 1)
    return op.GatherBlockQuantized(op.initializer(pack_pairs(data, bits), f"{name}_q{bits}"), ids,
                                   op.initializer(scale, f"{name}_scales"), zero_points, _domain=MS_DOMAIN,
                                   bits=bits, block_size=block_size)


def _to_unsigned(values: np.ndarray, offset: int) -> np.ndarray:
    """``values + offset`` as uint8 (in ``[0, 256)``); no copy when ``offset`` is 0 and they already are.

    The shift is done in the uint8 copy, modulo 256 (the same bytes as adding in a wider type),
    so a large table costs one uint8 copy, not two int16 temporaries.
    """
    if offset == 0:
        return values.astype(np.uint8, copy=False)
    shifted = np.asarray(values).astype(np.uint8)
    shifted += np.uint8(offset)
    return shifted


def gather_scaled_rows(op: RewriterContext, name: str, table: np.ndarray, ids: ir.Value,
                       scheme: TableScheme) -> ir.Value:
    """``Mul(Cast(Gather(q, ids)) [- Gather(zp, ids)], Gather(s, ids))``, per row, any opset."""
    assert scheme.granularity == "row"
    q, scale, zero = scheme.quantize(table)
    rows = op.Cast(op.Gather(op.initializer(ir.tensor(q, dtype=scheme.dtype), f"{name}_quantized"), ids), to=_FLOAT)
    if np.any(zero):
        rows = op.Sub(rows, op.Gather(op.initializer(zero.astype(np.float32), f"{name}_zero_point"), ids))
    return op.Mul(rows, op.Gather(op.initializer(scale, f"{name}_scale"), ids))


def gather_dequantize(op: RewriterContext, name: str, table: np.ndarray, ids: ir.Value,
                      scheme: TableScheme) -> ir.Value:
    """``DequantizeLinear(Gather(q, ids), s, zp)`` per tensor; per row or block, the parameters
    are gathered too (blockwise DequantizeLinear along the last axis, opset 21)."""
    q, scale, zero = scheme.quantize(table)
    rows = op.Gather(op.initializer(ir.tensor(q, dtype=scheme.dtype), f"{name}_quantized"), ids)
    scale_value = op.initializer(scale, f"{name}_scale")
    symmetric_signed = INTEGER_BOUNDS[scheme.dtype][0] < 0 and not np.any(zero)
    zero_value = None if symmetric_signed else op.initializer(ir.tensor(zero, dtype=scheme.dtype),
                                                              f"{name}_zero_point")
    if scheme.granularity == "tensor":
        return op.DequantizeLinear(rows, scale_value, zero_value)
    block_size = scheme.block_size if scheme.granularity == "block" else table.shape[1]
    return op.DequantizeLinear(rows, op.Gather(scale_value, ids),
                               None if zero_value is None else op.Gather(zero_value, ids),
                               axis=-1, block_size=block_size)


def _feeds_quantization_parameters(value: ir.Value) -> bool:
    return any(node.op_type == "DequantizeLinear" and index > 0 for node, index in value.uses())


def gather_rule(name: str, selection: NodeSelection, lower: Lowering, unavailable: str | None = None) -> Rule:
    """The rule ``Gather(E, ids) -> lower(E)``, after the checks of the module docstring.

    Args:
        name: The rule's name.
        selection: Which Gather nodes may be quantized.
        lower: Builds the replacement (or declines) for one table.
        unavailable: Why no table can be lowered here (every match declines with it, before the
            table is read); None when tables can be.
    """

    # Gather(E, ids) -> rows of the integer table, dequantized (form chosen by ``lower``)
    @rule(name, Op("Gather", Const("table", shape=S.ANY, dtype=_FLOAT), Var("ids"), _name="gather"))
    def quantize_gather(op: RewriterContext, m: Match) -> ir.Value | Decline:
        """Gather(E, ids) -> Gather of an integer E, dequantized rows"""
        reason = selection.why_not(m.node("gather"))
        if reason is not None:
            return Decline(reason)
        if unavailable is not None:
            return Decline(unavailable)
        table_value = m["table"]
        assert table_value is not None
        others = sorted({node.name or node.op_type for node, _ in table_value.uses() if node is not m.root})
        if others:
            return Decline(f"the table is also used by {', '.join(others)}")
        table = m.const("table")
        assert table is not None
        if table.ndim != 2:
            return Decline(f"table has shape {list(table.shape)}, expected [rows, columns]")
        axis = int(m.attr("gather", "axis", 0))
        if axis % 2:
            return Decline(f"gathers along axis {axis}, not rows")
        if table.shape[1] < MIN_ROW:
            return Decline(f"rows of {table.shape[1]} elements are too short to gain (fewer than {MIN_ROW})")
        if _feeds_quantization_parameters(m.root.outputs[0]):
            return Decline("the gathered values are quantization parameters")
        return lower(op, table_value.name or "table", table, m["ids"])

    return quantize_gather
