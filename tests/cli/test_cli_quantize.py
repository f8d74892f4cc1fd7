"""``optimize-graph IN OUT --passes ...,qdq`` with --calib-data, --calibrator, --ranges, --save-ranges."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxsmith.ir import GraphBuilder, load, save
from onnxsmith.ir.queries import op_histogram


@pytest.fixture
def tiny(tmp_path):
    """A one-MatMul model and 16 calibration rows for it."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 8])
    w = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    b.output(b.MatMul(x, b.initializer("w", w)), "y")
    path = tmp_path / "tiny.onnx"
    save(b.build(), path)
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32))
    return path, data


def test_calib_data_quantizes_draws_progress_on_stderr_and_saves_ranges(cli, tiny, tmp_path):
    model, data = tiny
    out, ranges = tmp_path / "out.onnx", tmp_path / "ranges.json"

    result = cli(model, out, "--passes", "cleanup,qdq", "--calib-data", data, "--calibrator", "percentile",
                 "--save-ranges", ranges, "--target", "cpu")

    assert result.code == 0, result.err
    assert "calibrating [" in result.err and "calibrating" not in result.out
    assert any(line.startswith("annotate-quant") and "quantized=(MatMul 1)" in line for line in result.out.splitlines())
    assert op_histogram(load(out))["DequantizeLinear"] == 2
    saved = json.loads(ranges.read_text())
    assert saved["calibration"]["method"] == "percentile" and "x" in saved["values"]


def test_ranges_file_is_used_and_json_output_has_no_progress(cli, tiny, tmp_path):
    model, data = tiny
    ranges = tmp_path / "ranges.json"
    assert cli(model, tmp_path / "a.onnx", "--passes", "qdq", "--calib-data", data, "--save-ranges", ranges,
               "-q").code == 0

    result = cli(model, tmp_path / "b.onnx", "--passes", "qdq", "--ranges", ranges, "--json")

    assert result.code == 0, result.err
    assert result.err == ""
    passes = json.loads(result.out)["passes"]
    assert passes[1]["name"] == "annotate-quant" and passes[1]["stats"]["quantized"] == {"MatMul": 1}
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


@pytest.mark.parametrize(("extra", "message"), [
    ((), "'annotate-quant' needs activation ranges: the context has no ranges and no calibration data "
         "(give --calib-data DIR or --ranges FILE)"),
    (("--calib-data", "missing.npz"), "calibration data not found: missing.npz"),
    (("--ranges", "missing.json"), "ranges file not found: missing.json"),
    (("--calibrator", "entropy"), "--calibrator needs --calib-data"),
])
def test_errors_are_one_line_with_non_zero_exit(cli, tiny, tmp_path, monkeypatch, extra, message):
    model, _ = tiny
    monkeypatch.chdir(tmp_path)

    result = cli(model, tmp_path / "out.onnx", "--passes", "qdq", *extra)

    assert result.code == 2
    assert len(result.err_lines) == 1 and message in result.err_lines[0]
    assert not (tmp_path / "out.onnx").exists()


def test_mismatched_calibration_data_is_one_line(cli, tiny, tmp_path):
    model, _ = tiny
    bad = tmp_path / "bad.npz"
    np.savez(bad, z=np.zeros((2, 8), np.float32))

    result = cli(model, tmp_path / "out.onnx", "--passes", "qdq", "--calib-data", bad)

    assert result.code == 2 and len(result.err_lines) == 1
    assert "array 'z' is not a model input" in result.err


def test_save_ranges_without_calibration_is_refused(cli, tiny, tmp_path):
    model, _ = tiny

    result = cli(model, tmp_path / "out.onnx", "--save-ranges", tmp_path / "r.json")

    assert result.code == 2 and "no calibration ranges to save" in result.err
