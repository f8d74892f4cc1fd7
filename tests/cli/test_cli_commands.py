"""The ``passes``, ``inspect`` and ``verify`` commands."""

from __future__ import annotations

import json

import numpy as np
import onnx.parser
import onnx_ir as ir
import pytest

from onnxsmith.cli import EXIT_NOT_EQUIVALENT, EXIT_USAGE
from onnxsmith.ir import GraphBuilder, save
from onnxsmith.passes import build_pipeline, list_passes, list_pipelines, pipeline_string
from onnxsmith.report import option_rows

# ------------------------------------------------------------------ passes


def test_passes_lists_every_pass_with_options_and_every_pipeline_with_expansion(cli):
    result = cli("passes")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    for name, cls in list_passes().items():
        assert f"  {name}" in result.out and cls.summary() in result.out, name
        for option in option_rows(cls):
            assert any(line.strip().startswith(f"{option['name']}: {option['type']} = ") for line in lines), option
    for name, pipeline in list_pipelines().items():
        assert pipeline.help in result.out
        assert f"= {pipeline_string(build_pipeline(pipeline.spec))}" in result.out, name


def test_passes_json(cli):
    data = json.loads(cli("passes", "--json").out)

    assert [p["name"] for p in data["passes"]] == list(list_passes())
    assert [p["name"] for p in data["pipelines"]] == list(list_pipelines())
    cleanup = next(p for p in data["pipelines"] if p["name"] == "cleanup")
    assert cleanup["expansion"] == pipeline_string(build_pipeline("cleanup"))


def test_passes_detail_of_a_pass(cli):
    name, cls = next((n, c) for n, c in list_passes().items() if option_rows(c))

    result = cli("passes", name)

    assert result.code == 0, result.err
    assert result.out.startswith(f"{name} (pass): {cls.summary()}")
    for option in option_rows(cls):
        assert f"  {option['name']}: {option['type']} = " in result.out
    assert f"defined in: {cls.__module__}" in result.out


def test_passes_detail_of_a_pipeline(cli):
    result = cli("passes", "cleanup")

    assert result.code == 0, result.err
    assert result.out.startswith("cleanup (pipeline): ")
    for p in build_pipeline("cleanup"):
        assert f"  {p.spec()}" in result.out


def test_passes_unknown_name_suggests(cli):
    result = cli("passes", "cleanpu")

    assert result.code == EXIT_USAGE
    assert result.err_lines == ["optimize-graph: error: unknown pass 'cleanpu' (did you mean 'cleanup'?)"]


# ------------------------------------------------------------------ inspect


def test_inspect_text(cli, model_path):
    result = cli("inspect", model_path)

    assert result.code == 0, result.err
    out = result.out
    assert f"model:        {model_path} (" in out
    assert "ir_version:   9" in out
    assert "opsets:       ai.onnx 17" in out
    assert "graph:        main: 6 nodes (0 subgraphs), 2 initializers" in out
    assert "tensors:      60 B inline, no external data" in out
    assert "inputs:       x: float[N,4]" in out
    assert "outputs:      y: float[N,3]" in out
    ops = out[out.index("ops:"):].splitlines()[2:]
    assert [line.split() for line in ops] == [["Identity", "2"], ["Add", "1"], ["MatMul", "1"], ["Neg", "1"],
                                              ["Relu", "1"]]


def test_inspect_json(cli, model_path):
    data = json.loads(cli("inspect", model_path, "--json").out)

    assert data["nodes"] == 6
    assert data["ops"] == {"Identity": 2, "Add": 1, "MatMul": 1, "Neg": 1, "Relu": 1}
    assert data["inputs"] == [{"name": "x", "dtype": "float", "shape": ["N", 4]}]
    assert data["outputs"] == [{"name": "y", "dtype": "float", "shape": ["N", 3]}]
    assert (data["inline_bytes"], data["external_bytes"], data["external_files"]) == (60, 0, [])
    assert data["opsets"] == {"": 17}
    assert data["file_bytes"] == model_path.stat().st_size


