"""The quantization report: per quantized tensor, what quantization does to it, worst first.

``quant_report(fp32, quantized, data)`` finds the quantized tensors
(:mod:`~onnxsmith.quant_report.tensors`), measures them side by side on a few samples
(:mod:`~onnxsmith.quant_report.measure`) and summarises each as a :class:`TensorReport`: scale
and zero point, integer type, granularity, the representable range ``[(qmin - zp) * s,
(qmax - zp) * s]`` (the widest over channels), the observed fp32 range, the clipped fraction, and
three SQNRs:

* ``sqnr_db``: the tensor quantized alone against its fp32 value;
* ``bulk_sqnr_db``: the same over the bulk of its values (without a separate high mode);
* ``through_model_sqnr_db`` (activations): the quantized model's dequantized value against the
  fp32 value, which includes every upstream error.

Tensors are ordered by effective SQNR, ``min(sqnr_db, bulk_sqnr_db)``, lowest first; each
below the acceptable level gets a :class:`~onnxsmith.quant_report.remedy.Remedy`. The model
outputs' fidelity (SQNR, max absolute error, cosine, top-1 agreement) closes the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import OnnxsmithError
from onnxsmith.quant_report.measure import Measurement, check_pair, measure
from onnxsmith.quant_report.remedy import Remedy, RemedyRules, suggest_remedy
from onnxsmith.quant_report.stats import OutputStats, TensorStats
from onnxsmith.quant_report.tensors import QuantizedTensor, find_quantized_tensors, integer_bounds

__all__ = ["OutputReport", "QuantReport", "TensorReport", "quant_report"]


@dataclass(frozen=True)
class TensorReport:
    """The numbers of one quantized tensor (see the module docstring).

    Attributes:
        name: The fp32 value.
        kind: ``activation`` or ``weight``.
        dtype: Integer type (``uint8``, ``int8``, ``int32``...).
        granularity: ``per-tensor``, ``per-channel(axis=k)``, ``blockwise(...)``.
        node: The quantized model's node that quantizes it.
        fp32_nodes: fp32 nodes producing or consuming it.
        scale: ``(min, max)`` over channels (equal per tensor).
        zero_point: ``(min, max)`` over channels.
        representable: Widest ``[(qmin - zp) * s, (qmax - zp) * s]`` over channels.
        observed: ``(min, max)`` of the finite fp32 values seen (weights: all of them).
        elements: Finite elements compared.
        nonfinite: Elements skipped as NaN/inf.
        clip_fraction: Fraction of elements outside the representable range.
        sqnr_db: Quantized alone vs fp32.
        bulk_sqnr_db: The same over the bulk.
        through_model_sqnr_db: The quantized model's value vs fp32 (activations).
        typical: Median ``|x|`` of the bulk (to within an octave).
        separated: Elements in a separate mode above the bulk.
        channel_outlier_ratio: Largest / median per-channel ``|x|`` maximum (MatMul inputs).
        per_channel_sqnr_db: For per-tensor weights, the SQNR per channel would give.
        remedy: The suggested fix, or None.
    """

    name: str
    kind: Literal["activation", "weight"]
    dtype: str
    granularity: str
    node: str
    fp32_nodes: tuple[str, ...]
    scale: tuple[float, float]
    zero_point: tuple[int, int]
    representable: tuple[float, float]
    observed: tuple[float, float]
    elements: int
    nonfinite: int
    clip_fraction: float | None
    sqnr_db: float
    bulk_sqnr_db: float
    through_model_sqnr_db: float | None
    typical: float
    separated: int
    channel_outlier_ratio: float | None
    per_channel_sqnr_db: float | None
    remedy: Remedy | None = None

    @property
    def effective_sqnr_db(self) -> float:
        """``min(sqnr_db, bulk_sqnr_db)``: the ranking key."""
        return min(self.sqnr_db, self.bulk_sqnr_db)

    @classmethod
    def of(cls, tensor: QuantizedTensor, stats: TensorStats, rules: RemedyRules) -> TensorReport:
        params = tensor.params
        scale = params.scale.astype(np.float64)
        zero = params.zero_point.astype(np.float64)
        qmin, qmax = integer_bounds(params.dtype)
        seen = stats.count > 0
        row = cls(
            name=tensor.name, kind=tensor.kind, dtype=params.dtype.name.lower(), granularity=tensor.granularity,
            node=tensor.node, fp32_nodes=tensor.fp32_nodes,
            scale=(float(scale.min()), float(scale.max())), zero_point=(int(zero.min()), int(zero.max())),
            representable=(float(((qmin - zero) * scale).min()), float(((qmax - zero) * scale).max())),
            observed=(stats.observed_min, stats.observed_max) if seen else (math.nan, math.nan),
            elements=stats.count, nonfinite=stats.nonfinite,
            clip_fraction=stats.clipped / stats.count if seen and params.dtype in _CLIPPABLE else None,
            sqnr_db=stats.own.sqnr_db, bulk_sqnr_db=stats.own.bulk_sqnr_db(),
            through_model_sqnr_db=stats.through_model.sqnr_db if tensor.kind == "activation" else None,
            typical=stats.own.typical(), separated=stats.own.separated(),
            channel_outlier_ratio=stats.channel_outlier_ratio, per_channel_sqnr_db=stats.per_channel_sqnr_db)
        return replace(row, remedy=suggest_remedy(row, rules))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "dtype": self.dtype, "granularity": self.granularity,
            "node": self.node, "fp32_nodes": list(self.fp32_nodes),
            "scale": {"min": self.scale[0], "max": self.scale[1]},
            "zero_point": {"min": self.zero_point[0], "max": self.zero_point[1]},
            "representable": list(self.representable), "observed": list(self.observed),
            "elements": self.elements, "nonfinite": self.nonfinite, "clip_fraction": self.clip_fraction,
            "sqnr_db": self.sqnr_db, "bulk_sqnr_db": self.bulk_sqnr_db,
            "effective_sqnr_db": self.effective_sqnr_db, "through_model_sqnr_db": self.through_model_sqnr_db,
            "typical_abs": self.typical, "separated": self.separated,
            "channel_outlier_ratio": self.channel_outlier_ratio, "per_channel_sqnr_db": self.per_channel_sqnr_db,
            "remedy": self.remedy.to_dict() if self.remedy is not None else None,
        }


_CLIPPABLE = frozenset({ir.DataType.UINT8, ir.DataType.INT8, ir.DataType.UINT16, ir.DataType.INT16,
                        ir.DataType.UINT4, ir.DataType.INT4})


@dataclass(frozen=True)
class OutputReport:
    """Fidelity of one model output over the measured runs."""

    name: str
    sqnr_db: float | None
    max_abs: float | None
    cosine_mean: float | None
    cosine_min: float | None
    top1: float | None
    equal_fraction: float | None

    @classmethod
    def of(cls, name: str, stats: OutputStats) -> OutputReport:
        if not stats.is_float:
            return cls(name, None, None, None, None, None, stats.equal / stats.compared if stats.compared else None)
        return cls(name, stats.energy.sqnr_db, stats.max_abs, stats.cosine_mean,
                   stats.cosine_min if stats.rows else None, stats.top1, None)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class QuantReport:
    """The whole report.

    Attributes:
        tensors: Every measured tensor, worst (lowest effective SQNR) first.
        outputs: Model output fidelity, in output order.
        runs: Model runs measured.
        passes: Passes over the data (more than one in chunked mode).
        unmatched: Quantized tensors with no fp32 counterpart, ``"node: why"``.
        seconds: Wall time of the measurement.
    """

    tensors: tuple[TensorReport, ...]
    outputs: tuple[OutputReport, ...]
    runs: int
    passes: int
    unmatched: tuple[str, ...]
    seconds: float

    def worst(self, count: int = 10) -> tuple[TensorReport, ...]:
        """The ``count`` worst tensors."""
        return self.tensors[:count]

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """JSON-ready data (non-finite floats are left to :func:`onnxsmith.report.to_json`)."""
        shown = self.tensors if top is None else self.tensors[:top]
        return {
            "runs": self.runs, "passes": self.passes, "seconds": self.seconds,
            "counts": {"activations": sum(t.kind == "activation" for t in self.tensors),
                       "weights": sum(t.kind == "weight" for t in self.tensors),
                       "with_remedy": sum(t.remedy is not None for t in self.tensors)},
            "outputs": [o.to_dict() for o in self.outputs],
            "tensors": [t.to_dict() for t in shown],
            "unmatched": list(self.unmatched),
        }


def build_report(found: tuple[QuantizedTensor, ...], measurement: Measurement, unmatched: tuple[str, ...],
                 rules: RemedyRules = RemedyRules()) -> QuantReport:
    """A :class:`QuantReport` from measured tensors (for callers that measured themselves)."""
    rows = [TensorReport.of(t, measurement.tensors[t.name], rules) for t in found if t.name in measurement.tensors]
    rows.sort(key=lambda r: (r.effective_sqnr_db, r.sqnr_db, r.name))
    outputs = tuple(OutputReport.of(name, stats) for name, stats in measurement.outputs.items())
    return QuantReport(tuple(rows), outputs, measurement.runs, len(measurement.chunks), unmatched,
                       measurement.seconds)


def quant_report(fp32: ir.Model, quantized: ir.Model, data: Any, *, samples: int = 8, batch_size: int | None = 1,
                 max_tensors_per_run: int | None = None, memory_budget_mb: float | None = 512.0,
                 threads: int = 1, rules: RemedyRules = RemedyRules()) -> QuantReport:
    """Measures every quantized tensor of ``quantized`` against ``fp32`` on ``data``.

    Args:
        fp32: The float model.
        quantized: The same model quantized (QDQ, or weights in fused integer kernels).
        data: Samples in any form :func:`~onnxsmith.calibration.open_data` reads.
        samples: Most model runs measured.
        batch_size: Rows per run when the batch dimension is named.
        max_tensors_per_run: Chunked mode: most activations exposed per pass over the data.
        memory_budget_mb: Chunked mode: most estimated MiB of exposed activations per run.
        threads: onnxruntime intra-op threads.
        rules: Remedy thresholds.

    Raises:
        OnnxsmithError: No quantized tensor is found or none matches the fp32 model; and the
            errors of :func:`~onnxsmith.quant_report.measure.measure`.
    """
    check_pair(fp32, quantized)
    found = find_quantized_tensors(quantized, fp32)
    if not found.tensors:
        _no_tensors(fp32, quantized, found.unmatched)
    measurement = measure(fp32, quantized, found.tensors, data, samples=samples, batch_size=batch_size,
                          max_tensors_per_run=max_tensors_per_run, memory_budget_mb=memory_budget_mb,
                          threads=threads)
    return build_report(found.tensors, measurement, found.unmatched, rules)


def _no_tensors(fp32: ir.Model, quantized: ir.Model, unmatched: tuple[str, ...]) -> None:
    if unmatched:
        raise OnnxsmithError(f"none of the {len(unmatched)} quantized tensors matches a value of the fp32 model "
                             f"(first: {unmatched[0]})", "give the fp32 model the quantized one was made from")
    if find_quantized_tensors(fp32, quantized).tensors:
        raise OnnxsmithError("no quantized tensors in the second model, but the first has some",
                             "give the fp32 model first and the quantized model second")
    raise OnnxsmithError("no quantized tensors found (no QuantizeLinear/DequantizeLinear pairs, DequantizeLinear "
                         "weights, DynamicQuantizeMatMul or MatMulNBits)", "give a quantized model")
