"""Head layout of an attention block: what its Reshapes do to ``[batch, sequence, hidden]``.

A split Reshape turns a projection ``[B, S, hidden]`` into ``[B, S, N, H]`` (``N`` heads of size
``H``); the merge Reshape turns ``[B, S, N, H]`` back into ``[B, S, N * H]``. A Reshape keeps
dimension ``i`` (batch or sequence) when its shape entry is ``0`` (``allowzero = 0``), the same
static size, or when shape inference gave the output the same size or symbol there.
Shapes computed at run time are read through their ``Concat``: constant parts, and parts that
are dim ``k`` of a value ``y`` (``Unsqueeze(Gather(Shape(y), k))`` or ``Shape(y, start=k,
end=k+1)``), which keep dim ``k`` when ``y`` has the same size or symbol there. The head size is
a constant entry (or an inferred static dim); a ``-1`` or unknown head count is ``hidden / H``.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.passes.rewrite.constants import constant_array, non_constant_reason

__all__ = ["merged_width", "split_heads"]


def _same(a: object, b: object) -> bool:
    """True if two dims are provably equal: equal ints, or the same named symbol."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return isinstance(a, ir.SymbolicDim) and isinstance(b, ir.SymbolicDim) and a.value is not None and a == b


#: A shape entry: a constant, dim ``k`` of a value (read at run time), or unknown.
Entry = int | tuple[ir.Value, int] | None


def _dim_ref(part: ir.Value) -> tuple[ir.Value, int] | None:
    """``(y, k)`` if the 1-element ``part`` is dim ``k`` of ``y``: ``Unsqueeze(Gather(Shape(y), k))`` or
    ``Shape(y, start=k, end=k + 1)``."""
    node = part.producer()
    if node is not None and node.op_type == "Unsqueeze":
        gather = node.inputs[0].producer() if node.inputs[0] is not None else None
        index = gather.inputs[1] if gather is not None and gather.op_type == "Gather" else None
        shape = gather.inputs[0].producer() if gather is not None else None
        if (index is None or shape is None or shape.op_type != "Shape" or shape.attributes
                or non_constant_reason(index) is not None or constant_array(index).size != 1):
            return None
        return shape.inputs[0], int(constant_array(index).reshape(-1)[0])
    if node is not None and node.op_type == "Shape" and "start" in node.attributes and "end" in node.attributes:
        start, end = node.attributes["start"].as_int(), node.attributes["end"].as_int()
        return (node.inputs[0], start) if start >= 0 and end == start + 1 else None
    return None


def _entries(node: ir.Node, rank: int) -> list[Entry]:
    """The Reshape's shape entries: constants, dims of other values, or None where unknown."""
    shape = node.inputs[1]
    assert shape is not None
    if non_constant_reason(shape) is None:
        values = constant_array(shape).reshape(-1).tolist()
        return [int(v) for v in values] if len(values) == rank else [None] * rank
    concat = shape.producer()
    if concat is None or concat.op_type != "Concat":
        return [None] * rank
    entries: list[Entry] = []
    for part in concat.inputs:
        if part is not None and non_constant_reason(part) is None:
            entries += [int(v) for v in constant_array(part).reshape(-1).tolist()]
        elif part is not None and (ref := _dim_ref(part)) is not None:
            entries.append(ref)
        elif part is not None and part.shape is not None and part.shape.rank() == 1 and isinstance(part.shape[0], int):
            entries += [None] * part.shape[0]
        else:
            return [None] * rank
    return entries if len(entries) == rank else [None] * rank


def _dims(node: ir.Node, rank: int, reference: ir.Value) -> tuple[list[Entry], list[object]] | str:
    """(shape entries, inferred output dims) of a Reshape whose result has ``rank`` and keeps the
    batch and sequence dims of ``reference``, or why not."""
    out = node.outputs[0]
    if out.shape is not None and out.shape.rank() != rank:
        return f"Reshape '{node.name}' gives rank {out.shape.rank()}, not {rank}"
    inferred: list[object] = list(out.shape) if out.shape is not None else [None] * rank
    entries = _entries(node, rank)
    if not (_keeps(node, entries, inferred, 0, reference) and _keeps(node, entries, inferred, 1, reference)):
        return f"Reshape '{node.name}' is not known to keep the batch and sequence dims"
    return entries, inferred


def _keeps(node: ir.Node, entries: list[Entry], inferred: list[object], axis: int, reference: ir.Value) -> bool:
    """True if the Reshape's output dim ``axis`` provably equals dim ``axis`` of ``reference``.

    The Reshape's own input has the reference's batch and sequence dims at axes 0 and 1 (it is the
    projection or the merged heads), so copying them (entry 0) keeps them.
    """
    expected = reference.shape[axis] if reference.shape is not None and reference.shape.rank() > axis else None
    entry = entries[axis]
    allowzero = node.attributes.get("allowzero")
    if entry == 0 and (allowzero is None or allowzero.as_int() == 0):
        return True
    if isinstance(entry, tuple):
        source, k = entry
        source_dim = source.shape[k] if source.shape is not None and source.shape.rank() > k else None
        return k == axis and (source is reference or _same(source_dim, expected))
    if isinstance(entry, int) and isinstance(expected, int):
        return entry == expected
    return _same(inferred[axis], expected)


def split_heads(node: ir.Node, hidden: int) -> tuple[int, int] | str:
    """``(N, H)`` if Reshape ``node`` splits ``[B, S, hidden]`` into ``[B, S, N, H]``, else why not."""
    reference = node.inputs[0]
    assert reference is not None
    found = _dims(node, 4, reference)
    if isinstance(found, str):
        return found
    entries, inferred = found
    head_size = entries[3] if isinstance(entries[3], int) and entries[3] > 0 else inferred[3]
    if not isinstance(head_size, int) or head_size <= 0:
        return f"num_heads not derivable: the head size of Reshape '{node.name}' is unknown"
    heads = entries[2] if isinstance(entries[2], int) and entries[2] > 0 else inferred[2]
    if not isinstance(heads, int):
        if hidden % head_size:
            return f"num_heads not derivable: hidden size {hidden} is not a multiple of head size {head_size}"
        heads = hidden // head_size
    if heads * head_size != hidden:
        return f"Reshape '{node.name}' splits {hidden} into {heads} x {head_size}"
    return heads, head_size


def merged_width(node: ir.Node, width: int, reference: ir.Value) -> str | None:
    """None if Reshape ``node`` merges ``[B, S, N, H]`` into ``[B, S, width]``, else why not.

    ``reference`` is a ``[B, S, ...]`` value of the block (the query projection).
    """
    found = _dims(node, 3, reference)
    if isinstance(found, str):
        return found
    entries, inferred = found
    if entries[2] in (-1, width) or inferred[2] == width:
        return None
    return f"Reshape '{node.name}' does not merge the heads into [batch, sequence, {width}]"
