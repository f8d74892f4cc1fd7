"""Family skip-layer-norm: residual Add (+ bias) + LayerNormalization as com.microsoft SkipLayerNormalization."""

from __future__ import annotations

import pytest

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.fusion.skip_layer_norm import RULES
from onnxsmith.passes.rewrite import explain
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 9, opset_import: ["" : 17]>'
FUSED_HEADER = '<ir_version: 9, opset_import: ["" : 17, "com.microsoft" : 1]>'
PARAMS = ("float[4] g = {1.0, 2.0, 0.5, -1.0}, float[4] beta = {0.25, 0.0, -0.5, 1.0}, "
          "float[4] b = {0.1, 0.2, 0.3, 0.4}")
SHAPES = "float[2,3,4] x, float[2,3,4] s, float[2,3,4] t"


def _rule(name: str):
    return next(r for r in RULES if r.name == name)


def test_bias_and_residual_adds_become_one_node():
    before = HEADER + f"""
g (float[2,3,4] u, float[2,3,4] skip) => (float[2,3,4] y) <{PARAMS}, {SHAPES}> {{
  x = Neg (u)
  t = Add (b, x)
  s = Add (t, skip)
  [ln] y = LayerNormalization <epsilon = 0.001> (s, g, beta)
}}"""
    after = FUSED_HEADER + f"""
g (float[2,3,4] u, float[2,3,4] skip) => (float[2,3,4] y) <{PARAMS}, {SHAPES}> {{
  x = Neg (u)
  [ln_SkipLayerNormalization] y = com.microsoft.SkipLayerNormalization <epsilon: float = 0.001> (x, skip, g, beta, b)
}}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["skip-layer-norm-bias"] == 1


def test_plain_residual_add_without_beta():
    before = HEADER + f"""
g (float[6,4] x, float[6,4] skip) => (float[6,4] y) <float[4] g = {{1.0, 2.0, 0.5, -1.0}}, float[6,4] s> {{
  s = Add (x, skip)
  [ln] y = LayerNormalization (s, g)
}}"""
    after = FUSED_HEADER + """
g (float[6,4] x, float[6,4] skip) => (float[6,4] y) <float[4] g = {1.0, 2.0, 0.5, -1.0}, float[6,4] s> {
  [ln_SkipLayerNormalization] y = com.microsoft.SkipLayerNormalization <epsilon: float = 1e-05> (x, skip, g)
}"""
    assert_rewrites(RULES, before, after)


def test_a_sum_read_elsewhere_comes_from_the_fourth_output():
    before = HEADER + f"""
g (float[2,3,4] x, float[2,3,4] skip) => (float[2,3,4] z) <{PARAMS}, {SHAPES}> {{
  [add] s = Add (x, skip)
  [ln] y = LayerNormalization (s, g, beta)
  z = Mul (s, y)
}}""".replace(", float[4] b = {0.1, 0.2, 0.3, 0.4}", "")
    after = FUSED_HEADER + f"""
g (float[2,3,4] x, float[2,3,4] skip) => (float[2,3,4] z) <{PARAMS}, {SHAPES}> {{
  [add_SkipLayerNormalization] add_SkipLayerNormalization_out0, , , s = com.microsoft.SkipLayerNormalization
      <epsilon: float = 1e-05> (x, skip, g, beta)
  z = Mul (s, add_SkipLayerNormalization_out0)
}}""".replace(", float[4] b = {0.1, 0.2, 0.3, 0.4}", "")
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["skip-layer-norm-shared-sum"] == 1
    assert stats.applied["skip-layer-norm-of-sum"] == 1


def _model(*, shapes: str = SHAPES, inputs: str = "float[2,3,4] x, float[2,3,4] skip", ln: str = "LayerNormalization",
           outputs: str = "float[2,3,4] y", extra: str = "") -> str:
    return HEADER + f"""
g ({inputs}) => ({outputs}) <{PARAMS}, {shapes}> {{
  s = Add (x, skip)
  [ln] y{extra} = {ln} (s, g, beta)
}}"""


@pytest.mark.parametrize(("case", "model", "message"), [
    ("broadcast summand", _model(inputs="float[2,3,4] x, float[3,4] skip", shapes="float[2,3,4] s"),
     "declined: the summands have shapes [2, 3, 4] and [3, 4], not one shape"),
    ("rank 4", _model(inputs="float[1,2,3,4] x, float[1,2,3,4] skip", shapes="float[1,2,3,4] s",
                      outputs="float[1,2,3,4] y"),
     "declined: the summands have rank 4; SkipLayerNormalization takes rank 2 or 3"),
    ("normalises two axes", _model(ln="LayerNormalization <axis = -2>"),
     "declined: LayerNormalization 'ln' normalises from axis -2, not the last axis only"),
    ("mean output used", _model(outputs="float[2,3,4] y, float[2,3,1] mean", extra=", mean"),
     "declined: the Mean/InvStdDev outputs of LayerNormalization 'ln' are used"),
    ("unnamed dimension", _model(inputs="float[2,?,4] x, float[2,?,4] skip", shapes="float[2,3,4] s"),
     "declined: the summands have shapes [2, ?, 4] and [2, ?, 4] with unnamed dimensions"),
])
def test_not_fused(case, model, message):
    assert_no_rewrite(RULES, model)
    assert message in explain(_rule("skip-layer-norm"), parse_text(model), "ln"), case


@pytest.mark.parametrize(("target", "pipeline", "ops"), [
    ("cpu", "fuse{enable=skip-layer-norm}", ["SkipLayerNormalization"]),
    # opt-in on cpu: onnxruntime's CPU SkipLayerNormalization is slower than Add + LayerNormalization,
    # so by default the residual sum is lowered to Sum, which onnxruntime does not fuse
    ("cpu", "fuse", ["Sum", "LayerNormalization"]),
    ("cuda", "fuse", ["SkipLayerNormalization"]),
    ("generic", "fuse{enable=skip-layer-norm}", ["Add", "LayerNormalization"]),
])
def test_only_targets_with_contrib_ops_fuse(target, pipeline, ops):
    model = parse_text(_model())
    PassManager(pipeline, verify="numeric").run(model, PassContext(target=target))
    assert [node.op_type for node in model.graph] == ops
