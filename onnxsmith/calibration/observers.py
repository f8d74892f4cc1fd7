"""Online observers: fixed-size summaries of a value's activations, fed one run at a time.

An observer sees each run's array once (``update``) and keeps O(channels) or O(histogram bins)
state, never the arrays themselves. Calibrators turn an observer's state into a range.

* :class:`MinMaxObserver` keeps the running minimum and maximum, per tensor or per channel along
  ``axis``. With ``averaging_constant`` it keeps an exponential moving average (EMA) of each
  update's extremes instead: ``m <- m + c * (m_update - m)``, starting from the first update
  (PyTorch's ``MovingAverageMinMaxObserver``). onnxruntime's ``moving_average`` differs: it
  averages the per-run extremes arithmetically within a collection step and applies the EMA
  only between steps (``max_intermediate_outputs``).
* :class:`HistogramObserver` keeps a :class:`~onnxsmith.calibration.histogram.Histogram` of the
  values (per tensor), for the percentile, entropy and MSE calibrators.

Both skip non-finite values (NaN, +-inf) and count them in ``nonfinite``; both count the
elements seen in ``count`` so a report can show how much data a range rests on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from onnxsmith.calibration.histogram import DEFAULT_MAX_BINS, Histogram

__all__ = ["HistogramObserver", "MinMaxObserver", "Observer"]


@dataclass
class Observer:
    """Common state: elements seen, non-finite elements skipped, and their finite extremes."""

    count: int = 0
    nonfinite: int = 0
    observed_min: float = math.inf
    observed_max: float = -math.inf

    def update(self, values: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _note(self, values: np.ndarray) -> tuple[np.ndarray | None, float, float]:
        """Counts ``values``; returns a mask of its finite elements (None when all are) and their extremes."""
        self.count += int(values.size)
        if values.size == 0:
            return None, math.inf, -math.inf
        low, high = float(values.min()), float(values.max())
        finite = None
        if not (math.isfinite(low) and math.isfinite(high)):  # NaN or inf somewhere
            finite = np.isfinite(values)
            self.nonfinite += int(values.size - np.count_nonzero(finite))
            if not finite.any():
                return finite, math.inf, -math.inf
            low, high = float(values[finite].min()), float(values[finite].max())
        self.observed_min = min(self.observed_min, low)
        self.observed_max = max(self.observed_max, high)
        return finite, low, high


@dataclass
class MinMaxObserver(Observer):
    """Running (or moving-average) min and max, per tensor or per channel.

    Attributes:
        axis: Channel axis for per-channel ranges (negative counts from the end), or None.
        averaging_constant: EMA factor ``c`` in ``(0, 1]``, or None for the plain running extremes.
        low: Current minimum (float, or one per channel).
        high: Current maximum (float, or one per channel).
        resolved_axis: ``axis`` made non-negative once the first array's rank is known; None when
            the value is per tensor (also when its rank has no such axis).
    """

    axis: int | None = None
    averaging_constant: float | None = None
    low: float | np.ndarray | None = None
    high: float | np.ndarray | None = None
    resolved_axis: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        c = self.averaging_constant
        if c is not None and not 0.0 < c <= 1.0:
            raise ValueError(f"averaging_constant must be in (0, 1], got {c}")

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values)
        finite, low, high = self._note(values)
        if values.size == 0 or (finite is not None and not finite.any()):
            return
        if self.low is None:  # first data: fix the channel axis
            self.resolved_axis = self.axis_for(values.ndim)
        if self.resolved_axis is not None:
            channels = values.shape[self.resolved_axis]
            moved = np.moveaxis(values, self.resolved_axis, 0).reshape(channels, -1)
            mask = None if finite is None else np.moveaxis(finite, self.resolved_axis, 0).reshape(channels, -1)
            low, high = _channel_extrema(moved, mask)
            if self.low is not None and np.shape(self.low) != low.shape:
                raise ValueError(f"channel count changed from {np.size(self.low)} to {low.size} "
                                 f"along axis {self.resolved_axis}")
        self._combine(low, high)

    def axis_for(self, rank: int) -> int | None:
        """The channel axis of values of rank ``rank``, non-negative (None: the value is per tensor)."""
        axis = self.axis
        return axis % rank if axis is not None and -rank <= axis < rank else None

    def update_extremes(self, low: float | np.ndarray, high: float | np.ndarray, count: int,
                        channel_axis: int | None) -> None:
        """Takes one update's extremes, computed elsewhere, of ``count`` elements, all of them finite.

        ``low``/``high`` are scalars (``channel_axis`` None), or one per channel along
        ``channel_axis`` (:meth:`axis_for` the array's rank). The result is the one :meth:`update`
        gives on the array itself.
        """
        self.count += int(count)
        if count == 0:
            return
        if self.low is None:
            self.resolved_axis = channel_axis
        if self.resolved_axis is None:
            low, high = float(low), float(high)
        else:
            low, high = np.asarray(low, np.float64).reshape(-1), np.asarray(high, np.float64).reshape(-1)
            if self.low is not None and np.shape(self.low) != low.shape:
                raise ValueError(f"channel count changed from {np.size(self.low)} to {low.size} "
                                 f"along axis {self.resolved_axis}")
        self.observed_min = min(self.observed_min, float(np.min(low)))
        self.observed_max = max(self.observed_max, float(np.max(high)))
        self._combine(low, high)

    def _combine(self, low: float | np.ndarray, high: float | np.ndarray) -> None:
        if self.low is None:
            self.low, self.high = low, high
        elif self.averaging_constant is None:
            self.low, self.high = np.fmin(self.low, low), np.fmax(self.high, high)
        else:
            c = self.averaging_constant
            self.low = _ema(self.low, low, c)
            self.high = _ema(self.high, high, c)


def _ema(old: float | np.ndarray, new: float | np.ndarray, c: float) -> float | np.ndarray:
    """EMA step; a channel with no finite value in this update (NaN) keeps its old value."""
    step = old + c * (new - old)
    return np.where(np.isnan(new), old, step) if isinstance(step, np.ndarray) else (old if math.isnan(new) else step)


def _channel_extrema(values: np.ndarray, finite: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (channel) min and max of a 2-D array over its finite elements (``finite`` None: all
    are); NaN where a channel has none."""
    if finite is None:
        low, high = values.min(axis=1), values.max(axis=1)
    else:
        low = np.where(finite, values, np.inf).min(axis=1)
        high = np.where(finite, values, -np.inf).max(axis=1)
        low = np.where(np.isinf(low), np.nan, low)
        high = np.where(np.isinf(high), np.nan, high)
    return low.astype(np.float64), high.astype(np.float64)


@dataclass
class HistogramObserver(Observer):
    """A per-tensor histogram of the finite values (see :mod:`onnxsmith.calibration.histogram`)."""

    max_bins: int = DEFAULT_MAX_BINS
    histogram: Histogram = field(init=False)

    def __post_init__(self) -> None:
        self.histogram = Histogram(self.max_bins)

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values)
        self.count += int(values.size)
        self.nonfinite += self.histogram.update(values)
        self.observed_min, self.observed_max = self.histogram.min, self.histogram.max
