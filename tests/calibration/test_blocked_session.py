"""Calibration sessions run constant-weight convolutions in onnxruntime's blocked (NCHWc) kernels:
the same ranges within float32 rounding, the model left as it was, and nothing blocked where it must not be."""

from __future__ import annotations

import importlib

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.calibration import calibrate, select_values
from onnxsmith.calibration.session import SHARED_MIN_BYTES, calibration_session
from onnxsmith.codegen.nchwc import nchwc_block_size
from onnxsmith.ir import GraphBuilder, to_text
from onnxsmith.verify._session import make_session

COLLECT = importlib.import_module("onnxsmith.calibration.collect")  # the package re-exports a function of that name
BLOCK = nchwc_block_size()
needs_blocking = pytest.mark.skipif(BLOCK is None, reason="onnxruntime blocks no convolution on this CPU")

#: Tolerance of a bound against the unblocked session's, relative to the largest bound of the value:
#: the blocked kernel sums the C * kh * kw products of each output in another order, so a bound moves
#: by float32 rounding of sums of terms as large as the value's range (measured below 1e-6; a bound
#: near zero can move more than 1e-5 of itself).
RTOL = 1e-5


def _convs(channels: int, *, relu: bool = True, group: int = 1) -> ir.Model:
    """Conv (64 x channels x 3 x 3, its weight shared: at least 64 KiB) -> Relu -> Conv -> GlobalMaxPool."""
    rng = np.random.default_rng(11)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", channels, 9, 7])
    w1 = b.initializer("w1", (rng.standard_normal((64, channels // group, 3, 3)) * 0.3).astype(np.float32))
    b1 = b.initializer("b1", rng.standard_normal(64).astype(np.float32))
    h = b.Conv(x, w1, b1, pads=[1, 1, 1, 1], group=group, _name="conv1")
    h = b.Relu(h, _name="relu") if relu else h
    w2 = b.initializer("w2", (rng.standard_normal((32, 64, 1, 3)) * 0.2).astype(np.float32))
    h = b.Conv(h, w2, strides=[2, 1], _name="conv2")
    b.output(b.GlobalMaxPool(h, _name="pool"), "y")
    return b.build()


def _data(channels: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(5)
    return [{"x": rng.standard_normal((3, channels, 9, 7)).astype(np.float32)} for _ in range(3)]


def _unblocked(model: ir.Model, threads: int = 0):
    return make_session(model, threads=threads or 1)


@needs_blocking
@pytest.mark.parametrize("relu", [True, False])
def test_blocked_convolutions_calibrate_to_the_unblocked_ranges(relu, monkeypatch):
    channels = 2 * BLOCK
    model = _convs(channels, relu=relu)
    assert model.graph.initializers["w1"].const_value.nbytes >= SHARED_MIN_BYTES  # handed over as shared
    names = select_values(model, None)
    blocked = calibrate(model, _data(channels), values=names, per_channel=True)
    monkeypatch.setattr(COLLECT, "calibration_session", _unblocked)
    reference = calibrate(model, _data(channels), values=names, per_channel=True)
    assert set(blocked) == set(reference)
    for name in names:
        scale = max(np.abs(reference[name].min).max(), np.abs(reference[name].max).max())
        for got, want in ((blocked[name].min, reference[name].min), (blocked[name].max, reference[name].max)):
            np.testing.assert_allclose(got, want, rtol=0, atol=RTOL * scale, err_msg=name)
    conv1 = next(n for n in model.graph if n.name == "conv1").outputs[0].name
    assert np.ptp(np.asarray(blocked[conv1].max)) > 0  # not the all-zero weight a placeholder would give


@needs_blocking
def test_the_calibration_session_runs_blocked_kernels_and_leaves_the_model_as_it_was(profiled_sessions):
    channels = 2 * BLOCK
    model = _convs(channels)
    before = to_text(model)
    session = calibration_session(model)
    assert to_text(model) == before
    feed = _data(channels)[0]
    expected = make_session(model).run(None, feed)[0]
    np.testing.assert_allclose(session.run(None, feed)[0], expected, rtol=RTOL, atol=1e-5)
    kernels = [op for op, _ in profiled_sessions(session).values()]
    assert kernels.count("Conv") == 2 and "ReorderInput" in kernels and "ReorderOutput" in kernels
    assert "Relu" not in kernels  # folded into the first blocked Conv (its pre-activation is not calibrated)


@needs_blocking
@pytest.mark.parametrize("channels, group", [(3, 1), (None, 2)], ids=["channels-off-block", "grouped"])
def test_convolutions_the_blocked_kernel_does_not_take_stay_standard(channels, group, profiled_sessions):
    channels = channels or 2 * BLOCK
    model = _convs(channels, group=group)
    session = calibration_session(model)
    session.run(None, _data(channels)[0])
    kernels = [op for op, _ in profiled_sessions(session).values()]
    assert kernels.count("Conv") == 2 and kernels.count("ReorderInput") == 1  # only conv2 (64 -> 32) is blocked


def test_a_model_without_convolutions_does_not_probe_for_blocking(monkeypatch):
    model = GraphBuilder(opset=17)
    x = model.input("x", "float32", ["N", 4])
    model.output(model.Relu(x, _name="relu"), "y")
    nchwc = importlib.import_module("onnxsmith.codegen.nchwc")
    monkeypatch.setattr(nchwc, "nchwc_block_size", lambda: pytest.fail("probed"))
    session = calibration_session(model.build())
    assert session.run(None, {"x": -np.ones((2, 4), np.float32)})[0].tolist() == [[0.0] * 4] * 2