def test_inspect_counts_subgraphs_and_functions(cli, tmp_path):
    path = tmp_path / "fn.onnx"
    path.write_bytes(onnx.parser.parse_model("""
        <ir_version: 9, opset_import: ["" : 17, "local" : 1]>
        g (float[N] x, bool c) => (float[N] y) {
          t = local.twice(x)
          y = If(c) <then_branch = then_g () => (float[N] a) { a = Relu(t) },
                     else_branch = else_g () => (float[N] b) { b = Neg(t) }>
        }
        <domain: "local", opset_import: ["" : 17]>
        twice (z) => (w) { w = Add(z, z) }
        """).SerializeToString())

    data = json.loads(cli("inspect", path, "--json").out)

    assert (data["nodes"], data["subgraphs"]) == (4, 2)
    assert data["ops"] == {"If": 1, "Neg": 1, "Relu": 1, "local::twice": 1}
    assert data["functions"] == [{"domain": "local", "name": "twice", "nodes": 1}]
    assert data["opsets"] == {"": 17, "local": 1}


@pytest.fixture
def external_model(tmp_path):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 64])
    b.output(b.MatMul(x, b.initializer("big", np.ones((64, 64), np.float32))), "y")
    path = tmp_path / "ext.onnx"
    save(b.build(), path, external_data=True)
    return path


def test_inspect_does_not_read_external_weights(cli, external_model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("inspect read external tensor data")

    for method in ("numpy", "tobytes", "__array__", "_load"):
        if hasattr(ir.ExternalTensor, method):
            monkeypatch.setattr(ir.ExternalTensor, method, refuse)

    data = json.loads(cli("inspect", external_model, "--json").out)

    assert (data["inline_bytes"], data["external_bytes"]) == (0, 64 * 64 * 4)
    assert data["external_files"] == ["ext.onnx.data"]
    assert data["largest_tensors"][0] == {"name": "big", "dtype": "float", "shape": [64, 64],
                                          "nbytes": 16384, "external": True}


def test_inspect_missing_file(cli, tmp_path):
    result = cli("inspect", tmp_path / "nope.onnx")

    assert result.code == EXIT_USAGE
    assert len(result.err_lines) == 1 and "model file not found" in result.err


# ------------------------------------------------------------------ verify


def test_verify_equivalent_models(cli, model_path, tmp_path, write_model):
    copy = write_model(tmp_path / "copy.onnx")

    result = cli("verify", model_path, copy)

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"verify: {model_path} (A) vs {copy} (B)"
    assert lines[1].split() == ["output", "shape", "max", "abs", "err", "max", "rel", "err", "status"]
    assert lines[2].split() == ["y", "[2,3]", "0", "0", "ok"]
    assert lines[-1].startswith("equivalent: 1 output(s), max abs err 0 (rtol=1e-05, atol=1e-06")


def test_verify_different_models_exit_1_with_per_output_errors(cli, model_path, tmp_path, write_model):
    other = write_model(tmp_path / "other.onnx", weight_offset=0.01)
    data = tmp_path / "data.npz"
    np.savez(data, x=np.ones((2, 4), np.float32))

    result = cli("verify", model_path, other, "--inputs", data, "--json")

    assert result.code == EXIT_NOT_EQUIVALENT
    report = json.loads(result.out)
    assert (report["a"], report["b"], report["ok"]) == (str(model_path), str(other), False)
    (y,) = report["outputs"]
    assert y["name"] == "y" and not y["ok"]
    assert y["max_abs"] == pytest.approx(0.04, rel=1e-4)  # four inputs of 1.0, each weight +0.01


def test_verify_tolerance_decides(cli, model_path, tmp_path, write_model):
    other = write_model(tmp_path / "other.onnx", weight_offset=1e-4)

    assert cli("verify", model_path, other).code == EXIT_NOT_EQUIVALENT
    assert cli("verify", model_path, other, "--atol", "0.1").code == 0


def test_verify_inputs_that_do_not_fit(cli, model_path, tmp_path, write_model):
    data = tmp_path / "data.npz"
    np.savez(data, x=np.ones((2, 4), np.int64))

    result = cli("verify", model_path, write_model(tmp_path / "copy.onnx"), "--inputs", data)

    assert result.code == EXIT_USAGE
    assert len(result.err_lines) == 1 and "has dtype int64, the model input is float" in result.err
