"""Observers and calibrators on synthetic distributions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from onnxsmith.calibration import MSE, Entropy, MinMax, Percentile, make_calibrator
from onnxsmith.calibration.entropy import smooth_distribution, window_divergence
from onnxsmith.calibration.mse import expected_mse
from onnxsmith.calibration.observers import MinMaxObserver
from onnxsmith.errors import OnnxsmithError


def _range(calibrator, *parts):
    observer = calibrator.observer()
    for part in parts:
        observer.update(np.asarray(part, np.float32))
    return calibrator.compute(observer)


def _fake_quant(x: np.ndarray, lo: float, hi: float, levels: int = 256) -> np.ndarray:
    step = (hi - lo) / (levels - 1)
    return np.round((np.clip(x, lo, hi) - lo) / step) * step + lo


@pytest.fixture(scope="module")
def gaussian_with_outlier() -> np.ndarray:
    x = np.random.default_rng(0).standard_normal(200_000).astype(np.float32)
    x[123] = 100.0
    return x


# -- minmax -------------------------------------------------------------------------------------

def test_minmax_of_uniform_data_is_exact():
    x = np.random.default_rng(1).uniform(-2.0, 3.0, 10_000).astype(np.float32)
    assert _range(MinMax(), *np.split(x, 10)) == (float(x.min()), float(x.max()))
    assert _range(MinMax(symmetric=True), x) == (-float(x.max()), float(x.max()))


def test_minmax_per_channel_matches_numpy():
    x = np.random.default_rng(2).standard_normal((6, 5, 4, 4)).astype(np.float32)
    lo, hi = _range(MinMax(axis=1), x[:3], x[3:])
    np.testing.assert_array_equal(lo, x.min(axis=(0, 2, 3)))
    np.testing.assert_array_equal(hi, x.max(axis=(0, 2, 3)))
    lo, hi = _range(MinMax(axis=-1), x)
    np.testing.assert_array_equal(hi, x.max(axis=(0, 1, 2)))


def test_minmax_axis_missing_from_rank_is_per_tensor():
    observer = MinMaxObserver(axis=1)
    observer.update(np.arange(5, dtype=np.float32))
    assert observer.resolved_axis is None and (observer.low, observer.high) == (0.0, 4.0)


def test_minmax_per_channel_refuses_a_changed_channel_count():
    observer = MinMaxObserver(axis=1)
    observer.update(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="channel count changed from 3 to 4"):
        observer.update(np.zeros((1, 4), np.float32))


def test_minmax_moving_average_follows_the_ema_formula():
    c = 0.25
    batches = [np.array([-1.0, 1.0]), np.array([-3.0, 5.0]), np.array([0.0, 2.0])]
    lo, hi = _range(MinMax(averaging_constant=c), *batches)
    want_lo, want_hi = -1.0, 1.0
    for b in batches[1:]:
        want_lo += c * (b.min() - want_lo)
        want_hi += c * (b.max() - want_hi)
    assert (lo, hi) == pytest.approx((want_lo, want_hi))


def test_non_finite_values_are_skipped_and_counted():
    observer = MinMax().observer()
    observer.update(np.array([np.nan, -np.inf, 1.0, 2.0], np.float32))
    assert MinMax().compute(observer) == (1.0, 2.0)
    assert (observer.count, observer.nonfinite) == (4, 2)


def test_no_data_gives_an_empty_range():
    for calibrator in (MinMax(), Percentile(), Entropy(), MSE()):
        assert _range(calibrator, np.array([np.nan], np.float32)) == (0.0, 0.0)


# -- percentile ---------------------------------------------------------------------------------

def test_percentile_clips_the_outlier_at_the_true_percentile(gaussian_with_outlier):
    x = gaussian_with_outlier
    calibrator = Percentile(percentile=99.9)
    observer = calibrator.observer()
    observer.update(x)
    lo, hi = calibrator.compute(observer)
    width = observer.histogram.width  # ends are rounded outwards to bin edges
    assert width < 0.05
    assert np.percentile(x, 0.05) - 2 * width <= lo <= np.percentile(x, 0.05)
    assert np.percentile(x, 99.95) <= hi <= np.percentile(x, 99.95) + 2 * width
    t = _range(Percentile(percentile=99.9, symmetric=True), x)[1]
    assert np.percentile(np.abs(x), 99.9) <= t <= np.percentile(np.abs(x), 99.9) + 2 * width


def test_percentile_100_is_minmax(gaussian_with_outlier):
    x = gaussian_with_outlier
    assert _range(Percentile(percentile=100.0), x) == (float(x.min()), float(x.max()))


def test_percentile_of_relu_output_keeps_zero():
    x = np.maximum(np.random.default_rng(3).standard_normal(10_000), 0)
    assert _range(Percentile(percentile=99.0), x)[0] == 0.0


# -- entropy ------------------------------------------------------------------------------------

def _reference_divergence(hist: np.ndarray, begin: int, end: int, nq: int) -> float:
    """MXNet's _get_optimal_threshold inner loop, transcribed with plain loops."""
    sliced = hist[begin:end].astype(np.float64)
    p = sliced.copy()
    p[0] += hist[:begin].sum()
    p[-1] += hist[end:].sum()
    is_nonzeros = (p != 0).astype(np.int64)
    merged = sliced.size // nq
    quantized = np.zeros(nq)
    for j in range(nq):
        quantized[j] = sliced[j * merged:(j + 1) * merged].sum()
    quantized[-1] += sliced[nq * merged:].sum()
    q = np.zeros(sliced.size)
    for j in range(nq):
        start = j * merged
        stop = sliced.size if j == nq - 1 else start + merged
        norm = is_nonzeros[start:stop].sum()
        if norm != 0:
            q[start:stop] = quantized[j] / norm
    q[p == 0] = 0
    p, q = smooth_distribution(p), smooth_distribution(q)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def test_entropy_bin_logic_matches_the_reference_algorithm():
    rng = np.random.default_rng(4)
    hist = np.histogram(np.concatenate([rng.standard_normal(5000), rng.laplace(size=500) * 3]), bins=300)[0]
    for begin, end in [(0, 300), (50, 250), (100, 200), (120, 181)]:
        ours = window_divergence(hist.astype(np.float64), begin, end, 32)
        assert ours == pytest.approx(_reference_divergence(hist, begin, end, 32), rel=1e-9)


