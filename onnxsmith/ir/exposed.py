"""Intermediate values exposed as graph outputs for the duration of a ``with`` block.

Calibration, the quantization report and the in-graph reductions all read intermediate values by
running the model with them as extra outputs; afterwards the model is exactly as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import onnx_ir as ir

__all__ = ["exposed_outputs"]


@contextlib.contextmanager
def exposed_outputs(model: ir.Model, values: Sequence[ir.Value]) -> Iterator[None]:
    """Temporarily makes ``values`` graph outputs of ``model`` (those already outputs stay as they are)."""
    outputs = model.graph.outputs
    added = [v for v in values if not v.is_graph_output()]
    outputs.extend(added)
    try:
        yield
    finally:
        for _ in added:
            outputs.pop()
