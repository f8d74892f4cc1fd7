"""Running models with onnxruntime for verification (not for speed).

Sessions run on the CPU provider with graph optimizations off, so that onnxruntime computes the
graph as written instead of rewriting it first.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import UnsupportedError, first_line
from onnxsmith.ir.queries import has_external_data, tensor_bytes

__all__ = ["session_options", "make_session", "run_model", "session_from_file"]

_INLINE_LIMIT = 1_500_000_000


def session_options(optimize: bool = False, threads: int = 1):
    """Quiet CPU session options: graph optimizations off unless asked, ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def make_session(model: ir.Model, *, optimize: bool = False, threads: int = 1, options: Any = None):
    """An onnxruntime CPU session for ``model`` (graph optimizations off unless asked).

    ``options`` (``SessionOptions``) replaces the options ``optimize`` and ``threads`` would make.
    """
    import onnxruntime as ort

    options = options or session_options(optimize, threads)
    try:
        if has_external_data(model) or tensor_bytes(model) > _INLINE_LIMIT:
            from onnxsmith.ir._io import save

            with tempfile.TemporaryDirectory(prefix="onnxsmith-verify-") as tmp:
                path = os.path.join(tmp, "model.onnx")
                save(model, path, external_data=True)
                return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        data = ir.to_proto(model).SerializeToString()
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise UnsupportedError(f"onnxruntime cannot load the model: {first_line(e)}") from e


def session_from_file(path: str | os.PathLike, *, optimize: bool = False, threads: int = 1):
    """An onnxruntime CPU session reading the model file itself (external data stays on disk)."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(os.fspath(path), session_options(optimize, threads), providers=["CPUExecutionProvider"])
    except Exception as e:
        raise UnsupportedError(f"onnxruntime cannot load {path}: {first_line(e)}") from e


def run_model(model: ir.Model | None, inputs: Mapping[str, np.ndarray], *, session=None) -> list[np.ndarray]:
    """Runs the model on ``inputs`` (extra entries are ignored); returns the outputs in graph order.

    ``model`` may be None when a ``session`` is given.
    """
    if session is None:
        if model is None:
            raise ValueError("run_model needs a model or a session")
        session = make_session(model)
    names = {i.name for i in session.get_inputs()}
    feed = {k: v for k, v in inputs.items() if k in names}
    try:
        return session.run(None, feed)
    except Exception as e:
        raise UnsupportedError(f"onnxruntime failed to run the model: {first_line(e)}") from e
