"""``optimize-graph ep-check`` and ``--ep-check``: where onnxruntime runs each node, in the report."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest


def test_ep_check_text_reports_nodes_per_provider(cli, model_path):
    result = cli("ep-check", model_path, "--target", "cpu")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("ep-check cpu (CPUExecutionProvider): ok: all ")
    assert any(line.startswith("nodes per provider: CPUExecutionProvider ") for line in lines)
    assert "integer ops: none" in result.out


def test_ep_check_json_shape(cli, model_path):
    result = cli("ep-check", model_path, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["model"] == str(model_path)
    assert (report["target"], report["status"], report["ok"]) == ("cpu", "ok", True)
    assert report["fallbacks"] == [] and report["integer_ops"] == {}
    executed = len(report["placements"])
    assert executed > 0 and report["nodes_per_provider"] == {"CPUExecutionProvider": executed}


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here")
def test_ep_check_exits_1_when_the_provider_cannot_run_the_model(cli, model_path):
    result = cli("ep-check", model_path, "--target", "cuda")
    assert result.code == 1
    assert "provider not in this onnxruntime build" in result.out.splitlines()[0]


def test_ep_check_of_a_missing_file_is_a_usage_error(cli, tmp_path):
    result = cli("ep-check", tmp_path / "missing.onnx")
    assert result.code == 2
    assert result.err.startswith("optimize-graph: error: ")


def test_optimize_with_ep_check_appends_it_to_the_report(cli, model_path, tmp_path):
    result = cli(model_path, tmp_path / "out.onnx", "--passes", "cleanup,fuse", "--target", "cpu", "--ep-check")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    verification = next(i for i, line in enumerate(lines) if line.startswith("verification:"))
    assert lines[verification + 1].startswith("ep-check cpu (CPUExecutionProvider): ok: all ")


@pytest.mark.parametrize("flag", [[], ["--ep-check"]])
def test_optimize_json_holds_the_ep_check(cli, model_path, tmp_path, flag):
    result = cli(model_path, tmp_path / "out.onnx", "--target", "cpu", "--json", *flag)
    assert result.code == 0, result.err
    ep = json.loads(result.out)["ep_check"]
    if flag:
        assert ep["status"] == "ok" and ep["nodes_per_provider"]
    else:
        assert ep is None
