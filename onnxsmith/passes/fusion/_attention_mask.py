"""Tracing an exporter's additive attention mask back to the raw ``[batch, sequence]`` key mask.

BERT-family models turn the 0/1 ``attention_mask`` input ``m`` (1 = real token, 0 = padding) into
an additive mask ``A`` that is added to the attention scores before Softmax::

    A[b, h, i, j] = 0 if m[b, j] else c        (c: float32 lowest, or -10000 in older models)

com.microsoft Attention computes exactly this from ``mask_index = int32(m)`` with
``mask_filter_value = c``. :func:`trace_key_mask` proves (structurally) that a value is such an
``A`` and returns ``m`` and ``c``. Recognised forms::

    Mul(Sub(1, Cast(K)), c)                        transformers < 4.48: (1 - mask) * finfo.min
    Where(K, 0, c)                                 transformers >= 4.48 (boolean masks)

where the key mask ``K[b, ., ., j] = m[b, j]`` is, through Casts, Expands and Ands with terms
that are always true (constant True, ``Range(0, n, 1) >= 0``):

- ``Unsqueeze(m, [1, 2])`` (or two single-axis Unsqueezes);
- ``GatherND(m, Concat(Unsqueeze(I_b, -1), Unsqueeze(I_j, -1)))`` (dynamo exporter), where
  ``I_b`` and ``I_j`` are index grids equal to their coordinate along axes 0 and 3;
- ``Reshape(Reshape(Gather(Flatten(m, 2), I_j + I_b * dim(m, 1)), [-1]), Shape(.))`` (TorchScript
  exporter), the same lookup on the flattened mask.

An index grid is ``Range(0, n, 1)`` moved to its axis by Unsqueezes and broadcast by Expands. The
grids' extents are taken to be the mask's batch and sequence lengths (transformers builds them
from those sizes; a shorter grid would not broadcast against the scores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite.constants import constant_array, non_constant_reason

__all__ = ["KeyMask", "trace_key_mask"]


@dataclass(frozen=True)
class KeyMask:
    """The raw 2-D key mask behind an additive mask, and the value added at masked positions."""

    raw: ir.Value
    fill: float


def _producer(value: ir.Value | None, *op_types: str) -> ir.Node | None:
    """The node computing ``value`` if it is one of ``op_types`` in the default domain."""
    node = None if value is None else value.producer()
    if node is None or node.op_type not in op_types or node.domain not in ("", "ai.onnx"):
        return None
    return node


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or non_constant_reason(value) is not None:
        return None
    return constant_array(value)


def _is_scalar(value: ir.Value | None, expected: float | None = None) -> float | None:
    """The value of a one-element constant (equal to ``expected`` if given), else None."""
    array = _const(value)
    if array is None or array.size != 1:
        return None
    number = float(array.reshape(-1)[0])
    return number if expected is None or number == expected else None


def _axes(node: ir.Node, rank_out: int) -> list[int] | None:
    """Unsqueeze's axes (input or attribute), normalised to the output rank."""
    attr = node.attributes.get("axes")
    array = _const(node.inputs[1]) if len(node.inputs) > 1 else None
    values = attr.as_ints() if attr is not None else (None if array is None else array.reshape(-1).tolist())
    if values is None:
        return None
    return sorted(int(a) % rank_out for a in values)


def _rank(value: ir.Value) -> int | None:
    return None if value.shape is None else value.shape.rank()


def _strip(value: ir.Value, *op_types: str) -> ir.Value:
    """Follows ``value`` back through the given single-input ops."""
    while (node := _producer(value, *op_types)) is not None:
        value = node.inputs[0]
    return value


def _iota_axis(value: ir.Value) -> int | None:
    """The axis ``k`` if ``value[p] == p[k]`` everywhere (an index grid), else None."""
    value = _strip(value, "Expand")
    if (node := _producer(value, "Range")) is not None:
        start, step = _is_scalar(node.inputs[0], 0), _is_scalar(node.inputs[2], 1)
        return 0 if start is not None and step is not None else None
    if (node := _producer(value, "Unsqueeze")) is not None:
        inner, out_rank = _iota_axis(node.inputs[0]), _rank(node.outputs[0])
        axes = None if out_rank is None else _axes(node, out_rank)
        if inner is None or axes is None:
            return None
        kept = [a for a in range(out_rank) if a not in axes]
        return kept[inner] if inner < len(kept) else None
    return None


def _always_true(value: ir.Value) -> bool:
    """True if ``value`` is provably true everywhere."""
    value = _strip(value, "Expand", "Unsqueeze", "Reshape")
    array = _const(value)
    if array is not None:
        return array.dtype == np.bool_ and bool(array.all())
    if (node := _producer(value, "And")) is not None:
        return all(_always_true(v) for v in node.inputs)
    if (node := _producer(value, "GreaterOrEqual")) is not None:
        # Range(0, n, 1) (moved and broadcast) is never negative
        return _is_scalar(node.inputs[1], 0) is not None and _iota_axis(node.inputs[0]) is not None
    return False


def _raw(value: ir.Value) -> ir.Value | None:
    """The 2-D mask behind Casts of ``value``, if it is 2-D."""
    value = _strip(value, "Cast")
    return value if _rank(value) == 2 else None