def test_entropy_clips_the_outlier_but_not_the_bulk(gaussian_with_outlier):
    lo, hi = _range(Entropy(), gaussian_with_outlier)
    assert lo == max(-hi, float(gaussian_with_outlier.min()))  # the window [-T, T] cut to the data
    assert 2.5 < hi < 10.0
    lo, hi = _range(Entropy(symmetric=True), gaussian_with_outlier)
    assert lo == -hi and 2.5 < hi < 10.0


def test_entropy_of_one_signed_data_uses_a_one_sided_window():
    x = np.maximum(np.random.default_rng(5).standard_normal(100_000), 0)
    x[7] = 60.0
    lo, hi = _range(Entropy(), x)
    assert lo == 0.0 and 2.0 < hi < 10.0


def test_entropy_ignores_exact_zeros():
    # A ReLU output: half its values are exact zeros, which every range holding zero represents
    # exactly. Left in bin 0 they pulled the threshold in to [0, 2.1] on data reaching 4.7.
    positive = np.abs(np.random.default_rng(6).standard_normal(100_000))
    relu = np.concatenate([positive, np.zeros(100_000)])
    lo, hi = _range(Entropy(), relu)
    assert lo == 0.0 and hi == _range(Entropy(), positive)[1]
    assert hi > np.percentile(positive, 99.9)


def test_entropy_without_enough_bins_falls_back_to_minmax():
    assert _range(Entropy(), np.array([1.0, 1.0, 1.0], np.float32)) == (1.0, 1.0)


# -- mse ----------------------------------------------------------------------------------------

def test_expected_mse_matches_simulated_quantization():
    x = np.random.default_rng(6).standard_normal(400_000)
    observer = MSE().observer()
    observer.update(x)
    h = observer.histogram
    for lo, hi in [(-4.0, 4.0), (-2.0, 3.0), (-1.0, 1.0)]:
        predicted = expected_mse(h.counts.astype(np.float64), h.edges, np.array([lo]), np.array([hi]), 256)[0]
        actual = np.mean((x - _fake_quant(x, lo, hi)) ** 2)
        assert predicted == pytest.approx(actual, rel=0.03)


def test_mse_optimum_is_close_to_brute_force():
    x = np.random.default_rng(7).laplace(size=100_000).astype(np.float32)
    for symmetric in (True, False):
        lo, hi = _range(MSE(symmetric=symmetric), x)
        ours = np.mean((x - _fake_quant(x, lo, hi)) ** 2)
        if symmetric:
            grid = [(-t, t) for t in np.linspace(1.0, float(np.abs(x).max()), 400)]
        else:
            grid = [(a, b) for a in np.linspace(x.min(), -1.0, 40) for b in np.linspace(1.0, x.max(), 40)]
        best = min(np.mean((x - _fake_quant(x, a, b)) ** 2) for a, b in grid)
        assert ours <= best * 1.02


def test_mse_clips_a_rare_far_outlier():
    x = np.random.default_rng(8).standard_normal(1_000_000).astype(np.float32)
    x[0] = 30.0
    lo, hi = _range(MSE(), x)
    assert float(x.min()) <= lo < -3.0  # the bulk is kept
    assert 8.0 < hi < 14.0  # one outlier at 30 costs (30 - hi)^2 / 1e6: the optimum is near 10.6


# -- construction -------------------------------------------------------------------------------

def test_make_calibrator_by_name_and_options():
    assert make_calibrator("percentile", percentile=99.9) == Percentile(percentile=99.9)
    assert make_calibrator(Entropy(), symmetric=True) == Entropy(symmetric=True)
    assert make_calibrator("minmax", axis=0).describe() == "minmax(axis=0)"
    assert Percentile(percentile=99.99).describe() == "percentile(99.99)"


def test_make_calibrator_errors_are_helpful():
    with pytest.raises(OnnxsmithError, match=r"unknown calibrator 'entropie' .*did you mean 'entropy'\?"):
        make_calibrator("entropie")
    with pytest.raises(OnnxsmithError, match=r"calibrator 'mse' has no option 'percentile' \(options: "):
        make_calibrator("mse", percentile=3)
    with pytest.raises(OnnxsmithError, match=r"percentile must be in \(0, 100\]"):
        make_calibrator("percentile", percentile=120)
    with pytest.raises(OnnxsmithError, match=r"averaging_constant must be in \(0, 1\]"):
        make_calibrator("minmax", averaging_constant=0)
