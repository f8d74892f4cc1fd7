"""Running models with onnxruntime for verification (not for speed)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import UnsupportedError
from onnxsmith.ir.queries import has_external_data, tensor_bytes

__all__ = ["make_session", "run_model"]

_INLINE_LIMIT = 1_500_000_000


def make_session(model: ir.Model, *, optimize: bool = False, threads: int = 1):
    """An onnxruntime CPU session for ``model`` (graph optimizations off unless asked)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsupportedError(f"onnxruntime cannot load the model: {first[:300]}") from e


def run_model(model: ir.Model, inputs: Mapping[str, np.ndarray], *, session=None) -> list[np.ndarray]:
    """Runs the model on ``inputs``; returns the outputs in graph order."""
    session = session or make_session(model)
    names = {i.name for i in session.get_inputs()}
    feed = {k: v for k, v in inputs.items() if k in names}
    try:
        return session.run(None, feed)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsupportedError(f"onnxruntime failed to run the model: {first[:300]}") from e
