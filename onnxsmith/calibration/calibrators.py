"""Calibrators: how a value's observed activations become a quantization range.

A calibrator is a small frozen dataclass of settings with two methods: ``observer()`` makes the
online summary it needs (:mod:`onnxsmith.calibration.observers`) and ``compute(observer)`` turns
that summary into ``(min, max)``, floats or per-channel arrays.

* :class:`MinMax`: the observed extremes (optionally an EMA of them), per tensor or per channel.
* :class:`Percentile`: cuts ``(100 - percentile) / 2`` percent of the values off each end
  (symmetric: the ``percentile`` of ``|x|``), rounded outwards to the edge of the histogram bin
  holding the quantile, so the range is never narrower than the exact percentile (and at most one
  bin, under 1/2048 of the range, wider). onnxruntime returns the bin's left edge on both ends,
  so its upper end can sit up to one bin lower.
* :class:`Entropy`: the KL-optimal threshold (:mod:`onnxsmith.calibration.entropy`).
* :class:`MSE`: the expected-MSE-optimal range (:mod:`onnxsmith.calibration.mse`).

Output ranges: with ``symmetric=True`` the range is ``(-T, T)`` with ``T`` the largest magnitude of
the computed ends (not clamped; onnxruntime clamps its percentile and entropy thresholds to the
observed extremes even when symmetric). Otherwise the computed ends are clamped to the observed
``[min, max]``, so a clipping calibrator never widens the data's range.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from onnxsmith.calibration.entropy import entropy_range
from onnxsmith.calibration.histogram import DEFAULT_MAX_BINS, Histogram
from onnxsmith.calibration.mse import mse_range
from onnxsmith.calibration.observers import HistogramObserver, MinMaxObserver, Observer
from onnxsmith.errors import OnnxsmithError, closest

__all__ = ["CALIBRATORS", "Calibrator", "Entropy", "MSE", "MinMax", "Percentile", "make_calibrator",
           "percentile_range"]

Bound = float | np.ndarray

#: Histogram bins of the entropy calibrator (64 KiB per value): see :class:`Entropy`.
ENTROPY_MAX_BINS = 8192


@dataclass(frozen=True)
class Calibrator:
    """Base class: settings of one calibration method.

    Attributes:
        symmetric: Produce ``(-T, T)`` ranges.
    """

    name: ClassVar[str] = ""
    symmetric: bool = False

    def observer(self) -> Observer:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self, observer: Observer) -> tuple[Bound, Bound]:
        """The range of the observed value: ``(min, max)``, floats or per-channel float64 arrays."""
        if observer.count - observer.nonfinite == 0:
            return 0.0, 0.0
        lo, hi = self._raw_range(observer)
        return _finish(lo, hi, observer, self.symmetric)

    def _raw_range(self, observer: Observer) -> tuple[Bound, Bound]:  # pragma: no cover - abstract
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """Settings as plain data (for ``ranges.json``)."""
        return {"method": self.name, **dataclasses.asdict(self)}

    def describe(self) -> str:
        """Short label for reports, e.g. ``percentile(99.99)``."""
        return self.name


def _finish(lo: Bound, hi: Bound, observer: Observer, symmetric: bool) -> tuple[Bound, Bound]:
    if symmetric:
        t = np.maximum(np.abs(lo), np.abs(hi))
        return (-t, t) if isinstance(t, np.ndarray) else (-float(t), float(t))
    if isinstance(lo, np.ndarray):
        return lo, hi
    lo, hi = max(float(lo), observer.observed_min), min(float(hi), observer.observed_max)
    return lo, max(hi, lo)


@dataclass(frozen=True)
class MinMax(Calibrator):
    """The observed extremes.

    Attributes:
        axis: Channel axis for per-channel ranges; values whose rank lacks it stay per tensor.
        averaging_constant: EMA factor in ``(0, 1]`` for a moving average of each run's extremes.
    """

    name: ClassVar[str] = "minmax"
    axis: int | None = None
    averaging_constant: float | None = None

    def __post_init__(self) -> None:
        c = self.averaging_constant
        if c is not None and not 0.0 < c <= 1.0:
            raise OnnxsmithError(f"averaging_constant must be in (0, 1], got {c}",
                                 "0.01 is a common choice for a slow moving average")

    def observer(self) -> MinMaxObserver:
        return MinMaxObserver(axis=self.axis, averaging_constant=self.averaging_constant)

    def _raw_range(self, observer: Observer) -> tuple[Bound, Bound]:
        assert isinstance(observer, MinMaxObserver)
        if isinstance(observer.low, np.ndarray):  # a channel that never had a finite value: 0
            return np.nan_to_num(observer.low, nan=0.0), np.nan_to_num(observer.high, nan=0.0)
        return observer.low, observer.high

    def describe(self) -> str:
        parts = [f"axis={self.axis}"] if self.axis is not None else []
        if self.averaging_constant is not None:
            parts.append(f"ema={self.averaging_constant}")
        return f"minmax({', '.join(parts)})" if parts else "minmax"


@dataclass(frozen=True)
class _HistogramCalibrator(Calibrator):
    max_bins: int = DEFAULT_MAX_BINS

    def observer(self) -> HistogramObserver:
        return HistogramObserver(max_bins=self.max_bins)

    def _raw_range(self, observer: Observer) -> tuple[Bound, Bound]:
        assert isinstance(observer, HistogramObserver)
        return self._from_histogram(observer.histogram)

    def _from_histogram(self, hist: Histogram) -> tuple[float, float]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Percentile(_HistogramCalibrator):
    """Clips the outermost ``100 - percentile`` percent of the values."""

    name: ClassVar[str] = "percentile"
    percentile: float = 99.99

    def __post_init__(self) -> None:
        if not 0.0 < self.percentile <= 100.0:
            raise OnnxsmithError(f"percentile must be in (0, 100], got {self.percentile}", "e.g. 99.99")

    def _from_histogram(self, hist: Histogram) -> tuple[float, float]:
        return percentile_range(hist, self.percentile, symmetric=self.symmetric)

    def describe(self) -> str:
        return f"percentile({self.percentile:g})"


@dataclass(frozen=True)
class Entropy(_HistogramCalibrator):
    """The KL-divergence-optimal threshold (TensorRT's entropy calibration).

    A window must span at least ``num_quantized_bins`` histogram bins, so the narrowest range it
    can pick is ``num_quantized_bins / max_bins`` of the observed one: the finer default histogram
    lets it clip far outliers. It clips what is rare, whatever its effect on the output: on
    transformer models (outlier channels in LayerNorm and GELU outputs) minmax or mse keep more
    accuracy (see :mod:`onnxsmith.calibration.entropy`).
    """

    name: ClassVar[str] = "entropy"
    max_bins: int = ENTROPY_MAX_BINS
    num_quantized_bins: int = 256
    max_candidates: int = 512

    def _from_histogram(self, hist: Histogram) -> tuple[float, float]:
        return entropy_range(hist, num_quantized_bins=self.num_quantized_bins, max_candidates=self.max_candidates,
                             symmetric=self.symmetric)


@dataclass(frozen=True)
class MSE(_HistogramCalibrator):
    """The range minimising the expected quantization MSE for ``levels`` levels."""

    name: ClassVar[str] = "mse"
    levels: int = 256

    def _from_histogram(self, hist: Histogram) -> tuple[float, float]:
        return mse_range(hist, levels=self.levels, symmetric=self.symmetric)


def _quantile(counts: np.ndarray, edges: np.ndarray, q: float, *, upper: bool) -> float:
    """The ``q``-quantile rounded outwards to its bin's edge (right edge when ``upper``)."""
    cumulative = np.cumsum(counts)
    idx = min(int(np.searchsorted(cumulative, q * cumulative[-1])), len(counts) - 1)
    return float(edges[idx + 1] if upper else edges[idx])


def percentile_range(hist: Histogram, percentile: float, *, symmetric: bool = False) -> tuple[float, float]:
    """The percentile range of a histogram (not clamped to the data)."""
    if hist.total == 0:
        return 0.0, 0.0
    if symmetric:
        counts, edges = hist.folded()
        t = min(_quantile(counts, edges, percentile / 100.0, upper=True), max(-hist.min, hist.max))
        return -t, t
    cut = (100.0 - percentile) / 200.0
    return (_quantile(hist.counts, hist.edges, cut, upper=False),
            _quantile(hist.counts, hist.edges, 1.0 - cut, upper=True))


#: Calibrators by name.
CALIBRATORS: dict[str, type[Calibrator]] = {c.name: c for c in (MinMax, Percentile, Entropy, MSE)}


def make_calibrator(name: str | Calibrator, **options: Any) -> Calibrator:
    """A calibrator from its name and options (``make_calibrator("percentile", percentile=99.9)``).

    Raises:
        OnnxsmithError: Unknown calibrator or option, or an invalid option value.
    """
    if isinstance(name, Calibrator):
        return dataclasses.replace(name, **options) if options else name
    cls = CALIBRATORS.get(name)
    if cls is None:
        best = closest(name, list(CALIBRATORS))
        raise OnnxsmithError(f"unknown calibrator '{name}' (calibrators: {', '.join(CALIBRATORS)})",
                             f"did you mean '{best}'?" if best else "pick one of those")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise OnnxsmithError(f"calibrator '{name}' has no option '{unknown[0]}' (options: {', '.join(sorted(fields))})")
    return cls(**options)