def _unsqueezed(node: ir.Node) -> ir.Value | None:
    """``m`` for ``Unsqueeze(m, [1, 2])`` or ``Unsqueeze(Unsqueeze(m, [1]), [2])``."""
    axes = _axes(node, 4)
    if axes == [1, 2]:
        return _raw(node.inputs[0])
    inner = _producer(_strip(node.inputs[0], "Cast"), "Unsqueeze")
    if axes == [2] and inner is not None and _axes(inner, 3) == [1]:
        return _raw(inner.inputs[0])
    return None


def _gather_nd(node: ir.Node) -> ir.Value | None:
    """``m`` for ``GatherND(m, [I_b, I_j])`` with grids along axes 0 and 3."""
    if node.attributes.get("batch_dims") is not None and node.attributes["batch_dims"].as_int() != 0:
        return None
    concat = _producer(node.inputs[1], "Concat")
    if concat is None or len(concat.inputs) != 2 or concat.attributes["axis"].as_int() not in (-1, 4):
        return None
    axes = []
    for part in concat.inputs:
        unsqueeze = _producer(part, "Unsqueeze")
        if unsqueeze is None or _axes(unsqueeze, 5) != [4]:
            return None
        axes.append(_iota_axis(unsqueeze.inputs[0]))
    return _raw(node.inputs[0]) if axes == [0, 3] else None


def _flat_gather(node: ir.Node) -> ir.Value | None:
    """``m`` for ``Reshape(Reshape(Gather(Flatten(m, 2), I_j + I_b * dim(m, 1)), [-1]), Shape(idx))``."""
    inner = _producer(node.inputs[0], "Reshape")
    gather = None if inner is None else _producer(inner.inputs[0], "Gather")
    flatten = None if gather is None else _producer(gather.inputs[0], "Flatten")
    if inner is None or gather is None or flatten is None or _is_scalar(inner.inputs[1], -1) is None:
        return None
    index = gather.inputs[1]
    shape_of = _producer(node.inputs[1], "Shape")
    if shape_of is None or shape_of.inputs[0] is not index or shape_of.attributes:
        return None
    if flatten.attributes["axis"].as_int() != 2 or gather.attributes.get("axis", ir.AttrInt64("axis", 0)).as_int():
        return None
    mask = _raw(flatten.inputs[0])
    add = _producer(index, "Add")
    if mask is None or add is None:
        return None
    for j, bs in (add.inputs, reversed(add.inputs)):
        mul = _producer(bs, "Mul")
        if _iota_axis(j) != 3 or mul is None:
            continue
        for b, stride in (mul.inputs, reversed(mul.inputs)):
            if _iota_axis(b) == 0 and _is_dim(stride, mask, 1):
                return mask
    return None


def _is_dim(value: ir.Value, of: ir.Value, axis: int) -> bool:
    """True if ``value`` is ``Gather(Shape(x), axis)`` with ``x`` being ``of`` up to Casts."""
    gather = _producer(value, "Gather")
    shape = None if gather is None else _producer(gather.inputs[0], "Shape")
    if gather is None or shape is None or shape.attributes:
        return False
    return _is_scalar(gather.inputs[1], axis) is not None and _strip(shape.inputs[0], "Cast") is _strip(of, "Cast")


def _key(value: ir.Value) -> ir.Value | str:
    """The raw mask ``m`` with ``value[b, ., ., j] == m[b, j]``, or why it is not recognised."""
    while True:
        value = _strip(value, "Cast", "Expand")
        node = _producer(value, "And")
        if node is None:
            break
        a, b = node.inputs
        if _always_true(a):
            value = b
        elif _always_true(b):
            value = a
        else:
            return f"the mask's And ('{node.name}') has no operand that is provably true"
    node = value.producer()
    finders = {"Unsqueeze": _unsqueezed, "GatherND": _gather_nd, "Reshape": _flat_gather}
    find = None if node is None else finders.get(node.op_type)
    raw = None if find is None else find(node)
    if raw is None:
        what = "a graph input" if node is None else f"{node.op_type} '{node.name}'"
        return f"the key mask comes from {what}, not from a recognised [batch, sequence] mask lookup"
    return raw


def trace_key_mask(additive: ir.Value) -> KeyMask | str:
    """The raw 2-D mask and fill value behind the additive mask ``additive``, or why not."""
    if (node := _producer(additive, "Where")) is not None:
        fill = _is_scalar(node.inputs[2])
        if _is_scalar(node.inputs[1], 0.0) is None or fill is None:
            return "the mask's Where does not choose between 0 and a constant"
        found = _key(node.inputs[0])
    elif (node := _producer(additive, "Mul")) is not None:
        sub, fill = node.inputs[0], _is_scalar(node.inputs[1])
        if fill is None:
            sub, fill = node.inputs[1], _is_scalar(node.inputs[0])
        sub_node = _producer(sub, "Sub")
        if fill is None or sub_node is None or _is_scalar(sub_node.inputs[0], 1.0) is None:
            return "the mask's Mul is not (1 - mask) * constant"
        found = _key(sub_node.inputs[1])
    else:
        what = "a graph input" if additive.producer() is None else f"{additive.producer().op_type}"
        return f"the additive mask comes from {what}, not Where(mask, 0, c) or (1 - mask) * c"
    return found if isinstance(found, str) else KeyMask(found, fill)
