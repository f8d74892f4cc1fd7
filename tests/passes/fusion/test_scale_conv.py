"""Family scale-into-conv: a per-channel constant Mul after a Conv folded into its weights and bias."""

from __future__ import annotations

import pytest

from onnxsmith.ir import parse_text
from onnxsmith.passes.fusion.scale_conv import RULES
from onnxsmith.passes.rewrite import explain
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
WEIGHT = "float[2,1,1,1] w = {1.0, -2.0}"


@pytest.mark.parametrize(("s", "weight"), [
    ("float[1,2,1,1] s = {0.5, -1.0}", "{0.5, 2.0}"),
    ("float[2,1,1] s = {0.5, -1.0}", "{0.5, 2.0}"),
    ("float[1] s = {3.0}", "{3.0, -6.0}"),
    ("float s = {3.0}", "{3.0, -6.0}"),
])
def test_scale_goes_into_the_weights(s, weight):
    before = HEADER + f"""
g (float[1,1,3,3] x) => (float[1,2,3,3] y) <{WEIGHT}, {s}> {{
  [conv] c = Conv (x, w)
  [mul] y = Mul(s, c)
}}"""
    after = HEADER + f"""
g (float[1,1,3,3] x) => (float[1,2,3,3] y) <float[2,1,1,1] conv_scaled_weight = {weight}> {{
  [mul_Conv] y = Conv (x, conv_scaled_weight)
}}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied == {"conv-mul-into-weights": 1}


def test_bias_is_scaled_too():
    before = HEADER + """
g (float[1,2,3,3] x) => (float[1,2,2,2] y)
  <float[2,1,2,2] w = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}, float[2] b = {1.0, 2.0},
   float[1,2,1,1] s = {0.5, -2.0}> {
  [conv] c = Conv <group = 2> (x, w, b)
  [mul] y = Mul(c, s)
}"""
    after = HEADER + """
g (float[1,2,3,3] x) => (float[1,2,2,2] y)
  <float[2,1,2,2] conv_scaled_weight = {0.5, 1.0, 1.5, 2.0, -10.0, -12.0, -14.0, -16.0},
   float[2] conv_scaled_bias = {0.5, -4.0}> {
  [mul_Conv] y = Conv <group = 2> (x, conv_scaled_weight, conv_scaled_bias)
}"""
    assert_rewrites(RULES, before, after)


def _model(*, s: str = "float[1,2,1,1] s = {0.5, -1.0}", inputs: str = "float[1,1,2,2] x",
           outputs: str = "float[1,2,2,2] y", weight: str = WEIGHT + ", ", extra: str = "") -> str:
    return HEADER + f"""
g ({inputs}) => ({outputs}) <{weight}{s}> {{
  [conv] c = Conv (x, w)
  [mul] y = Mul(c, s)
  {extra}
}}"""


@pytest.mark.parametrize(("case", "reason", "message", "model"), [
    ("[C] broadcasts along the last axis", "declined",
     "declined: s has shape [2], which does not broadcast per channel (expected [1, 2, 1, 1] or ones)",
     _model(s="float[2] s = {0.5, -1.0}")),
    ("constant varies over the batch", "declined",
     "declined: s has shape [2, 1, 1, 1], which does not broadcast per channel (expected [1, 2, 1, 1] or ones)",
     _model(s="float[2,1,1,1] s = {0.5, -1.0}", inputs="float[2,1,2,2] x", outputs="float[2,2,2,2] y")),
    ("scale not constant", "not-constant", "input 1 of Mul 'mul' ('s') is a graph input, not a constant",
     _model(s="", inputs="float[1,1,2,2] x, float[1,2,1,1] s", weight=WEIGHT)),
    ("weights not constant", "not-constant", "input 1 of Conv 'conv' ('w') is a graph input, not a constant",
     _model(inputs="float[1,1,2,2] x, float[2,1,1,1] w", weight="")),
    ("conv output used twice", "shared-intermediate",
     "value 'c' of Conv 'conv' is used outside the match (2 consumers)",
     _model(outputs="float[1,2,2,2] y, float[1,2,2,2] z", extra="z = Relu(c)")),
])
def test_not_folded(case, reason, message, model):
    stats = assert_no_rewrite(RULES, model)
    assert stats.to_dict()["rejected"] == {"conv-mul-into-weights": {reason: 1}}, case
    assert explain(RULES.rules[0], parse_text(model), "mul") == [message], case
