"""Values that only rearrange another calibrated value share its observer, with identical records."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.calibration import api, calibrate
from onnxsmith.calibration.select import rearranged_values
from onnxsmith.ir import GraphBuilder

CALIBRATORS = ["minmax", "percentile", "entropy", "mse"]


def _model() -> ir.Model:
    """x[N,6,4] -> MatMul -> Reshape -> Transpose -> Identity -> Relu -> y; Neg of the MatMul -> z."""
    rng = np.random.default_rng(5)
    b = GraphBuilder()
    x = b.input("x", "float32", ["N", 6, 4])
    h = b.MatMul(x, b.initializer("w", rng.standard_normal((4, 8)).astype(np.float32)), _name="mm")
    r = b.Reshape(h, b.const(np.array([-1, 12, 4], np.int64)), _name="reshape")
    t = b.Transpose(r, perm=[0, 2, 1], _name="transpose")
    i = b.Identity(t, _name="identity")
    b.output(b.Relu(i, _name="relu"), "y")
    b.output(b.Neg(h, _name="neg"), "z")
    return b.build()


def _data() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(6)
    data = [{"x": rng.standard_normal((3, 6, 4)).astype(np.float32)} for _ in range(5)]
    data[2]["x"][0, 0, 0] = 40.0  # an outlier for the clipping calibrators
    return data


def _names(model: ir.Model) -> dict[str, str]:
    return {n.name: n.outputs[0].name for n in model.graph}


def test_rearranged_values_lead_to_the_topmost_calibrated_value():
    model = _model()
    v = _names(model)
    everything = [v[k] for k in ("mm", "reshape", "transpose", "identity", "relu", "neg")]
    assert rearranged_values(model, everything) == {v["reshape"]: v["mm"], v["transpose"]: v["mm"],
                                                    v["identity"]: v["mm"]}
    # through a value that is not calibrated; a value whose source is not calibrated is its own
    assert rearranged_values(model, [v["mm"], v["transpose"]]) == {v["transpose"]: v["mm"]}
    assert rearranged_values(model, [v["transpose"], v["identity"]]) == {v["identity"]: v["transpose"]}
    assert rearranged_values(model, [v["relu"], v["neg"]]) == {}


@pytest.mark.parametrize("calibrator", CALIBRATORS)
def test_shared_observers_give_the_records_of_separate_ones(calibrator, monkeypatch):
    model, data = _model(), _data()
    v = _names(model)
    observed: list[list[str]] = []
    collect = api.collect

    def spy(model, source, observers, **kwargs):
        observed.append(list(observers))
        return collect(model, source, observers, **kwargs)

    monkeypatch.setattr(api, "collect", spy)
    ranges = calibrate(model, data, calibrator=calibrator, op_types=None)
    assert v["reshape"] in ranges and v["transpose"] in ranges and v["identity"] in ranges
    assert v["reshape"] not in observed[0] and v["transpose"] not in observed[0] and v["mm"] in observed[0]
    for name in (v["reshape"], v["transpose"], v["identity"]):
        alone = calibrate(model, data, calibrator=calibrator, values=[name])[name]  # observed itself
        assert ranges[name].to_dict() == alone.to_dict()
        assert (ranges[name].min, ranges[name].max) == (ranges[v["mm"]].min, ranges[v["mm"]].max)


def test_per_channel_ranges_observe_every_value():
    model, data = _model(), _data()
    v = _names(model)
    ranges = calibrate(model, data, per_channel=True, axis=-1, op_types=None)
    assert len(ranges[v["mm"]].min) == 8 and len(ranges[v["reshape"]].min) == 4
    assert len(ranges[v["transpose"]].min) == 12  # the channel axis moved: a range of its own
