"""Helpers for gradient tests (imported as ``gradient_models``): one-node models with a random weighted-sum loss, and the check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir
from hypothesis import strategies as st

from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes.train.gradcheck import check_gradients

#: (rtol, atol) for float64 models checked with h = 1e-6, and for float32 models with h = 1e-2.
TOLERANCE = {"float64": (1e-5, 1e-6), "float32": (2e-2, 2e-2)}


def op_model(op_type: str, params: Mapping[str, np.ndarray], *, data: Mapping[str, np.ndarray] | None = None,
             order: Sequence[str] | None = None, attrs: Mapping[str, Any] | None = None, outputs: int = 1,
             used_outputs: Sequence[int] = (0,), opset: int = 18, seed: int = 0, dtype: str = "float64",
             domain: str = "", output_shapes: Sequence[Sequence[int]] | None = None):
    """A model computing ``sum(w_k * y_k)`` over outputs ``y_k`` of one ``op_type`` node.

    ``params`` become initializers (the parameters), ``data`` constants that are not differentiated
    (integer tensors, shapes, axes); ``order`` lists the node's inputs by name ('' for an absent one).
    ``output_shapes`` gives the node's output shapes where ONNX shape inference does not know the
    op (onnxruntime's contrib ops); they take the element type ``dtype``.
    """
    rng = np.random.default_rng(seed)
    names = list(order) if order is not None else [*params, *(data or {})]

    def node_graph() -> tuple[GraphBuilder, tuple]:
        b = GraphBuilder(opset=opset)
        if domain:
            b.opset_imports[domain] = 1
        values = {name: b.initializer(name, np.array(array)) for name, array in params.items()}
        for name, array in (data or {}).items():
            values[name] = b.Constant(value=np.asarray(array))
        out = b.op(op_type, *[values[n] if n else None for n in names], _outputs=outputs, _domain=domain,
                   **(attrs or {}))
        outs = out if outputs > 1 else (out,)
        for value, shape in zip(outs, output_shapes or ()):
            value.shape, value.type = ir.Shape(list(shape)), ir.TensorType(ir.DataType.from_numpy(np.dtype(dtype)))
        return b, outs

    probe, probe_outputs = node_graph()
    for k in used_outputs:
        probe.output(probe_outputs[k])
    inferred = [v.shape for v in probe.build().graph.outputs]
    b, node_outputs = node_graph()
    terms = []
    for k, shape in zip(used_outputs, inferred):
        weights = b.Constant(value=rng.uniform(0.5, 1.5, size=shape.numpy()).astype(dtype))
        terms.append(b.ReduceSum(b.Mul(node_outputs[k], weights), keepdims=0))
    b.output(terms[0] if len(terms) == 1 else b.Sum(*terms), "loss")
    return b.build()


def assert_gradients_match(model, feeds=None, dtype: str = "float64", **options: str) -> None:
    """Every parameter's graph gradient equals its central finite difference within TOLERANCE[dtype]."""
    rtol, atol = TOLERANCE[dtype]
    checks = check_gradients(model, feeds, **options)
    assert checks, "no parameter got a gradient"
    for check in checks:
        assert check.close(rtol, atol), (
            f"{check.name}: max error {check.max_error():.3g}\nanalytic\n{check.analytic}\nnumeric\n{check.numeric}")


def shapes(min_rank: int = 1, max_rank: int = 3, max_side: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    """Small tensor shapes."""
    return st.lists(st.integers(1, max_side), min_size=min_rank, max_size=max_rank).map(tuple)


def broadcast_pair(draw, max_rank: int = 3) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that broadcast together (some axes of size 1, different ranks)."""
    full = draw(shapes(1, max_rank))
    def view():
        rank = draw(st.integers(1, len(full)))
        return tuple(d if draw(st.booleans()) else 1 for d in full[len(full) - rank:])
    return view(), view()


def away_from(values: np.ndarray, points: Sequence[float], margin: float = 0.1) -> np.ndarray:
    """``values`` moved at least ``margin`` away from each kink in ``points``."""
    out = values.copy()
    for p in points:
        near = np.abs(out - p) < margin
        out[near] = p + np.where(out[near] >= p, margin, -margin)
    return out


def distinct(rng: np.random.Generator, shape: Sequence[int], dtype: str = "float32", spacing: float = 0.1) -> np.ndarray:
    """Values pairwise at least ``spacing`` apart (no ties for max pooling within a finite-difference step)."""
    count = int(np.prod(shape))
    return (rng.permutation(count) * spacing - count * spacing / 2).reshape(shape).astype(dtype)
