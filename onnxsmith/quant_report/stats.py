"""Online error statistics: signal and noise energy, SQNR, and magnitude octaves.

The signal-to-quantization-noise ratio of an approximation ``q`` of a reference ``r``::

    SQNR_dB = 10 * log10( sum(r^2) / sum((r - q)^2) )

Both sums accumulate in float64 across runs, so streaming over samples gives the SQNR of all
elements together (not a mean of per-run ratios). Exact agreement is +inf dB; an all-zero
reference with any error is -inf dB. A uniform quantizer with step ``s`` that does not clip adds
noise of power ``s^2 / 12``, so ``SQNR ~ 10 log10(12 rms^2 / s^2)``: about 6 dB per bit.

Energy hides what a few huge elements do to the rest: an attention score tensor whose padded
positions hold ``-3.4e38`` has almost all its energy there, so its SQNR stays high while every
real score is rounded to zero. :class:`OctaveErrors` therefore also keeps count, signal and noise
per *magnitude octave* (element ``|r|`` in ``[2^(e-1), 2^e)``, ``e`` from ``numpy.frexp``; exact
zeros in a bin of their own), O(octaves) memory whatever the data. From the octaves:

* the **bulk** is every element below the highest run of at least ``gap`` empty octaves that has
  at least ``min_bulk`` of the nonzero elements beneath it (all elements when there is no such
  gap): values far above the bulk (masks, sentinels) are a separate mode;
* the **bulk SQNR** is the SQNR over the bulk alone, and the **typical magnitude** is the
  bulk's median octave (its geometric middle, ``2^(e - 1/2)``).

Large arrays are processed in blocks, so temporaries stay a few MiB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ErrorEnergy", "OctaveErrors", "OutputStats", "TensorStats", "sqnr_db"]

_BLOCK = 1 << 20
_LOWEST = -160  # frexp exponents are clipped to [_LOWEST, _HIGHEST]: float32 spans [-148, 129]
_HIGHEST = 160
_BINS = _HIGHEST - _LOWEST + 2  # bin 0 holds exact zeros


def sqnr_db(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)`` with +inf for no noise and -inf for noise on a zero signal."""
    if noise <= 0:
        return math.inf
    if signal <= 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _blocks(*arrays: np.ndarray):
    """Flat float64 slices of equally sized arrays, ``_BLOCK`` elements at a time."""
    flats = [np.ravel(a) for a in arrays]
    for start in range(0, flats[0].size, _BLOCK):
        yield [f[start:start + _BLOCK].astype(np.float64) for f in flats]


@dataclass
class ErrorEnergy:
    """Running ``sum(r^2)``, ``sum((r - q)^2)`` and element count."""

    signal: float = 0.0
    noise: float = 0.0
    count: int = 0

    def add(self, r: np.ndarray, q: np.ndarray) -> None:
        """Adds finite float64 elements ``r`` (reference) and ``q`` (approximation)."""
        self.signal += float(np.dot(r, r))
        d = r - q
        self.noise += float(np.dot(d, d))
        self.count += int(r.size)

    @property
    def sqnr_db(self) -> float:
        return sqnr_db(self.signal, self.noise)


