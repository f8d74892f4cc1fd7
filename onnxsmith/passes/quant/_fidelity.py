"""Output fidelity of a quantized model against its float original, on a few fixed samples.

:class:`FidelityProbe` reads the first ``samples`` runs of the calibration data once, runs the
float model on them once and keeps its outputs (memory ``O(samples x outputs)``); each
:meth:`FidelityProbe.measure` is then one onnxruntime session and ``samples`` runs of a candidate.

The score of a candidate is the *worst* model output under one metric:

* ``cosine``: the mean over samples of the cosine similarity between the flattened float and
  quantized rows of an output (one row per sample of a batch);
* ``sqnr``: the output's signal-to-quantization-noise ratio in dB over all samples;
* ``top1``: the fraction of rows whose argmax over the last axis agrees (2-D outputs only: the
  logits or probabilities of a classifier).

Outputs that are not float (token ids, masks) carry no score. Higher is better for all three.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnx_ir as ir

from onnxsmith.calibration.readers import open_data
from onnxsmith.calibration.validate import SampleValidator
from onnxsmith.errors import DataInputError, UnsupportedError, first_line
from onnxsmith.verify._session import make_session

if TYPE_CHECKING:
    from onnxsmith.quant_report.stats import OutputStats

__all__ = ["DEFAULT_THRESHOLDS", "Fidelity", "FidelityProbe", "Metric", "format_score"]

Metric = Literal["cosine", "sqnr", "top1"]

#: What "faithful" means by default for each metric.
DEFAULT_THRESHOLDS: dict[str, float] = {"cosine": 0.99, "sqnr": 20.0, "top1": 0.99}


def format_score(metric: Metric, value: float, before: float | None = None) -> str:
    """``cosine 0.9912``, ``sqnr 23.4 dB``, ``top1 0.9875``; with ``before``: ``cosine 0.9620 -> 0.9912``."""
    def number(x: float) -> str:
        return f"{x:.1f} dB" if metric == "sqnr" else f"{x:.4f}"

    return f"{metric} {number(value)}" if before is None else f"{metric} {number(before)} -> {number(value)}"


@dataclass(frozen=True)
class Fidelity:
    """A candidate's score under the probe's metric, and which output was the worst.

    Attributes:
        score: The worst output's value (higher is better).
        output: The name of that output.
        sqnr_db: The lowest output SQNR (a finer tie-break for a coarse ``top1``).
    """

    score: float
    output: str
    sqnr_db: float

    def better_than(self, other: Fidelity) -> bool:
        """A higher score, or the same score with a higher SQNR."""
        return self.score > other.score or (self.score == other.score and self.sqnr_db > other.sqnr_db)


class FidelityProbe:
    """Scores quantized variants of one float model (see the module docstring).

    Args:
        fp32: The float model (read once here; not kept).
        data: Samples in any form :func:`~onnxsmith.calibration.open_data` reads.
        metric: ``cosine``, ``sqnr`` or ``top1``.
        samples: Most model runs per measurement.
        batch_size: Rows per run when the batch dimension is named.
        threads: onnxruntime intra-op threads.

    Raises:
        DataInputError: The data holds no sample.
        UnsupportedError: The model has no float output (or none 2-D for ``top1``), or onnxruntime fails.
    """

    def __init__(self, fp32: ir.Model, data: Any, *, metric: Metric, samples: int, batch_size: int | None = 1,
                 threads: int = 1) -> None:
        source = open_data(data)
        validator = SampleValidator(fp32, batch_size=batch_size)
        runs = (feed for sample in source for feed in validator.feeds(sample))
        self.feeds: list[dict[str, np.ndarray]] = list(itertools.islice(runs, samples))
        if not self.feeds:
            raise DataInputError(f"{source.description} holds no samples to measure fidelity on",
                                 "give at least one calibration sample")
        self.metric = metric
        self.threads = threads
        self.outputs = [v.name for v in fp32.graph.outputs]
        self.expected = self._run(fp32)
        stats = self._stats(self.expected)
        if not any(self._value(s) is not None for s in stats.values()):
            kind = "2-D float output (classifier logits)" if metric == "top1" else "float output"
            raise UnsupportedError(f"metric '{metric}' needs a {kind}; the model outputs {self.outputs}",
                                   "choose another metric")

    def measure(self, model: ir.Model) -> Fidelity:
        """The score of ``model`` (same inputs and outputs as the float model)."""
        stats = self._stats(self._run(model))
        scored = [(value, name) for name, s in stats.items() if (value := self._value(s)) is not None]
        score, output = min(scored)
        sqnr = min((s.energy.sqnr_db for s in stats.values() if s.is_float), default=math.inf)
        return Fidelity(score, output, sqnr)

    def _stats(self, runs: Sequence[list[np.ndarray]]) -> dict[str, OutputStats]:
        from onnxsmith.quant_report.stats import OutputStats  # the report package: imported when tuning runs

        stats = {name: OutputStats() for name in self.outputs}
        for want, got in zip(self.expected, runs):
            for name, a, b in zip(self.outputs, want, got):
                stats[name].update(a, b)
        return stats

    def _value(self, stats: OutputStats) -> float | None:
        if not stats.is_float:
            return None
        if self.metric == "cosine":
            return stats.cosine_mean
        if self.metric == "sqnr":
            return stats.energy.sqnr_db
        return stats.top1

    def _run(self, model: ir.Model) -> list[list[np.ndarray]]:
        session = make_session(model, threads=self.threads)
        try:
            return [session.run(self.outputs, feed) for feed in self.feeds]
        except Exception as e:  # onnxruntime raises its own exception types
            raise UnsupportedError(f"onnxruntime failed while measuring fidelity: {first_line(e)}") from e
