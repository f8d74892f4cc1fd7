"""The vectorised KL search equals the per-window reference (:func:`window_divergence`)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxsmith.calibration.entropy import first_minimum, window_divergence, window_divergences


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
