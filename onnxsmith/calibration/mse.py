"""MSE-optimal clipping: the range that minimises the expected squared quantization error.

Quantizing to ``levels`` evenly spaced points on ``[lo, hi]`` (step ``s = (hi - lo) / (levels - 1)``)
maps ``x`` to the nearest grid point after clipping to ``[lo, hi]``. Its expected squared error
over the histogram is computed in closed form, treating the values in each bin ``[a, b)`` as
uniformly spread (density ``count / (b - a)``):

* inside ``[lo, hi]`` the error is the distance to the nearest grid point. With
  ``u = (x - lo) / s`` and ``r(u) = u - round(u)``, ``integral r^2 du = S(u)`` where
  ``S(u) = floor(u) / 12 + phi(frac(u))``, ``phi(f) = f^3 / 3`` for ``f <= 1/2`` and
  ``1/12 + (f - 1)^3 / 3`` above; so a bin part ``[a', b']`` contributes ``s^3 (S(u_b') - S(u_a'))``.
* below ``lo`` it is ``integral (lo - x)^2 dx = ((lo - a)^3 - (lo - b')^3) / 3``, and symmetrically
  above ``hi``.

Candidates: symmetric ranges ``[-T, T]`` with ``T = alpha * max|x|``; otherwise ``alpha * [min', max']``
(``min' = min(min, 0)``, ``max' = max(max, 0)``: a quantization range always holds zero), followed
by two rounds of coordinate descent on each end. Each search evaluates a grid of ``alpha`` and
then refines around the best point. The grid is exact ``[lo, hi]``: the zero-point nudging a
quantizer applies later is ignored (it moves the grid by less than one step).
"""

from __future__ import annotations

import numpy as np

from onnxsmith.calibration.histogram import Histogram

__all__ = ["expected_mse", "mse_range"]

_GRID = 128
_REFINE = 32
#: The search runs on the histogram coarsened to this many bins (exact merging; enough detail
#: because each bin's error is integrated in closed form, whatever its width).
SEARCH_BINS = 1024


def _sawtooth_integral(u: np.ndarray) -> np.ndarray:
    """``S(u)``: integral from 0 to ``u`` of the squared distance to the nearest integer."""
    whole = np.floor(u)
    f = u - whole
    part = np.where(f <= 0.5, f ** 3 / 3.0, 1.0 / 12.0 + (f - 1.0) ** 3 / 3.0)
    return whole / 12.0 + part


def expected_mse(counts: np.ndarray, edges: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 levels: int) -> np.ndarray:
    """Expected squared error per value of quantizing the histogram to each range ``[lo[j], hi[j]]``.

    Args:
        counts: Counts per bin, shape ``[n]``.
        edges: Bin edges, shape ``[n + 1]``.
        lo, hi: Candidate ranges, shape ``[c]`` (``lo < hi``).
        levels: Number of quantization levels (256 for 8 bits).

    Returns:
        Shape ``[c]``: the mean squared error for each candidate.
    """
    keep = counts > 0
    a, b = edges[:-1][keep][None, :], edges[1:][keep][None, :]
    density = (counts[keep] / (edges[1:] - edges[:-1])[keep])[None, :]
    lo, hi = np.asarray(lo, np.float64)[:, None], np.asarray(hi, np.float64)[:, None]
    step = (hi - lo) / (levels - 1)
    inner_a, inner_b = np.clip(a, lo, hi), np.clip(b, lo, hi)
    rounding = step ** 3 * (_sawtooth_integral((inner_b - lo) / step) - _sawtooth_integral((inner_a - lo) / step))
    below = (np.maximum(lo - a, 0) ** 3 - np.maximum(lo - np.minimum(b, lo), 0) ** 3) / 3.0
    above = (np.maximum(b - hi, 0) ** 3 - np.maximum(np.maximum(a, hi) - hi, 0) ** 3) / 3.0
    return (density * (rounding + below + above)).sum(axis=1) / counts.sum()


def _search(cost, low: float, high: float) -> float:
    """Minimises ``cost(x)`` over ``[low, high]``: a grid, then a finer grid around the best point."""
    grid = np.linspace(low, high, _GRID)
    best = int(np.argmin(cost(grid)))
    fine = np.linspace(grid[max(best - 1, 0)], grid[min(best + 1, _GRID - 1)], _REFINE)
    return float(fine[int(np.argmin(cost(fine)))])


def mse_range(hist: Histogram, *, levels: int = 256, symmetric: bool = False) -> tuple[float, float]:
    """The clipping range minimising the expected quantization MSE (not clamped to the data)."""
    if hist.total == 0:
        return 0.0, 0.0
    hist = hist.coarsened(SEARCH_BINS)
    counts, edges = hist.counts.astype(np.float64), hist.edges
    lo0, hi0 = min(hist.min, 0.0), max(hist.max, 0.0)
    if hi0 - lo0 == 0:
        return 0.0, 0.0
    floor = 1.0 / (levels * 4)  # smallest fraction of the range considered

    if symmetric:
        t0 = max(-lo0, hi0)
        t = _search(lambda ts: expected_mse(counts, edges, -ts, ts, levels), floor * t0, t0)
        return -t, t

    def cost_scale(alphas: np.ndarray) -> np.ndarray:
        return expected_mse(counts, edges, alphas * lo0, alphas * hi0, levels)

    alpha = _search(cost_scale, floor, 1.0)
    lo, hi = alpha * lo0, alpha * hi0
    for _ in range(2):  # coordinate descent on each end that is not pinned at zero
        if hi0 > 0:
            hi = _search(lambda his: expected_mse(counts, edges, np.full_like(his, lo), his, levels),
                         max(lo, 0.0) + floor * (hi0 - lo0), hi0)
        if lo0 < 0:
            lo = _search(lambda los: expected_mse(counts, edges, los, np.full_like(los, hi), levels),
                         lo0, min(hi, 0.0) - floor * (hi0 - lo0))
    return lo, hi
