"""Generating model inputs from the graph's declared types and shapes.

Symbolic dimensions get small concrete values (the same name always gets the same value), unknown
dimensions get 1. Floats are standard normal, integers small non-negative (safe as indices into
most axes), booleans random.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import UnsupportedError

__all__ = ["generate_inputs", "model_inputs", "concrete_shape"]

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
            data = rng.integers(0, int_high, shape).astype(np_dtype)
        else:
            raise UnsupportedError(f"cannot generate data for input '{value.name}' of type {value.dtype}",
                                   "pass input data explicitly (--inputs data.npz)")
        feeds[value.name] = data
    return feeds
