"""``optimize-graph demo`` and the installed console script."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from onnxsmith.demo import build_onnx, load_digits, train_mlp
from onnxsmith.ir import load, op_histogram


def _accuracies(out: str) -> tuple[str, str, str]:
    line = next(line for line in out.splitlines() if line.startswith("accuracy on "))
    found = re.findall(r"(\d+\.\d\d)%", line)
    assert len(found) == 3, line
    return found[0], found[1], found[2]


def test_demo_trains_optimizes_and_keeps_accuracy(cli, tmp_path):
    result = cli("demo", "--out", tmp_path)

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("trained a 64-32-10 MLP on 1438 8x8 digits")
    assert lines[1].startswith("pipeline: ")
    assert "verification: numeric, outputs compared with the input model after every changed pass" in lines
    before, after, int8 = _accuracies(result.out)
    assert before == after and float(before) > 90.0
    assert float(int8) >= float(before) - 1.0
    quantized = load(tmp_path / "digits_mlp.int8.onnx")
    assert op_histogram(quantized)["DequantizeLinear"] >= 2  # weights stored as integers behind a DQ
    # the weight matrices are stored as int8, with no float copy (scales are per output channel)
    big = {name: v.const_value.dtype for name, v in quantized.graph.initializers.items() if v.const_value.size > 64}
    assert big and set(big.values()) == {ir.DataType.INT8}, big
    original, optimized = load(tmp_path / "digits_mlp.onnx"), load(tmp_path / "digits_mlp.optimized.onnx")
    ops_before, ops_after = op_histogram(original), op_histogram(optimized)
    assert sum(ops_after.values()) < sum(ops_before.values())
    for debris in ("Identity", "Dropout", "Cast", "Div", "Concat", "Constant", "MatMul", "ReduceSum"):
        assert debris in ops_before and debris not in ops_after, debris
    assert ops_after["Gemm"] == 2 and ops_before["Gemm"] == 3  # the duplicated head was merged
    assert (tmp_path / "digits_mlp.optimized.onnx").stat().st_size < (tmp_path / "digits_mlp.onnx").stat().st_size


def test_exported_model_matches_the_numpy_network():
    digits = load_digits()
    mlp = train_mlp(digits.train_images, digits.train_labels, epochs=2)
    session = ort.InferenceSession(ir.to_proto(build_onnx(mlp)).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    images = digits.test_images[:16].reshape(-1, 1, 8, 8).astype(np.float32)

    probabilities, labels = session.run(None, {"image": images})

    x = images.reshape(16, 64) / 16
    logits = np.maximum(x @ mlp.w1 + mlp.b1, 0) @ mlp.w2 + mlp.b2
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(labels, logits.argmax(1))


def test_console_script_demo(console_script, tmp_path):
    run = subprocess.run([console_script, "demo", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)

    assert run.returncode == 0, run.stderr
    before, after, _int8 = _accuracies(run.stdout)
    assert before == after
    assert (tmp_path / "digits_test.npz").is_file()


def test_console_script_error_is_one_line(console_script, tmp_path):
    run = subprocess.run([console_script, str(tmp_path / "missing.onnx"), str(tmp_path / "out.onnx")],
                         capture_output=True, text=True, timeout=60)

    assert run.returncode == 2
    assert run.stdout.startswith("pipeline: ")
    assert run.stderr.splitlines() == [
        f"optimize-graph: error: model file not found: {tmp_path / 'missing.onnx'} (check the path)"]
