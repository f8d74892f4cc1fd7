"""Generating model inputs from the graph's declared types and shapes.

Symbolic dimensions get small concrete values (the same name always gets the same value), unknown
dimensions get 1. Floats are standard normal, integers small non-negative, booleans random.

An integer input that the graph uses as indices into a table (followed through Cast, Reshape,
Unsqueeze and the like to a ``Gather``'s indices, or to the id inputs of ``EmbedLayerNormalization``)
is drawn below the smallest table size it indexes: a BERT-style model's ``token_type_ids`` index a
table of 2 rows, so values up to ``int_high`` would make onnxruntime refuse to run it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import UnsupportedError

__all__ = ["generate_inputs", "index_bound", "model_inputs", "concrete_shape"]

DEFAULT_SYMBOLIC_DIM = 2


def model_inputs(model: ir.Model) -> list[ir.Value]:
    """Graph inputs that are real inputs (not initializers listed as inputs)."""
    return [v for v in model.graph.inputs if v.name not in model.graph.initializers]


def concrete_shape(value: ir.Value, dims: Mapping[str, int] | None = None) -> tuple[int, ...]:
    if value.shape is None:
        raise UnsupportedError(f"input '{value.name}' has no declared shape",
                               "pass input data explicitly (--inputs data.npz)")
    dims = dims or {}
    out = []
    for d in value.shape.dims:
        if isinstance(d, int):
            out.append(d)
        else:
            name = getattr(d, "value", None)
            out.append(int(dims.get(name, DEFAULT_SYMBOLIC_DIM)) if name else 1)
    return tuple(out)


def generate_inputs(model: ir.Model, *, seed: int = 0, dims: Mapping[str, int] | None = None,
                    int_high: int = 4) -> dict[str, np.ndarray]:
    """Random inputs for every graph input, from its type and shape."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for value in model_inputs(model):
        if value.dtype is None:
            raise UnsupportedError(f"input '{value.name}' has no declared element type",
                                   "pass input data explicitly (--inputs data.npz)")
        shape = concrete_shape(value, dims)
        np_dtype = value.dtype.numpy()
        if value.dtype.is_floating_point():
            data = rng.standard_normal(shape).astype(np_dtype)
        elif value.dtype == ir.DataType.BOOL:
            data = rng.integers(0, 2, shape).astype(bool)
        elif value.dtype == ir.DataType.STRING:
            data = np.array(rng.choice(["a", "b", "c"], shape), dtype=object)
        elif value.dtype.is_integer():
            high = min(int_high, index_bound(value) or int_high)
            data = rng.integers(0, high, shape).astype(np_dtype)
        else:
            raise UnsupportedError(f"cannot generate data for input '{value.name}' of type {value.dtype}",
                                   "pass input data explicitly (--inputs data.npz)")
        feeds[value.name] = data
    return feeds


#: Ops through which a value keeps its elements (indices stay indices).
_INDEX_PRESERVING = frozenset({"Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand",
                               "Slice", "Transpose", "Concat"})
#: ``(domain, op) -> {input index: table input index}`` for ops that read indices into a table's axis 0.
_TABLES = {("", "Gather"): {1: 0}, ("com.microsoft", "EmbedLayerNormalization"): {0: 2, 1: 4},
           ("com.microsoft", "GatherBlockQuantized"): {1: 0}}


def index_bound(value: ir.Value, *, max_depth: int = 8) -> int | None:
    """The smallest static size of a table axis that ``value`` indexes (see the module doc), or None."""
    bounds = []
    pending, seen = [(value, 0)], set()
    while pending:
        current, depth = pending.pop()
        if id(current) in seen or depth > max_depth:
            continue
        seen.add(id(current))
        for use in current.uses():
            node, index = use.node, use.idx
            domain = "" if node.domain in ("", "ai.onnx") else node.domain
            if domain == "" and node.op_type in _INDEX_PRESERVING:
                if index == 0 or node.op_type == "Concat":
                    pending.extend((out, depth + 1) for out in node.outputs[:1])
                continue
            table_input = _TABLES.get((domain, node.op_type), {}).get(index)
            if table_input is None or table_input >= len(node.inputs) or node.inputs[table_input] is None:
                continue
            size = _axis_size(node, node.inputs[table_input])
            if size:
                bounds.append(size)
    return min(bounds) if bounds else None


def _axis_size(node: ir.Node, table: ir.Value) -> int | None:
    """The static size of the axis ``node`` indexes in ``table`` (Gather's ``axis``, else 0)."""
    if table.shape is None:
        return None
    axis = node.attributes.get_int("axis", 0) if node.op_type == "Gather" else 0
    dims = table.shape.dims
    if not -len(dims) <= axis < len(dims):
        return None
    size = dims[axis]
    return size if isinstance(size, int) and size > 0 else None