@dataclass
class OctaveErrors:
    """Count, signal and noise energy per magnitude octave of the reference (module docstring)."""

    count: np.ndarray = field(default_factory=lambda: np.zeros(_BINS, np.int64))
    signal: np.ndarray = field(default_factory=lambda: np.zeros(_BINS))
    noise: np.ndarray = field(default_factory=lambda: np.zeros(_BINS))

    def add(self, r: np.ndarray, q: np.ndarray) -> None:
        """Adds finite float64 elements ``r`` (reference) and ``q`` (approximation)."""
        magnitude = np.abs(r)
        exponent = np.frexp(magnitude)[1]
        index = np.where(magnitude > 0, np.clip(exponent, _LOWEST, _HIGHEST) - _LOWEST + 1, 0)
        self.count += np.bincount(index, minlength=_BINS)
        self.signal += np.bincount(index, weights=r * r, minlength=_BINS)
        d = r - q
        self.noise += np.bincount(index, weights=d * d, minlength=_BINS)

    @property
    def sqnr_db(self) -> float:
        return sqnr_db(float(self.signal.sum()), float(self.noise.sum()))

    def bulk_top(self, gap: int = 6, min_bulk: float = 0.05) -> int:
        """Index of the highest octave of the bulk (see module docstring); 0 when all are zero."""
        occupied = np.flatnonzero(self.count[1:]) + 1
        if occupied.size == 0:
            return 0
        nonzero = float(self.count[1:].sum())
        below = np.cumsum(self.count[occupied])
        wide = np.flatnonzero(np.diff(occupied) - 1 >= gap)
        for i in wide[::-1]:
            if below[i] >= min_bulk * nonzero:
                return int(occupied[i])
        return int(occupied[-1])

    def bulk_sqnr_db(self, gap: int = 6, min_bulk: float = 0.05) -> float:
        """SQNR over the bulk's elements only."""
        top = self.bulk_top(gap, min_bulk) + 1
        return sqnr_db(float(self.signal[:top].sum()), float(self.noise[:top].sum()))

    def separated(self, gap: int = 6, min_bulk: float = 0.05) -> int:
        """Number of elements above the bulk (a separate high mode)."""
        return int(self.count[self.bulk_top(gap, min_bulk) + 1:].sum())

    def typical(self, gap: int = 6, min_bulk: float = 0.05) -> float:
        """Median nonzero magnitude of the bulk, to within its octave; 0 when all are zero."""
        top = self.bulk_top(gap, min_bulk)
        counts = self.count[1:top + 1]
        if top == 0 or counts.sum() == 0:
            return 0.0
        median = int(np.searchsorted(np.cumsum(counts), counts.sum() / 2)) + 1
        return math.ldexp(1.0, median - 1 + _LOWEST - 1) * math.sqrt(2.0)


@dataclass
class TensorStats:
    """What quantization does to one tensor, accumulated over runs.

    Attributes:
        own: The tensor quantized alone vs its fp32 value, per octave.
        through_model: The quantized model's dequantized value vs the fp32 value (it carries the
            error of everything quantized upstream too); activations only.
        observed_min: Smallest finite fp32 element seen.
        observed_max: Largest finite fp32 element seen.
        clipped: Elements outside the representable range (saturated).
        nonfinite: Elements skipped because a side was NaN or infinite.
        channel_absmax: Largest ``|x|`` per index of the last axis, when tracked (MatMul inputs).
        track_channels: Whether to track ``channel_absmax``.
        per_channel_sqnr_db: For a weight quantized per tensor, the SQNR it gets per channel.
    """

    own: OctaveErrors = field(default_factory=OctaveErrors)
    through_model: ErrorEnergy = field(default_factory=ErrorEnergy)
    observed_min: float = math.inf
    observed_max: float = -math.inf
    clipped: int = 0
    nonfinite: int = 0
    channel_absmax: np.ndarray | None = None
    track_channels: bool = False
    per_channel_sqnr_db: float | None = None

    @property
    def count(self) -> int:
        return int(self.own.count.sum())

    def update(self, reference: np.ndarray, own: np.ndarray, *, saturated: np.ndarray | None = None,
               through_model: np.ndarray | None = None) -> None:
        """Adds one run's tensor.

        Args:
            reference: The fp32 model's value.
            own: The value quantized alone (same shape).
            saturated: Mask of elements clipped at the range ends, if known.
            through_model: The quantized model's dequantized value, for activations.
        """
        if self.track_channels and reference.ndim >= 1 and reference.size:
            finite = np.where(np.isfinite(reference), np.abs(reference), 0.0)
            channels = finite.reshape(-1, reference.shape[-1]).max(axis=0)
            self.channel_absmax = (channels if self.channel_absmax is None or self.channel_absmax.shape != channels.shape
                                   else np.maximum(self.channel_absmax, channels))
        if saturated is not None:
            self.clipped += int(np.count_nonzero(saturated & np.isfinite(reference)))
        others = (own,) if through_model is None else (own, through_model)
        for block in _blocks(reference, *others):
            finite = np.isfinite(block[0])
            for other in block[1:]:
                finite &= np.isfinite(other)
            if not finite.all():
                self.nonfinite += int(finite.size - np.count_nonzero(finite))
                block = [b[finite] for b in block]
            r = block[0]
            if r.size == 0:
                continue
            self.observed_min = min(self.observed_min, float(r.min()))
            self.observed_max = max(self.observed_max, float(r.max()))
            self.own.add(r, block[1])
            if through_model is not None:
                self.through_model.add(r, block[2])

    @property
    def channel_outlier_ratio(self) -> float | None:
        """``max / median`` of the per-channel ``|x|`` maxima, when tracked."""
        if self.channel_absmax is None or self.channel_absmax.size < 2:
            return None
        median = float(np.median(self.channel_absmax))
        peak = float(self.channel_absmax.max())
        return math.inf if median == 0 and peak > 0 else (peak / median if median > 0 else 1.0)


