"""SQNR and octave statistics on data with known noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnxsmith.quant_report.stats import OutputStats, TensorStats, sqnr_db


def test_sqnr_of_known_noise():
    # signal power 1 (a +-1 square wave), noise power 0.01 everywhere: exactly 20 dB
    r = np.tile([1.0, -1.0], 500).astype(np.float32)
    q = r + np.float32(0.1)
    stats = TensorStats()
    stats.update(r, q)
    assert stats.own.sqnr_db == pytest.approx(20.0, abs=1e-5)
    assert stats.own.bulk_sqnr_db() == pytest.approx(20.0, abs=1e-5)


def test_sqnr_limits():
    assert sqnr_db(1.0, 0.0) == math.inf
    assert sqnr_db(0.0, 1.0) == -math.inf
    assert sqnr_db(100.0, 1.0) == pytest.approx(20.0)


def test_streaming_equals_one_batch():
    rng = np.random.default_rng(0)
    r = rng.standard_normal((6, 50)).astype(np.float32)
    q = r + rng.normal(0, 0.05, r.shape).astype(np.float32)
    whole, parts = TensorStats(), TensorStats()
    whole.update(r, q)
    for i in range(6):
        parts.update(r[i], q[i])
    assert parts.own.sqnr_db == pytest.approx(whole.own.sqnr_db, rel=1e-12)
    assert (parts.own.count == whole.own.count).all()
    assert (parts.observed_min, parts.observed_max) == (whole.observed_min, whole.observed_max)


def test_a_separate_high_mode_is_not_the_bulk():
    # 70% of the elements are a float32-minimum mask: energy SQNR stays high, the bulk's is 0 dB
    rng = np.random.default_rng(1)
    scores = rng.standard_normal(300).astype(np.float32)
    mask = np.full(700, np.finfo(np.float32).min, np.float32)
    r = np.concatenate([scores, mask])
    q = np.concatenate([np.zeros_like(scores), mask])  # every real score flushed to zero
    stats = TensorStats()
    stats.update(r, q)
    assert stats.own.sqnr_db > 700
    assert stats.own.bulk_sqnr_db() == pytest.approx(0.0)
    assert stats.own.separated() == 700
    assert 0.25 <= stats.own.typical() <= 2.0


def test_nonfinite_elements_are_skipped_and_counted():
    stats = TensorStats()
    stats.update(np.array([1.0, np.nan, np.inf, 2.0], np.float32), np.array([1.0, 0.0, 0.0, 2.0], np.float32))
    assert (stats.count, stats.nonfinite) == (2, 2)
    assert stats.own.sqnr_db == math.inf


def test_channel_outlier_ratio():
    x = np.ones((4, 8), np.float32)
    x[:, 3] = 40.0
    stats = TensorStats(track_channels=True)
    stats.update(x, x)
    assert stats.channel_outlier_ratio == pytest.approx(40.0)


def test_output_fidelity():
    r = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], np.float32)
    q = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]], np.float32)
    stats = OutputStats()
    stats.update(r, q)
    assert stats.top1 == 0.5
    assert stats.cosine_mean == pytest.approx(0.5)
    assert stats.cosine_min == pytest.approx(0.0)
    assert stats.max_abs == 2.0
    assert stats.energy.sqnr_db == pytest.approx(10 * math.log10(5 / 8))
