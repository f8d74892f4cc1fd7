"""A mergeable, order-independent histogram with power-of-two bin widths.

Bins are anchored at zero: bin ``k`` covers ``[k * w, (k + 1) * w)`` with ``w = 2 ** exponent``.
The histogram stores the counts of bins ``start .. start + len(counts) - 1``, which cover every
finite value seen. ``exponent`` is always the *smallest* integer (not below ``MIN_EXPONENT``) for
which the observed range ``[min, max]`` fits in at most ``max_bins`` bins and every bin index is
exactly representable (``|x| / w < 2 ** 52``).

Why this design (instead of onnxruntime's ``HistogramCollector``, which widens a symmetric range
by whole bins and never coarsens, or rebinning, which smears counts):

* Growing the range only ever *doubles* ``w``: bin ``k`` at width ``w`` lies inside bin
  ``k >> 1`` at width ``2w``, so coarsening is an exact sum of counts, never an approximation.
* ``x / w`` is exact in float64 for a power of two, so the bin of a value does not depend on
  rounding, and the chosen exponent depends only on the final ``[min, max]``.
* Together: feeding the same values in any order, in any batching, or merging histograms built
  on parts of the data gives *identical* counts. Streaming calibration equals batch calibration.

Memory is O(max_bins) per histogram whatever the number of values; updates process large
arrays in blocks so the temporary copies stay small (float32 data is scaled in float32 while the
bin width is at most 1, exactly as in float64). Between ``max_bins / 2`` and
``max_bins`` bins are in use once the data has some spread. Non-finite values (NaN, +-inf) are
not binned; observers count them separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DEFAULT_MAX_BINS", "MIN_EXPONENT", "Histogram"]

#: Default bin budget: between 2048 and 4096 bins in use over the observed range.
DEFAULT_MAX_BINS = 4096
#: Smallest bin width is ``2 ** MIN_EXPONENT`` (the float32 subnormal step).
MIN_EXPONENT = -149
#: Bin indices stay below ``2 ** _INDEX_BITS`` in magnitude, so float64 holds them exactly.
_INDEX_BITS = 52
#: Values binned per numpy call (bounds temporaries to a few MiB).
_BLOCK = 1 << 18
#: float32 holds the scale ``2 ** -exponent`` up to this exponent of two (its largest is 2**127).
_FLOAT32_SCALE_BITS = 127


def _bin_index(x: float | np.ndarray, exponent: int) -> np.ndarray:
    """``floor(x / 2**exponent)`` as int64 (exact: division by a power of two)."""
    return np.floor(np.ldexp(np.asarray(x, dtype=np.float64), -exponent)).astype(np.int64)


def required_exponent(lo: float, hi: float, max_bins: int) -> int:
    """Smallest exponent whose bins cover ``[lo, hi]`` in at most ``max_bins`` bins.

    Monotone in the range: a wider range never needs a smaller exponent, which is what makes
    streaming and batch histograms identical.
    """
    absmax = max(abs(lo), abs(hi))
    exponent = MIN_EXPONENT
    if absmax > 0:
        exponent = max(exponent, math.frexp(absmax)[1] - _INDEX_BITS)
    spread = hi - lo
    if spread > 0:
        exponent = max(exponent, math.frexp(spread / max_bins)[1] - 2)
    while int(_bin_index(hi, exponent)) - int(_bin_index(lo, exponent)) + 1 > max_bins:
        exponent += 1
    return exponent


@dataclass
class Histogram:
    """Counts of finite values in power-of-two-wide bins anchored at zero.

    Attributes:
        max_bins: Bin budget (at least 2).
        exponent: Bin width is ``2 ** exponent``.
        start: Index of the first stored bin.
        counts: Counts per bin (int64).
        min: Smallest finite value seen (``inf`` while empty).
        max: Largest finite value seen (``-inf`` while empty).
    """

    max_bins: int = DEFAULT_MAX_BINS
    exponent: int = MIN_EXPONENT
    start: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    min: float = math.inf
    max: float = -math.inf

    def __post_init__(self) -> None:
        if self.max_bins < 2:
            raise ValueError(f"a histogram needs at least 2 bins, got max_bins={self.max_bins}")

    @property
    def width(self) -> float:
        """Width of one bin."""
        return math.ldexp(1.0, self.exponent)

    @property
    def total(self) -> int:
        """Number of values counted."""
        return int(self.counts.sum())

    @property
    def edges(self) -> np.ndarray:
        """Bin edges, ``len(counts) + 1`` of them (float64)."""
        return np.ldexp(np.arange(self.start, self.start + len(self.counts) + 1, dtype=np.float64), self.exponent)

    def update(self, values: np.ndarray) -> int:
        """Counts the finite values of ``values`` (any shape, any float dtype).

        Returns:
            The number of non-finite values skipped.
        """
        flat = np.asarray(values).reshape(-1)
        skipped = 0
        for offset in range(0, flat.size, _BLOCK):
            part = flat[offset:offset + _BLOCK]
            low, high = part.min(), part.max()
            if not (np.isfinite(low) and np.isfinite(high)):  # NaN or inf somewhere
                finite = part[np.isfinite(part)]
                skipped += part.size - finite.size
                if not finite.size:
                    continue
                part, low, high = finite, finite.min(), finite.max()
            self._add_block(part, float(low), float(high))
        return skipped

    def merge(self, other: Histogram) -> None:
        """Adds the counts of ``other`` (same ``max_bins``); the result equals one histogram of both."""
        if other.max_bins != self.max_bins:
            raise ValueError(f"cannot merge histograms with {self.max_bins} and {other.max_bins} max bins")
        if other.total == 0:
            return
        other = other.copy()
        self._grow(min(self.min, other.min), max(self.max, other.max), other.exponent)
        other._coarsen(self.exponent)
        offset = other.start - self.start
        self.counts[offset:offset + len(other.counts)] += other.counts

    def copy(self) -> Histogram:
        return Histogram(self.max_bins, self.exponent, self.start, self.counts.copy(), self.min, self.max)

    def coarsened(self, max_bins: int) -> Histogram:
        """A copy with at most ``max_bins`` bins (bins merged exactly), or ``self`` if it has fewer."""
        if max_bins >= self.max_bins or self.total == 0:
            return self
        coarse = Histogram(max_bins, self.exponent, self.start, self.counts.copy(), self.min, self.max)
        coarse._coarsen(required_exponent(self.min, self.max, max_bins))
        return coarse

    def including_zero(self) -> Histogram:
        """A copy coarsened so that its bins, stretched to reach zero, fit ``max_bins`` (or ``self``).

        Views laid out from zero (:meth:`folded`, symmetric windows) need this: data far from
        zero, e.g. all in ``[100, 101]``, has fine bins whose indices start far from 0.
        """
        exponent = required_exponent(min(self.min, 0.0), max(self.max, 0.0), self.max_bins)
        if self.total == 0 or exponent <= self.exponent:
            return self
        coarse = self.copy()
        coarse._coarsen(exponent)
        return coarse

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """Counts of ``|x|`` from zero: ``(counts, edges)``, at most ``max_bins`` bins.

        Bin ``k < 0`` covers ``[k w, (k + 1) w)``, i.e. ``|x|`` in ``(-(k + 1) w, -k w]``: it folds
        onto bin ``-k - 1`` (exact up to the measure-zero bin boundaries). Uses the bins of
        :meth:`including_zero`.
        """
        if self.total == 0:
            return np.zeros(0, np.int64), np.zeros(1)
        if self is not (wide := self.including_zero()):
            return wide.folded()
        idx = np.arange(self.start, self.start + len(self.counts))
        folded_idx = np.where(idx < 0, -idx - 1, idx)
        counts = np.bincount(folded_idx, weights=self.counts).astype(np.int64)
        edges = np.ldexp(np.arange(len(counts) + 1, dtype=np.float64), self.exponent)
        return counts, edges

    def _add_block(self, block: np.ndarray, low: float, high: float) -> None:
        self._grow(min(self.min, low), max(self.max, high), self.exponent)
        if block.dtype == np.float32 and -_FLOAT32_SCALE_BITS <= self.exponent <= 0:
            # x / w in float32 is exact too: a power-of-two scale of at least 1 cannot underflow,
            # and |x| / w < 2**52 is far below float32's largest value (half the bytes to move)
            scaled = np.multiply(block, np.float32(math.ldexp(1.0, -self.exponent)))
        else:
            scaled = block.astype(np.float64)  # x / w, in place: exact, w is a power of two
            np.multiply(scaled, math.ldexp(1.0, -self.exponent), out=scaled)
        np.floor(scaled, out=scaled)
        index = scaled.astype(np.int64)
        index -= self.start
        self.counts += np.bincount(index, minlength=len(self.counts))

    def _grow(self, lo: float, hi: float, at_least: int) -> None:
        """Widens the stored bins to cover ``[lo, hi]``, coarsening as the bin budget requires."""
        exponent = max(required_exponent(lo, hi, self.max_bins), at_least, self.exponent)
        if len(self.counts):
            self._coarsen(exponent)
        else:
            self.exponent, self.start = exponent, int(_bin_index(lo, exponent))
        first, last = int(_bin_index(lo, exponent)), int(_bin_index(hi, exponent))
        if first < self.start or last >= self.start + len(self.counts):
            grown = np.zeros(last - first + 1, np.int64)
            offset = self.start - first
            grown[offset:offset + len(self.counts)] = self.counts
            self.start, self.counts = first, grown
        self.min, self.max = lo, hi

    def _coarsen(self, exponent: int) -> None:
        """Re-expresses the counts at bin width ``2 ** exponent`` (exact: bins nest)."""
        shift = exponent - self.exponent
        if shift <= 0:
            return
        shift = min(shift, 62)  # indices are below 2**52, so larger shifts give the same bins
        idx = np.arange(self.start, self.start + len(self.counts), dtype=np.int64) >> shift
        new_start = int(idx[0])
        counts = np.zeros(int(idx[-1]) - new_start + 1, np.int64)
        np.add.at(counts, idx - new_start, self.counts)
        self.exponent, self.start, self.counts = exponent, new_start, counts
