"""Agreement with onnxruntime.quantization's calibrators on the same model and data.

MinMax agrees exactly. Percentile agrees within two histogram bins (onnxruntime returns a bin's
left edge, onnxsmith rounds outwards; their bins differ). Entropy is compared on one and the same
histogram with symmetric windows (onnxruntime's only kind), where only the bin logic differs
(onnxruntime truncates its candidate distribution to integers, drops the last group's remainder
and keeps the first bin of ``|x|``): the thresholds agree within 15%.
"""

from __future__ import annotations

import numpy as np
import pytest
from calib_models import mlp
from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, HistogramCollector, create_calibrator

from onnxsmith.calibration import Entropy, OrtReaderAdapter, calibrate
from onnxsmith.calibration.entropy import entropy_range
from onnxsmith.calibration.histogram import Histogram
from onnxsmith.ir import save


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ort")
    model = mlp()
    save(model, folder / "model.onnx")
    rng = np.random.default_rng(11)
    data = [{"x": rng.standard_normal((8, 16)).astype(np.float32)} for _ in range(24)]
    data[5]["x"][2, 3] = 25.0  # an outlier
    return model, folder, data


def _ort_ranges(setup, method, **extra) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    model, folder, data = setup
    calibrator = create_calibrator(folder / "model.onnx", None, augmented_model_path=str(folder / "augmented.onnx"),
                                   calibrate_method=method, extra_options=extra)
    calibrator.collect_data(OrtReaderAdapter(data))  # onnxsmith data through onnxruntime's own protocol
    return {name: (np.asarray(t.range_value[0]).ravel(), np.asarray(t.range_value[1]).ravel())
            for name, t in calibrator.compute_data().data.items()}


def _ours(setup, calibrator, **options):
    model, _, data = setup
    return calibrate(model, data, calibrator=calibrator, op_types=None, **options)


@pytest.mark.parametrize("symmetric", [False, True])
def test_minmax_agrees_exactly(setup, symmetric):
    theirs = _ort_ranges(setup, CalibrationMethod.MinMax, symmetric=symmetric)
    ours = _ours(setup, "minmax", symmetric=symmetric)
    assert set(theirs) == set(ours)
    for name, (lo, hi) in theirs.items():
        assert (ours[name].min, ours[name].max) == (float(lo[0]), float(hi[0]))


def test_per_channel_minmax_agrees_exactly(setup):
    theirs = _ort_ranges(setup, CalibrationMethod.MinMax, per_channel=True)
    ours = _ours(setup, "minmax", per_channel=True, axis=1)
    for name, (lo, hi) in theirs.items():
        np.testing.assert_array_equal(ours[name].min, lo)
        np.testing.assert_array_equal(ours[name].max, hi)


@pytest.mark.parametrize("symmetric", [False, True])
def test_percentile_agrees_within_two_bins(setup, symmetric):
    theirs = _ort_ranges(setup, CalibrationMethod.Percentile, percentile=99.9, num_bins=2048, symmetric=symmetric)
    ours = _ours(setup, "percentile", percentile=99.9, symmetric=symmetric)
    for name, (lo, hi) in theirs.items():
        record = ours[name]
        span = record.observed.max - min(record.observed.min, 0.0)
        tolerance = 2 * 2 * span / 2048  # onnxruntime's bins span [-T, T]; ours are finer
        assert record.max == pytest.approx(float(hi[0]), abs=tolerance)
        if not symmetric:  # symmetric: onnxruntime clamps -T to the observed min (0 after Relu)
            assert record.min == pytest.approx(float(lo[0]), abs=tolerance)
    assert ours["x"].max < 10 < 25  # the outlier is clipped


def _symmetric_layout(h: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """The histogram as onnxruntime lays it out: bins symmetric around zero, float32 edges."""
    half = max(-h.start, h.start + len(h.counts))
    counts = np.zeros(2 * half, np.int64)
    counts[half + h.start: half + h.start + len(h.counts)] = h.counts
    edges = np.ldexp(np.arange(-half, half + 1, dtype=np.float64), h.exponent).astype(np.float32)
    return counts, edges


@pytest.mark.parametrize("distribution", ["gaussian", "laplace", "gaussian+outliers"])
def test_entropy_agrees_on_the_same_histogram(distribution):
    rng = np.random.default_rng(12)
    x = rng.laplace(size=50_000) if distribution == "laplace" else rng.standard_normal(50_000)
    if distribution == "gaussian+outliers":
        x[:5] = [30.0, -20.0, 12.0, 25.0, 18.0]
    h = Histogram(1024)
    h.update(x.astype(np.float32))
    counts, edges = _symmetric_layout(h)
    collector = HistogramCollector("entropy", False, len(counts), 128, 99.99, "same")
    theirs = collector.get_entropy_threshold((counts, edges, np.float32(h.min), np.float32(h.max)), 128)
    lo, hi = entropy_range(h, num_quantized_bins=128, max_candidates=10**6, symmetric=True)
    assert hi == pytest.approx(float(theirs[1]), rel=0.15)
    assert lo == pytest.approx(float(theirs[0]), rel=0.15)


def test_entropy_end_to_end_clips_the_outlier_like_onnxruntime(setup):
    theirs = _ort_ranges(setup, CalibrationMethod.Entropy, num_bins=1024, num_quantized_bins=128)
    ours = _ours(setup, Entropy(num_quantized_bins=128))
    for name in ("x", "mm1_out"):
        assert ours[name].max < ours[name].observed.max  # clipped
        assert float(theirs[name][1][0]) < ours[name].observed.max


class _Reader(CalibrationDataReader):
    def __init__(self, data):
        self.data = data
        self.rewind()

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.data)


def test_an_onnxruntime_reader_gives_the_same_ranges_as_a_list(setup):
    model, _, data = setup
    via_reader = calibrate(model, _Reader(data), op_types=None, max_outputs_per_run=2)
    assert via_reader.to_dict() == calibrate(model, data, op_types=None).to_dict()
