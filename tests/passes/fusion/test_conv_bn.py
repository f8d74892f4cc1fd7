"""Family conv-bn: BatchNormalization folded into the preceding Conv (golden and negative tests)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxsmith.passes.fusion.conv_bn import RULES
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'

# var + epsilon = 4, so the factor gamma / sqrt(var + eps) is {1, 0.5} and the folded values are exact.
BN_PARAMS = ("float[2] gamma = {2.0, 1.0}, float[2] beta = {0.25, -1.0}, float[2] mean = {0.5, 1.0}, "
             "float[2] var = {3.75, 3.75}")


def test_grouped_conv_with_bias_is_folded():
    before = HEADER + f"""
g (float[1,4,3,3] x) => (float[1,2,3,3] y)
  <float[2,2,1,1] w = {{1.0, 2.0, 3.0, 4.0}}, float[2] b = {{1.0, 2.0}}, {BN_PARAMS}> {{
  [conv] c = Conv <group = 2> (x, w, b)
  [bn] y = BatchNormalization <epsilon = 0.25> (c, gamma, beta, mean, var)
}}"""
    # W' = W * {1, 0.5} per output channel; b' = (b - mean) * {1, 0.5} + beta
    after = HEADER + """
g (float[1,4,3,3] x) => (float[1,2,3,3] y)
  <float[2,2,1,1] conv_bn_weight = {1.0, 2.0, 1.5, 2.0}, float[2] conv_bn_bias = {0.75, -0.5}> {
  [bn_Conv] y = Conv <group = 2> (x, conv_bn_weight, conv_bn_bias)
}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied == {"conv-bn": 1, "conv-transpose-bn": 0, "gemm-bn": 0, "matmul-bn": 0}


def test_conv_without_bias_gets_one():
    before = HEADER + f"""
g (float[1,1,4,4] x) => (float[1,2,2,2] y)
  <float[2,1,3,3] w = {{1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0,
                        -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0}}, {BN_PARAMS}> {{
  [conv] c = Conv <pads = [0, 0, 0, 0]> (x, w)
  [bn] y = BatchNormalization <epsilon = 0.25> (c, gamma, beta, mean, var)
}}"""
    after = HEADER + """
g (float[1,1,4,4] x) => (float[1,2,2,2] y)
  <float[2,1,3,3] conv_bn_weight = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0,
                                    -0.5, -1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0, -4.5},
   float[2] conv_bn_bias = {-0.25, -1.5}> {
  [bn_Conv] y = Conv <pads = [0, 0, 0, 0]> (x, conv_bn_weight, conv_bn_bias)
}"""
    assert_rewrites(RULES, before, after)


def _model(*, conv: str = "c = Conv (x, w)", bn: str = "y = BatchNormalization <epsilon = 0.25> "
           "(c, gamma, beta, mean, var)", inputs: str = "float[1,1,2,2] x", outputs: str = "float[1,2,2,2] y",
           weight: str = "float[2,1,1,1] w = {1.0, 2.0}, ", params: str = BN_PARAMS, extra: str = "") -> str:
    return HEADER + f"""
g ({inputs}) => ({outputs}) <{weight}{params}> {{
  [conv] {conv}
  [bn] {bn}
  {extra}
}}"""


def _float16_literal(values: list[float]) -> str:
    """ONNX text writes float16 data as the integer bit patterns."""
    return "{" + ", ".join(str(b) for b in np.array(values, np.float16).view(np.uint16)) + "}"


FLOAT16_PARAMS = ", ".join(f"float16[2] {name} = {_float16_literal(values)}" for name, values in (
    ("gamma", [2.0, 1.0]), ("beta", [0.25, -1.0]), ("mean", [0.5, 1.0]), ("var", [3.75, 3.75])))


@pytest.mark.parametrize(("case", "reason", "model"), [
    ("weights not constant", "not-constant", _model(inputs="float[1,1,2,2] x, float[2,1,1,1] w", weight="")),
    ("conv output used twice", "shared-intermediate",
     _model(outputs="float[1,2,2,2] y, float[1,2,2,2] z", extra="z = Relu(c)")),
    ("conv output is a graph output", "shared-intermediate", _model(outputs="float[1,2,2,2] y, float[1,2,2,2] c")),
    ("bn parameters not [C]", "const-shape",
     _model(params=BN_PARAMS.replace("float[2] gamma", "float[1,2,1,1] gamma"))),
    ("bn parameters for other channels", "declined",
     _model(params=BN_PARAMS.replace("float[2] var = {3.75, 3.75}", "float[1] var = {3.75}"))),
    ("training mode", "declined", _model(bn="y, rm, rv = BatchNormalization <epsilon = 0.25, training_mode = 1> "
                                "(c, gamma, beta, mean, var)")),
    ("running statistics used", "declined", _model(
        bn="y, rm, rv = BatchNormalization <epsilon = 0.25> (c, gamma, beta, mean, var)",
        outputs="float[1,2,2,2] y, float[2] rm")),
    ("float16", "dtype", _model(inputs="float16[1,1,2,2] x", outputs="float16[1,2,2,2] y",
                       weight=f"float16[2,1,1,1] w = {_float16_literal([1.0, 2.0])}, ", params=FLOAT16_PARAMS)),
])
def test_not_folded(case, reason, model):
    stats = assert_no_rewrite(RULES, model)
    assert stats.to_dict()["rejected"]["conv-bn"] == {reason: 1}, case
