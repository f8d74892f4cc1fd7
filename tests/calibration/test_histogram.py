"""The power-of-two histogram: exact, order-independent merging and bounded size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxsmith.calibration.histogram import Histogram, required_exponent


def _built(parts, max_bins: int = 256) -> Histogram:
    h = Histogram(max_bins)
    for part in parts:
        h.update(part)
    return h


def _same(a: Histogram, b: Histogram) -> bool:
    return (a.exponent, a.start, a.min, a.max) == (b.exponent, b.start, b.min, b.max) and np.array_equal(a.counts, b.counts)


@st.composite
def _split_data(draw):
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    n = draw(st.integers(1, 400))
    seed = draw(st.integers(0, 2**32 - 1))
    data = (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)
    data[::draw(st.integers(2, 7))] = 0.0  # exact zeros
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    return data, np.split(data, cuts)


@settings(max_examples=60, deadline=None)
@given(_split_data(), st.randoms(use_true_random=False))
def test_streaming_in_any_order_and_merging_equal_one_batch(split, random):
    data, parts = split
    whole = _built([data])
    assert _same(_built(parts), whole)
    shuffled = list(parts)
    random.shuffle(shuffled)
    assert _same(_built(shuffled), whole)
    merged = Histogram(256)
    for part in parts:
        merged.merge(_built([part]))
    assert _same(merged, whole)
    assert whole.total == data.size


def test_range_growing_by_orders_of_magnitude_stays_exact():
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal(1000).astype(np.float32) * s for s in (1e-4, 1.0, 1e4)]
    assert _same(_built(parts, 1024), _built([np.concatenate(parts)], 1024))


def test_constant_then_spread_data():
    h = _built([np.zeros(10, np.float32), np.array([1.0, -2.0], np.float32)], 64)
    assert h.total == 12
    assert len(h.counts) <= 64
    edges = h.edges
    zero_bin = np.searchsorted(edges, 0.0, side="right") - 1
    assert h.counts[zero_bin] == 10


def test_bins_in_use_stay_between_half_and_full_budget():
    h = _built([np.random.default_rng(1).uniform(-3, 5, 100_000).astype(np.float32)], 2048)
    assert 1024 < len(h.counts) <= 2048
    assert h.edges[0] <= -3 and h.edges[-1] >= 5


def test_non_finite_values_are_not_counted():
    h = _built([np.array([1.0, np.nan, np.inf, -np.inf, 2.0], np.float32)])
    assert h.total == 2 and (h.min, h.max) == (1.0, 2.0)


def test_folded_counts_magnitudes():
    h = _built([np.array([-1.3, -0.2, 0.2, 1.3, 3.1], np.float32)], 16)
    counts, edges = h.folded()
    assert counts.sum() == 5 and edges[0] == 0.0
    for value in (0.2, 1.3, 3.1):
        idx = np.searchsorted(edges, value, side="right") - 1
        assert counts[idx] >= 1
    assert counts[np.searchsorted(edges, 1.3, side="right") - 1] == 2


def test_coarsened_merges_bins_exactly():
    h = _built([np.random.default_rng(2).standard_normal(5000).astype(np.float32)], 4096)
    coarse = h.coarsened(256)
    assert len(coarse.counts) <= 256 and coarse.total == h.total
    assert coarse.edges[0] <= h.min and coarse.edges[-1] >= h.max
    assert h.coarsened(8192) is h


def test_required_exponent_is_monotone_in_the_range():
    assert required_exponent(0.0, 1.0, 128) <= required_exponent(0.0, 2.0, 128) <= required_exponent(-5.0, 2.0, 128)


def test_mismatched_budgets_do_not_merge():
    with pytest.raises(ValueError, match="cannot merge"):
        Histogram(64).merge(_built([np.ones(3, np.float32)], 128))
    with pytest.raises(ValueError, match="at least 2 bins"):
        Histogram(1)


@st.composite
def _float32_data(draw):
    """float32 values at any scale, with bin-edge values, subnormals and tiny negatives."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-40, 1e-20, 1e-3, 1.0, 300.0, 1e6, 1e30]))
    data = (rng.standard_normal(draw(st.integers(1, 3000))) * scale).astype(np.float32)
    extras = np.array([draw(st.sampled_from([0.0, -0.0, 1e-45, -1e-45, -1e-40, 2.0**-20, -(2.0**-20), 0.75, -3.0]))
                       for _ in range(draw(st.integers(0, 6)))], np.float32)
    return np.concatenate([data, extras])


@settings(max_examples=80, deadline=None)
@given(_float32_data(), st.sampled_from([64, 4096, 8192]))
def test_float32_values_fall_in_the_bins_float64_puts_them_in(data, max_bins):
    # float32 data is scaled in float32 while the bin width is at most 1, float64 data in float64
    assert _same(_built([data], max_bins), _built([data.astype(np.float64)], max_bins))


@pytest.mark.parametrize("high", [0.5, 100.0])  # bin width below 1 (float32 path) and 2 (float64 path)
def test_negative_subnormals_stay_below_zero(high):
    # -1e-45 / 2 rounds to -0.0 in float32, which would land in bin 0
    h = _built([np.array([-1e-45, high, 0.25], np.float32)], 64)
    assert h.start == -1 and h.counts[0] == 1
