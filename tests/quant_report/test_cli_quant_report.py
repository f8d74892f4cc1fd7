"""``optimize-graph quant-report``: text, JSON and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qr_models import mlp, mlp_samples, ort_qdq

from onnxsmith.cli import main
from onnxsmith.ir import GraphBuilder, save


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    fp32, quant = ort_qdq(mlp(), mlp_samples(4), folder)
    data = folder / "data.npz"
    np.savez(data, **mlp_samples(1, seed=3)[0])
    return fp32, quant, data


def run(capsys, *argv):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_report(capsys, files):
    fp32, quant, data = files
    code, out, err = run(capsys, "quant-report", fp32, quant, "--data", data, "--samples", "2")
    assert code == 0 and err == ""
    assert out.startswith("quant-report: 8 quantized tensors (4 activations, 4 weights), 2 runs")
    assert "worst 8 tensors" in out


def test_json_report(capsys, files):
    fp32, quant, data = files
    code, out, _ = run(capsys, "quant-report", fp32, quant, "--data", data, "--json")
    report = json.loads(out)
    assert code == 0 and report["runs"] == 4 and report["quantized"] == str(quant)
    assert len(report["tensors"]) == 8


def _one_line_error(err: str, fragment: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("optimize-graph: error: ") and fragment in lines[0]


def test_missing_file(capsys, files, tmp_path):
    fp32, _, data = files
    code, out, err = run(capsys, "quant-report", fp32, tmp_path / "nope.onnx", "--data", data)
    assert code == 2 and out == ""
    _one_line_error(err, "not found")


def test_mismatched_models(capsys, files, tmp_path):
    fp32, _, data = files
    b = GraphBuilder()
    b.output(b.Relu(b.input("z", "float32", ["N", 16])), "y")
    other = tmp_path / "other.onnx"
    save(b.build(), other)
    code, _, err = run(capsys, "quant-report", fp32, other, "--data", data)
    assert code == 2
    _one_line_error(err, "different inputs")


def test_no_quantized_tensors(capsys, files):
    fp32, quant, data = files
    code, _, err = run(capsys, "quant-report", fp32, fp32, "--data", data)
    assert code == 2
    _one_line_error(err, "no quantized tensors found")
    code, _, err = run(capsys, "quant-report", quant, fp32, "--data", data)
    _one_line_error(err, "fp32 model first")


def test_data_is_required(capsys, files):
    fp32, quant, _ = files
    code, _, err = run(capsys, "quant-report", fp32, quant)
    assert code == 2 and "--data" in err
