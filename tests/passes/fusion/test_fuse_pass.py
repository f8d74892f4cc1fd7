"""The ``fuse`` pass: every family the target allows, family/rule selection, statistics."""

from __future__ import annotations

import pytest

from onnxsmith.codegen import FUSION_FAMILIES
from onnxsmith.errors import PassOptionError
from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.fusion import FAMILIES

MODEL = """<ir_version: 8, opset_import: ["" : 17]>
g (float[1,1,2,2] x, float[3,4] u) => (float[1,2,2,2] y, float[3,2] v)
  <float[2,1,1,1] w = {1.0, 2.0}, float[2] gamma = {2.0, 1.0}, float[2] beta = {0.25, -1.0},
   float[2] mean = {0.5, 1.0}, float[2] var = {3.75, 3.75},
   float[1,2,1,1] k = {3.0, 4.0}, float[4,2] wm = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0},
   float[2] bm = {0.5, -1.0}> {
  [conv] c = Conv (x, w)
  [bn] n = BatchNormalization <epsilon = 0.25> (c, gamma, beta, mean, var)
  [shift] y = Add(n, k)
  [mm] t = MatMul(u, wm)
  [add] v = Add(t, bm)
}"""


def _ops(model) -> list[str]:
    return [node.op_type for node in model.graph]


def test_families_are_named_as_in_codegen():
    assert set(FAMILIES) <= set(FUSION_FAMILIES)


@pytest.mark.parametrize("target", ["generic", "cpu"])
def test_fuse_applies_every_family_and_counts_per_rule(target):
    model = parse_text(MODEL)
    report = PassManager("fuse", verify="numeric").run(model, PassContext(target=target))
    assert _ops(model) == ["Conv", "Gemm"]
    applied = {rule: n for rule, n in report.records[0].stats["applied"].items() if n}
    assert applied == {"conv-bn": 1, "conv-add-to-bias": 1, "matmul-add-to-gemm": 1}


@pytest.mark.parametrize(("selection", "ops"), [
    ("gemm", ["Conv", "BatchNormalization", "Add", "Gemm"]),
    ("conv-bn", ["Conv", "Add", "MatMul", "Add"]),
    ("conv-bn,conv-add-to-bias", ["Conv", "MatMul", "Add"]),
    ("matmul-add-to-gemm", ["Conv", "BatchNormalization", "Add", "Gemm"]),
])
def test_rules_option_selects_families_or_rules(selection, ops):
    model = parse_text(MODEL)
    PassManager(f"fuse{{rules={selection}}}").run(model, PassContext())
    assert _ops(model) == ops


def test_unknown_rule_name_is_an_option_error():
    with pytest.raises(PassOptionError, match="did you mean 'gemm'"):
        PassManager("fuse{rules=gem}").run(parse_text(MODEL), PassContext())


def test_second_run_changes_nothing():
    model = parse_text(MODEL)
    PassManager("fuse").run(model, PassContext())
    report = PassManager("fuse").run(model, PassContext())
    assert not report.records[0].modified


def test_families_the_target_does_not_allow_are_skipped():
    model = parse_text(MODEL)
    report = PassManager("fuse").run(model, PassContext(target="tensorrt"))  # conv-bn and gemm only
    assert _ops(model) == ["Conv", "Add", "Gemm"]
    assert "conv-add-to-bias" not in report.records[0].stats["applied"]


def test_explain_records_why_a_rule_declined():
    model = parse_text(MODEL.replace("float[1,2,1,1] k", "float[2] k"))  # [C] broadcasts along the last axis
    ctx = PassContext()
    PassManager("fuse{explain=true}").run(model, ctx)
    assert any("does not broadcast per channel" in line for line in ctx.trace["fuse"])
