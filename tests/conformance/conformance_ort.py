"""Does onnxruntime reproduce a case's expected outputs?

Outputs are compared like ``onnx.backend.test.runner`` compares them: same count, shapes and
element types, values within the case's ``rtol``/``atol`` (NaN where NaN is expected), strings
and booleans exactly, sequences element by element. Sessions run on the CPU provider with
graph optimizations off, so onnxruntime computes the graph as written.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import onnxruntime as ort

from onnxsmith.errors import first_line
from onnxsmith.passes.base import Tolerance
from onnxsmith.verify.compare import compare_outputs

__all__ = ["Outcome", "reproduce"]


@dataclass(frozen=True)
class Outcome:
    """``kind`` is ``reproduced``, ``ort-load`` (no session), ``ort-run`` (run failed) or ``mismatch``."""

    kind: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "reproduced"


def reproduce(model: onnx.ModelProto, samples: list, rtol: float, atol: float) -> Outcome:
    """Runs ``model`` on every sample and compares with the expected outputs."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        return Outcome("ort-load", first_line(e, 200))
    names = [o.name for o in model.graph.output]
    for index, (feeds, expected) in enumerate(samples):
        try:
            actual = session.run(None, feeds)
        except Exception as e:
            return Outcome("ort-run", first_line(e, 200))
        bad = [d for d in compare_outputs(expected, actual, names, Tolerance(rtol, atol)) if not d.ok]
        if bad:
            return Outcome("mismatch", f"sample {index}: {bad[0].describe()}")
    return Outcome("reproduced")
