"""Entropy calibration: the vectorised KL search equals the per-window reference, and the windows searched."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxsmith.calibration.entropy import entropy_range, first_minimum, window_divergence, window_divergences
from onnxsmith.calibration.histogram import Histogram


def _reference(counts: np.ndarray, begins: np.ndarray, ends: np.ndarray, nq: int) -> np.ndarray:
    return np.array([window_divergence(counts, int(b), int(e), nq) for b, e in zip(begins, ends)])


def _assert_same(counts: np.ndarray, begins: np.ndarray, ends: np.ndarray, nq: int) -> None:
    ours, reference = window_divergences(counts, begins, ends, nq), _reference(counts, begins, ends, nq)
    np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(reference))
    finite = np.isfinite(reference)
    np.testing.assert_allclose(ours[finite], reference[finite], rtol=1e-10, atol=1e-13)
    if finite.any():
        assert first_minimum(ours) == first_minimum(reference)


@st.composite
def _histograms(draw):
    """Integer counts of a bulk with tails, gaps and far outliers, ``nq`` and a set of windows."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bins = draw(st.integers(80, 700))
    x = np.concatenate([rng.standard_normal(draw(st.integers(100, 20_000))),
                        rng.laplace(size=draw(st.integers(0, 2_000))) * draw(st.sampled_from([0.5, 3.0])),
                        rng.uniform(-1, 1, draw(st.integers(0, 5))) * 40])  # a few far outliers
    counts = np.histogram(x, bins=bins, range=(-50, 50) if draw(st.booleans()) else None)[0].astype(np.float64)
    if draw(st.booleans()):
        counts[rng.integers(0, bins, bins // 3)] = 0  # gaps
    nq = draw(st.sampled_from([2, 8, 32]))
    centre = draw(st.integers(0, bins))
    widths = np.arange(1, bins + 1)
    begins, ends = np.maximum(centre - widths, 0), np.minimum(centre + widths, bins)
    if draw(st.booleans()):  # one-sided windows from a fixed start, as for one-signed data
        begins = np.full_like(widths, draw(st.integers(0, bins // 2)))
        ends = np.minimum(begins + widths, bins)
    keep = ends - begins >= nq
    return counts, begins[keep], ends[keep], nq


@settings(max_examples=60, deadline=None)
@given(_histograms())
def test_window_divergences_equal_the_per_window_reference(case):
    counts, begins, ends, nq = case
    if len(begins):
        _assert_same(counts, begins, ends, nq)


def test_sparse_windows_and_tied_minima():
    # 3 non-zero bins in up to 4000: in the wide windows smoothing's cut (eps * zeros / non-zeros)
    # is beyond the series' reach (per-window path); the narrow ones all diverge by 0 (a tie)
    counts = np.zeros(4000)
    counts[[1990, 2000, 2013]] = [1.0, 5.0, 2.0]
    widths = np.arange(100, 2001, 50)
    _assert_same(counts, 2000 - widths, 2000 + widths, 64)
    assert first_minimum(window_divergences(counts, 2000 - widths, 2000 + widths, 64)) == 0


def test_windows_without_own_counts_diverge_infinitely():
    counts = np.zeros(100)
    counts[[0, 99]] = 10.0  # everything lies outside the inner windows
    begins, ends = np.array([40, 30, 0]), np.array([60, 70, 100])
    ours = window_divergences(counts, begins, ends, 4)
    assert np.isinf(ours[:2]).all() and np.isfinite(ours[2])
    _assert_same(counts, begins, ends, 4)


def test_large_counts_keep_the_minimum_where_the_reference_has_it():
    # A ReLU-like histogram of 3M values: plain prefix sums of c log c lost 1e-13 of a divergence
    rng = np.random.default_rng(3)
    counts = np.histogram(np.abs(rng.standard_normal(3_000_000)), bins=4096)[0].astype(np.float64)
    widths = np.arange(256, 4097, 8)
    ours = window_divergences(counts, np.zeros_like(widths), widths, 256)
    reference = _reference(counts, np.zeros_like(widths), widths, 256)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-14)
    assert np.argmin(ours) == np.argmin(reference)  # no tie here: the plain minimum agrees


@pytest.mark.parametrize("nq", [1, 3])
def test_windows_of_one_bin_or_odd_level_counts(nq):
    counts = np.array([0.0, 3.0, 1.0, 0.0, 7.0, 2.0, 0.0, 0.0, 1.0])
    begins, ends = np.array([4, 3, 2, 0]), np.array([5, 6, 7, 9])
    keep = ends - begins >= nq
    _assert_same(counts, begins[keep], ends[keep], nq)


# -- the windows searched ---------------------------------------------------------------------------

def _brute_force(hist: Histogram, nq: int, symmetric: bool) -> float:
    """The threshold by the module docstring's rules, one window at a time."""
    hist = hist.including_zero()
    half = max(-hist.start, hist.start + len(hist.counts))
    layout = np.zeros(2 * half)
    first = half + hist.start
    layout[first:first + len(hist.counts)] = hist.counts
    layout[half - 1:half + 1] = 0.0  # |x| < w
    low, high = min(first, half), max(first + len(hist.counts), half)
    best = (np.inf, 0)
    for i in range(1, half + 1):
        begin, end = (half - i, half + i) if symmetric else (max(half - i, low), min(half + i, high))
        if end - begin >= nq:
            best = min(best, (window_divergence(layout, begin, end, nq), i))
    return best[1] * hist.width


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("data", ["gelu-like", "relu", "negative", "two-sided"])
def test_entropy_range_searches_the_windows_the_quantizer_uses(data, symmetric):
    rng = np.random.default_rng(7)
    z = rng.standard_normal(20_000)
    x = {"gelu-like": np.where(z > 0, z, -0.17 * np.abs(np.sin(z))),  # bulk above a small negative floor
         "relu": np.maximum(z, 0), "negative": -np.abs(z), "two-sided": z * 3.0}[data]
    x[:4] = [9.0, 12.0, 7.5, x.min() * 1.5]  # a few outliers to clip
    hist = Histogram(512)
    hist.update(x.astype(np.float32))
    t = _brute_force(hist, 32, symmetric)
    assert entropy_range(hist, num_quantized_bins=32, max_candidates=10**6, symmetric=symmetric) == (-t, t)


def test_values_in_the_first_bin_do_not_pull_the_threshold_in():
    # A masked softmax floored at row max - 60 leaves the masked weights at ~1e-27, not 0: with
    # exact zeros they form the spike in bin 0 that made KL pick the narrowest window
    rng = np.random.default_rng(8)
    weights = np.abs(rng.standard_normal(100_000)).astype(np.float32) / 5
    ranges = []
    for filler in (None, 0.0, 1e-27):
        hist = Histogram(8192)
        hist.update(weights if filler is None else np.concatenate([weights, np.full(300_000, filler, np.float32)]))
        ranges.append(entropy_range(hist))
        if filler is not None:  # the spike kept in: the threshold falls under the 90th percentile
            hist = hist.including_zero()
            counts = hist.counts.astype(np.float64)
            widths = np.arange(256, len(counts) + 1, 8)
            kept = window_divergences(counts, np.zeros_like(widths), widths, 256)
            assert widths[first_minimum(kept)] * hist.width < np.percentile(weights, 90)
    assert ranges[0] == ranges[1] == ranges[2]
    assert ranges[0][1] > np.percentile(weights, 99)


def test_data_inside_the_first_bin_keeps_its_range():
    hist = Histogram(64)
    hist.update(np.array([0.0, 1e-30, -1e-30, 0.0], np.float32))
    assert entropy_range(hist) == (hist.min, hist.max)
