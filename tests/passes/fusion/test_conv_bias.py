"""Family conv-bias: a per-channel constant Add after a Conv folded into its bias."""

from __future__ import annotations

import pytest

from onnxsmith.passes.fusion.conv_bias import RULES
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
WEIGHT = "float[2,1,1,1] w = {1.0, -2.0}"


@pytest.mark.parametrize(("k", "bias"), [
    ("float[1,2,1,1] k = {0.5, -1.0}", "{0.5, -1.0}"),
    ("float[2,1,1] k = {0.5, -1.0}", "{0.5, -1.0}"),
    ("float[1] k = {0.5}", "{0.5, 0.5}"),
])
def test_add_becomes_the_bias(k, bias):
    before = HEADER + f"""
g (float[1,1,3,3] x) => (float[1,2,3,3] y) <{WEIGHT}, {k}> {{
  [conv] c = Conv (x, w)
  [add] y = Add(k, c)
}}"""
    after = HEADER + f"""
g (float[1,1,3,3] x) => (float[1,2,3,3] y) <{WEIGHT}, float[2] conv_bias = {bias}> {{
  [add_Conv] y = Conv (x, w, conv_bias)
}}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied == {"conv-add-to-bias": 1}


def test_add_is_summed_into_an_existing_bias():
    before = HEADER + f"""
g (float[1,2,3,3] x, float[2,1,1,1] w) => (float[1,2,3,3] y)
  <float[2] b = {{1.0, 2.0}}, float[1,2,1,1] k = {{0.5, -1.0}}> {{
  [conv] c = Conv <group = 2> (x, w, b)
  [add] y = Add(c, k)
}}"""
    after = HEADER + """
g (float[1,2,3,3] x, float[2,1,1,1] w) => (float[1,2,3,3] y) <float[2] conv_bias = {1.5, 1.0}> {
  [add_Conv] y = Conv <group = 2> (x, w, conv_bias)
}"""
    assert_rewrites(RULES, before, after)


def _model(*, k: str = "float[1,2,1,1] k = {0.5, -1.0}", inputs: str = "float[1,1,2,2] x",
           outputs: str = "float[1,2,2,2] y", conv: str = "c = Conv (x, w)", weight: str = WEIGHT + ", ",
           extra: str = "") -> str:
    return HEADER + f"""
g ({inputs}) => ({outputs}) <{weight}{k}> {{
  [conv] {conv}
  [add] y = Add(c, k)
  {extra}
}}"""


@pytest.mark.parametrize(("case", "reason", "model"), [
    ("[C] broadcasts along the last axis", "declined", _model(k="float[2] k = {0.5, -1.0}")),
    ("per-row constant", "declined", _model(k="float[2,1] k = {0.5, -1.0}")),
    ("constant varies over the batch", "declined",
     _model(k="float[2,1,1,1] k = {0.5, -1.0}", inputs="float[2,1,2,2] x", outputs="float[2,2,2,2] y")),
    ("constant of higher rank", "declined", _model(k="float[1,1,2,1,1] k = {0.5, -1.0}",
                                                   outputs="float[1,1,2,2,2] y")),
    ("added value not constant", "not-constant", _model(k="", inputs="float[1,1,2,2] x, float[1,2,1,1] k",
                                                        weight=WEIGHT)),
    ("conv bias not constant", "not-constant", _model(inputs="float[1,1,2,2] x, float[2] b",
                                                      conv="c = Conv (x, w, b)")),
    ("conv output used twice", "shared-intermediate",
     _model(outputs="float[1,2,2,2] y, float[1,2,2,2] z", extra="z = Relu(c)")),
    ("output channels unknown", "declined", _model(inputs="float[1,1,2,2] x, float[N,1,1,1] w", weight="",
                                                   outputs="float[1,N,2,2] y")),
])
def test_not_folded(case, reason, model):
    stats = assert_no_rewrite(RULES, model)
    assert stats.to_dict()["rejected"] == {"conv-add-to-bias": {reason: 1}}, case
