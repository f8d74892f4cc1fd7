"""assert_equivalent / check_equivalent: matching, tolerances, reports, input data and errors."""

from __future__ import annotations

import string

import numpy as np
import pytest

from onnxsmith.errors import DataInputError, ModelInputError, UnsupportedError, VerificationError
from onnxsmith.ir import parse_text, save
from onnxsmith.verify import EquivalenceReport, NotEquivalentError, assert_equivalent, check_equivalent

A = string.Template("""
<ir_version: 9, opset_import: ["" : 17]>
g (float[N, 4] x, float[4] $bias) => (float[N, 4] $y, float[N$keep_dim] s) {
    axes = Constant<value = int64[1] {1}>()
    t = Add(x, $bias)
    $y = $act(t)
    s = ReduceSum<keepdims = $keep>($y, axes)
}
""")


def _model(*, act: str = "Relu", y: str = "y", bias: str = "b", keep: int = 0):
    return parse_text(A.substitute(act=act, y=y, bias=bias, keep=keep, keep_dim=", 1" if keep else ""))


def test_identical_models_are_equivalent_and_reported_per_output():
    report = assert_equivalent(_model(), _model(), num_samples=3, dims={"N": 5})
    assert isinstance(report, EquivalenceReport)
    assert report.ok and report.samples == 3 and report.worst is None
    assert [d.name for d in report.outputs] == ["y", "s"]
    assert [d.shape_expected for d in report.outputs] == [(5, 4), (5,)]
    table = report.format()
    assert table.splitlines()[0].split() == ["output", "shape", "max", "abs", "err", "max", "rel", "err", "status"]
    assert "y  " in table and "[5,4]" in table and table.splitlines()[-1].startswith("equivalent: 2 output(s)")


def test_outputs_are_matched_by_position_when_renamed():
    report = assert_equivalent(_model(), _model(y="renamed"))
    assert report.names_b == ("renamed", "s")
    assert "y -> renamed" in report.format()


def test_different_models_fail_with_one_line_naming_the_worst_output():
    a, b = _model(), _model(act="Abs")
    report = check_equivalent(a, b)
    assert not report.ok
    assert report.worst is not None and report.worst.name in ("y", "s")
    assert "FAIL" in report.format()
    with pytest.raises(NotEquivalentError) as caught:
        assert_equivalent(a, b)
    error = caught.value
    assert isinstance(error, VerificationError)
    assert "\n" not in str(error) and f"output '{report.worst.name}'" in str(error)
    assert error.report.to_dict()["ok"] is False


def test_tolerance_decides():
    shifted = parse_text("""
<ir_version: 9, opset_import: ["" : 17]>
g (float[N, 4] x, float[4] b) => (float[N, 4] y, float[N] s) {
    axes = Constant<value = int64[1] {1}>()
    eps = Constant<value = float {0.001}>()
    t = Add(x, b)
    r = Relu(t)
    y = Add(r, eps)
    s = ReduceSum<keepdims = 0>(r, axes)
}
""")
    assert not check_equivalent(_model(), shifted).ok
    assert check_equivalent(_model(), shifted, rtol=0.0, atol=0.01).ok


def test_output_shape_mismatch_is_a_problem_not_a_crash():
    report = check_equivalent(_model(), _model(keep=1))
    assert not report.ok and "shape" in report.worst.problem


def test_inputs_from_a_dict_and_from_an_npz_file(tmp_path):
    inputs = {"x": np.ones((2, 4), np.float32), "b": np.arange(4, dtype=np.float32)}
    report = assert_equivalent(_model(), _model(), inputs)
    assert report.outputs[0].shape_expected == (2, 4) and report.source == "given inputs"
    path = tmp_path / "data.npz"
    np.savez(path, **inputs)
    report = assert_equivalent(_model(), _model(), str(path))
    assert report.source == "inputs from data.npz"


def test_wrong_input_shape_is_one_line_naming_the_input_and_both_shapes(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.ones((2, 4), np.float32), b=np.ones((3,), np.float32))
    with pytest.raises(DataInputError) as caught:
        assert_equivalent(_model(), _model(), path)
    message = str(caught.value)
    assert "\n" not in message and "'b'" in message and "[3]" in message and "[4]" in message
    assert caught.value.remedy


@pytest.mark.parametrize("inputs, fragment", [
    ({"x": np.ones((2, 4), np.float32)}, "no array for model input 'b'"),
    ({"x": np.ones((2, 4), np.float64), "b": np.ones(4, np.float32)}, "dtype float64"),
    ({"x": np.ones((2, 4), np.float32), "b": np.ones(4, np.float32), "q": np.ones(1)}, "'q' that is not a model input"),
])
def test_bad_input_dicts_are_data_input_errors(inputs, fragment):
    with pytest.raises(DataInputError, match=fragment):
        check_equivalent(_model(), _model(), inputs)


def test_models_given_as_paths(tmp_path):
    save(_model(), tmp_path / "a.onnx")
    save(_model(act="Abs"), tmp_path / "b.onnx")
    assert check_equivalent(tmp_path / "a.onnx", tmp_path / "a.onnx").ok
    assert not check_equivalent(tmp_path / "a.onnx", tmp_path / "b.onnx").ok
    with pytest.raises(ModelInputError, match="not found"):
        check_equivalent(tmp_path / "a.onnx", tmp_path / "missing.onnx")


def test_a_model_onnxruntime_cannot_load_is_named():
    custom = parse_text("""
<ir_version: 9, opset_import: ["" : 17, "com.example" : 1]>
g (float[N, 4] x, float[4] b) => (float[N, 4] y, float[N] s) {
    y = com.example.Frobnicate(x, b)
    s = com.example.Frobnicate(x)
}
""", check=False)
    with pytest.raises(UnsupportedError, match="onnxruntime cannot load model B"):
        check_equivalent(_model(), custom)


def test_input_names_must_match():
    with pytest.raises(VerificationError, match="model B has input 'bias'"):
        check_equivalent(_model(), _model(bias="bias"))


def test_output_count_mismatch_is_reported():
    single = parse_text("""
<ir_version: 9, opset_import: ["" : 17]>
g (float[N, 4] x, float[4] b) => (float[N, 4] y) {
    t = Add(x, b)
    y = Relu(t)
}
""")
    report = check_equivalent(_model(), single)
    assert not report.ok and "model B has 1 outputs, model A has 2" in report.summary()
    assert report.format().splitlines()[1].startswith("<outputs>  ")
