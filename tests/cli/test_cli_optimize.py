"""``optimize-graph IN OUT``: the report, JSON output, verification levels and options."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from onnxsmith.errors import PipelineError
from onnxsmith.ir import count_nodes, load
from onnxsmith.optimize import optimize_file
from onnxsmith.passes import PassManager, build_pipeline, pipeline_string


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_default_pipeline_prints_pipeline_then_report(cli, model_path, tmp_path, snapshot):
    out = tmp_path / "out.onnx"
    before = snapshot(model_path)

    result = cli(model_path, out)

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"pipeline: {pipeline_string(build_pipeline('cleanup'))}"
    header = lines[1].split()
    assert header == ["pass", "changed", "time", "nodes", "weights", "stats"]
    for p in build_pipeline("cleanup"):
        assert any(line.startswith(p.spec() + " ") for line in lines), p.spec()
    total = next(line for line in lines if line.startswith("total "))
    assert f"{count_nodes(load(model_path))} -> {count_nodes(load(out))}" in total
    assert any(line.startswith("file: ") for line in lines)
    assert lines[-1] == "verification: structural checks passed after every changed pass"
    assert snapshot(model_path) == before
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(model_path, x), rtol=1e-6)
    assert count_nodes(load(out)) < count_nodes(load(model_path))


def test_json_is_the_only_stdout(cli, model_path, tmp_path):
    out = tmp_path / "out.onnx"

    result = cli(model_path, out, "--json", "--verify", "numeric")

    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["pipeline"] == pipeline_string(build_pipeline("cleanup"))
    assert data["verify"] == "numeric"
    assert [p["spec"] for p in data["passes"]] == [p.spec() for p in build_pipeline("cleanup")]
    assert {"modified", "seconds", "nodes_before", "nodes_after", "bytes_before", "bytes_after", "stats"} <= set(
        data["passes"][0])
    assert data["totals"]["nodes_after"] == count_nodes(load(out))
    assert data["totals"]["file_bytes_after"] == out.stat().st_size
    assert [d["name"] for d in data["numeric"]] == ["y"]
    assert all(d["ok"] for d in data["numeric"])


def test_numeric_verification_with_real_inputs_reports_errors(cli, model_path, tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, x=np.ones((5, 4), np.float32))

    result = cli(model_path, tmp_path / "out.onnx", "--inputs", data)

    assert result.code == 0, result.err
    report = result.out.splitlines()
    start = report.index("verification: numeric, outputs compared with the input model after every changed pass")
    assert report[start + 1].split() == ["output", "max", "abs", "err", "max", "rel", "err", "within", "tolerance"]
    assert report[start + 2].split() == ["y", "0", "0", "yes"]


def test_custom_pipeline_with_options(cli, model_path, tmp_path):
    result = cli(model_path, tmp_path / "out.onnx", "--passes", "remove-unused", "--json")

    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert [p["name"] for p in data["passes"]] == ["remove-unused"]
    assert data["passes"][0]["nodes_before"] - data["passes"][0]["nodes_after"] == 1  # the dead Neg


def test_print_ir_after(cli, model_path, tmp_path):
    first = build_pipeline("cleanup")[0].name

    result = cli(model_path, tmp_path / "out.onnx", "--print-ir-after", first, "-q")

    assert result.code == 0, result.err
    assert result.out.startswith(f"// ----- IR after {first}")
    assert "MatMul" in result.out and "pipeline:" not in result.out


def test_print_ir_after_goes_to_stderr_with_json(cli, model_path, tmp_path):
    result = cli(model_path, tmp_path / "out.onnx", "--print-ir-after", "all", "--json")

    assert result.code == 0, result.err
    json.loads(result.out)
    assert result.err.count("// ----- IR after") == len(build_pipeline("cleanup"))


def test_quiet_prints_nothing_and_verbose_logs_to_stderr(cli, model_path, tmp_path):
    quiet = cli(model_path, tmp_path / "a.onnx", "-q")
    verbose = cli(model_path, tmp_path / "b.onnx", "-v")

    assert (quiet.code, quiet.out, quiet.err) == (0, "", "")
    assert verbose.code == 0
    assert "INFO onnxsmith.passes.manager: pipeline:" in verbose.err
    assert "INFO" not in verbose.out


def test_verify_none_and_target(cli, model_path, tmp_path):
    result = cli(model_path, tmp_path / "out.onnx", "--verify", "none", "--target", "cpu", "--json")

    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert (data["verify"], data["target"], data["numeric"]) == ("none", "cpu", None)


def test_load_custom_pass_file(cli, model_path, tmp_path, scratch_registry):
    plugin = tmp_path / "count_pass.py"
    plugin.write_text(
        "from onnxsmith import register_pass, PassResult\n"
        f"@register_pass('{scratch_registry('count-relus')}')\n"
        "def count_relus(model, ctx):\n"
        "    '''Counts Relu nodes.'''\n"
        "    return PassResult(False, {'relus': sum(n.op_type == 'Relu' for n in model.graph)})\n")

    result = cli(model_path, tmp_path / "out.onnx", "--load", plugin, "--passes", "count-relus")

    assert result.code == 0, result.err
    assert any(line.split()[:2] == ["count-relus", "no"] and line.endswith("relus=1")
               for line in result.out.splitlines())


def test_existing_output_is_replaced_atomically(cli, model_path, tmp_path):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old contents")

    result = cli(model_path, out, "-q")

    assert result.code == 0, result.err
    load(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "out.onnx"]


def test_optimize_file_verifies_numerically_when_given_inputs(model_path, tmp_path):
    inputs = {"x": np.ones((2, 4), np.float32)}

    result = optimize_file(model_path, tmp_path / "out.onnx", "cleanup", inputs=inputs)

    assert result.report.verify == "numeric"
    assert [d["ok"] for d in result.report.numeric] == [True]
    with pytest.raises(PipelineError, match="inputs are used for numeric verification"):
        optimize_file(model_path, tmp_path / "out2.onnx", PassManager("cleanup"), inputs=inputs)


def test_api_refuses_an_unknown_target_before_reading_anything(model_path, tmp_path):
    from onnxsmith.codegen import UnknownTargetError
    from onnxsmith.optimize import optimize_file

    with pytest.raises(UnknownTargetError, match="did you mean 'cpu'"):
        optimize_file(model_path, tmp_path / "out.onnx", target="cpuu")
    assert not (tmp_path / "out.onnx").exists()