@dataclass
class OutputStats:
    """Fidelity of one model output, accumulated over runs.

    Float outputs: SQNR, max absolute error and the cosine similarity of each row (the leading
    index: one sample of a batch, flattened), with top-1 agreement for 2-D outputs (argmax over
    the last axis). Other outputs: the fraction of equal elements.
    """

    energy: ErrorEnergy = field(default_factory=ErrorEnergy)
    max_abs: float = 0.0
    cosine_sum: float = 0.0
    cosine_min: float = math.inf
    rows: int = 0
    top1_agree: int = 0
    top1_rows: int = 0
    equal: int = 0
    compared: int = 0
    is_float: bool = True

    def update(self, reference: np.ndarray, quantized: np.ndarray) -> None:
        reference, quantized = np.asarray(reference), np.asarray(quantized)
        if reference.shape != quantized.shape:
            raise ValueError(f"shape {quantized.shape} instead of {reference.shape}")
        if reference.dtype.kind != "f":
            self.is_float = False
            self.equal += int(np.count_nonzero(reference == quantized))
            self.compared += int(reference.size)
            return
        r, q = reference.astype(np.float64), quantized.astype(np.float64)
        finite = np.isfinite(r) & np.isfinite(q)
        self.energy.add(r[finite], q[finite])
        if finite.any():
            self.max_abs = max(self.max_abs, float(np.abs(r[finite] - q[finite]).max()))
        rows_r = np.where(finite, r, 0.0).reshape(r.shape[0] if r.ndim else 1, -1)
        rows_q = np.where(finite, q, 0.0).reshape(rows_r.shape)
        norm_r, norm_q = np.linalg.norm(rows_r, axis=1), np.linalg.norm(rows_q, axis=1)
        norms = norm_r * norm_q
        dots = np.einsum("ij,ij->i", rows_r, rows_q)
        # Two zero rows agree (1); a zero row against a non-zero one shares no direction (0).
        cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(norm_r == norm_q, 1.0, 0.0))
        self.cosine_sum += float(cosines.sum())
        self.cosine_min = min(self.cosine_min, float(cosines.min()))
        self.rows += int(cosines.size)
        if r.ndim == 2 and r.shape[1] > 1:
            self.top1_agree += int(np.count_nonzero(r.argmax(axis=1) == q.argmax(axis=1)))
            self.top1_rows += int(r.shape[0])

    @property
    def cosine_mean(self) -> float | None:
        return self.cosine_sum / self.rows if self.rows else None

    @property
    def top1(self) -> float | None:
        return self.top1_agree / self.top1_rows if self.top1_rows else None
