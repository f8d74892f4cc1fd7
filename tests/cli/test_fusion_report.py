"""The fusion report: per rule applied and rejected (with the tracer's reasons), ops before/after each pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxsmith.ir import GraphBuilder, save
from onnxsmith.report import format_op_changes, format_rule_stats

SHARED_REASON = "value <Conv output> of Conv is used outside the match (2 consumers)"


def _two_conv_bn_model():
    """Two Conv + BatchNormalization chains; the second Conv's output is also a graph output."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 2, 4, 4])
    rng = np.random.default_rng(0)
    for i in range(2):
        w = b.initializer(f"w{i}", rng.normal(size=(2, 2, 1, 1)).astype(np.float32))
        params = [b.initializer(f"{name}{i}", value.astype(np.float32)) for name, value in
                  (("g", rng.normal(size=2)), ("b", rng.normal(size=2)), ("m", rng.normal(size=2)),
                   ("v", rng.uniform(0.5, 1.0, size=2)))]
        conv = b.Conv(x, w)
        b.output(b.BatchNormalization(conv, *params), f"y{i}")
        if i == 1:
            b.output(b.Identity(conv), "conv1")
    return b.build()


@pytest.fixture
def conv_bn_path(tmp_path):
    path = tmp_path / "convbn.onnx"
    save(_two_conv_bn_model(), path)
    return path


def test_text_report_lists_rules_reasons_and_op_changes(cli, conv_bn_path, tmp_path):
    result = cli(conv_bn_path, tmp_path / "out.onnx", "--passes", "fuse", "--target", "cpu")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    start = lines.index("rules of fuse:")
    rule_lines = lines[start + 1:start + 3]
    assert rule_lines[0].split() == ["rule", "applied", "rejected", "why", "rejected"]
    assert rule_lines[1].split()[:3] == ["conv-bn", "1", "1"]
    assert rule_lines[1].endswith(f"{SHARED_REASON} (1)")
    assert "ops changed by fuse: BatchNormalization 2 -> 1" in result.out
    stats_column = next(line for line in lines if line.startswith("fuse "))
    assert "applied=" not in stats_column and "rejected=" not in stats_column


def test_json_report_has_reasons_and_histograms(cli, conv_bn_path, tmp_path):
    result = cli(conv_bn_path, tmp_path / "out.onnx", "--passes", "fuse", "--target", "cpu", "--json")
    assert result.code == 0, result.err
    fuse = json.loads(result.out)["passes"][-1]
    assert fuse["stats"]["applied"]["conv-bn"] == 1
    assert fuse["stats"]["reasons"] == {"conv-bn": {SHARED_REASON: 1}}
    assert fuse["ops_before"] == {"BatchNormalization": 2, "Conv": 2, "Identity": 1}
    assert fuse["ops_after"] == {"BatchNormalization": 1, "Conv": 2, "Identity": 1}


def test_rule_table_leaves_out_rules_that_met_no_candidate():
    stats = {"applied": {"a": 2, "b": 0, "c": 0}, "reasons": {"c": {"x": 1, "y": 3, "z": 1, "w": 1}}}
    lines = format_rule_stats("fuse", stats)
    assert lines[0] == "rules of fuse:"
    assert [line.split()[0] for line in lines[2:]] == ["a", "c"]
    assert lines[3].endswith("y (3); w (1); x (1); and 1 more reasons")
    assert format_rule_stats("fuse", {"applied": {"a": 0}}) == []
    assert format_rule_stats("cse", {"merged": 3}) == []


def test_op_changes_show_only_changed_ops_most_changed_first():
    assert format_op_changes("fuse", {"Conv": 3, "Relu": 3, "Add": 1}, {"Conv": 3, "FusedConv": 1, "Add": 0}) == [
        "ops changed by fuse: Relu 3 -> 0, Add 1 -> 0, FusedConv 0 -> 1"]
    assert format_op_changes("cse", {"Add": 1}, {"Add": 1}) == []
