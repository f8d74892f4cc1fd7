"""Family conv-bn beyond Conv: BatchNormalization folded into ConvTranspose, Gemm and a 2-D MatMul."""

from __future__ import annotations

import pytest

from onnxsmith.passes.fusion.conv_bn import RULES
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'

# var + epsilon = 4, so the factor gamma / sqrt(var + eps) is {1, 0.5} and the folded values are exact.
BN_PARAMS = ("float[2] gamma = {2.0, 1.0}, float[2] beta = {0.25, -1.0}, float[2] mean = {0.5, 1.0}, "
             "float[2] var = {3.75, 3.75}")


def test_grouped_conv_transpose_scales_each_output_channel_of_each_group():
    # W is [C_in=2, C_out/group=2, 1, 1] with group 2: output channels 0, 1 read W[0, 0], W[0, 1] and
    # channels 2, 3 read W[1, 0], W[1, 1]; f = {1, 0.5, 2, 0.25}.
    before = HEADER + """
g (float[1,2,2,2] x) => (float[1,4,2,2] y)
  <float[2,2,1,1] w = {1.0, 2.0, 3.0, 4.0}, float[4] gamma = {2.0, 1.0, 4.0, 0.5},
   float[4] beta = {1.0, 1.0, 1.0, 1.0}, float[4] mean = {1.0, 2.0, 1.0, 4.0},
   float[4] var = {3.75, 3.75, 3.75, 3.75}> {
  [conv] c = ConvTranspose <group = 2> (x, w)
  [bn] y = BatchNormalization <epsilon = 0.25> (c, gamma, beta, mean, var)
}"""
    after = HEADER + """
g (float[1,2,2,2] x) => (float[1,4,2,2] y)
  <float[2,2,1,1] conv_bn_weight = {1.0, 1.0, 6.0, 1.0}, float[4] conv_bn_bias = {0.0, 0.0, -1.0, 0.0}> {
  [bn_ConvTranspose] y = ConvTranspose <group = 2> (x, conv_bn_weight, conv_bn_bias)
}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["conv-transpose-bn"] == 1


def test_conv_transpose_bias_is_scaled_and_shifted():
    before = HEADER + f"""
g (float[1,1,2,2] x) => (float[1,2,3,3] y)
  <float[1,2,2,2] w = {{1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}}, float[2] b = {{1.0, 2.0}}, {BN_PARAMS}> {{
  [conv] c = ConvTranspose (x, w, b)
  [bn] y = BatchNormalization <epsilon = 0.25> (c, gamma, beta, mean, var)
}}"""
    after = HEADER + """
g (float[1,1,2,2] x) => (float[1,2,3,3] y)
  <float[1,2,2,2] conv_bn_weight = {1.0, 2.0, 3.0, 4.0, 2.5, 3.0, 3.5, 4.0}, float[2] conv_bn_bias = {0.75, -0.5}> {
  [bn_ConvTranspose] y = ConvTranspose (x, conv_bn_weight, conv_bn_bias)
}"""
    assert_rewrites(RULES, before, after)


@pytest.mark.parametrize(("trans_b", "weight", "folded"), [
    (0, "float[3,2] w = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}", "float[3,2] gemm_bn_weight = {1.0, 1.0, 3.0, 2.0, 5.0, 3.0}"),
    (1, "float[2,3] w = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}", "float[2,3] gemm_bn_weight = {1.0, 2.0, 3.0, 2.0, 2.5, 3.0}"),
])
def test_gemm_scales_output_columns_and_bias(trans_b, weight, folded):
    # C' = (beta * C - mean) * f + beta_bn = ({2, 4} - {0.5, 1}) * {1, 0.5} + {0.25, -1}
    before = HEADER + f"""
g (float[4,3] a) => (float[4,2] y) <{weight}, float[2] c = {{1.0, 2.0}}, {BN_PARAMS}> {{
  [gemm] t = Gemm <alpha = 0.5, beta = 2.0, transB = {trans_b}> (a, w, c)
  [bn] y = BatchNormalization <epsilon = 0.25> (t, gamma, beta, mean, var)
}}"""
    after = HEADER + f"""
g (float[4,3] a) => (float[4,2] y) <{folded}, float[2] gemm_bn_bias = {{1.75, 0.5}}> {{
  [bn_Gemm] y = Gemm <alpha = 0.5, transB = {trans_b}> (a, gemm_bn_weight, gemm_bn_bias)
}}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["gemm-bn"] == 1


def test_two_d_matmul_becomes_a_gemm():
    before = HEADER + f"""
g (float[4,3] x) => (float[4,2] y) <float[3,2] w = {{1.0, 2.0, 3.0, 4.0, 5.0, 6.0}}, {BN_PARAMS}> {{
  [mm] t = MatMul (x, w)
  [bn] y = BatchNormalization <epsilon = 0.25> (t, gamma, beta, mean, var)
}}"""
    after = HEADER + """
g (float[4,3] x) => (float[4,2] y)
  <float[3,2] mm_bn_weight = {1.0, 1.0, 3.0, 2.0, 5.0, 3.0}, float[2] mm_bn_bias = {-0.25, -1.5}> {
  [bn_Gemm] y = Gemm (x, mm_bn_weight, mm_bn_bias)
}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["matmul-bn"] == 1


@pytest.mark.parametrize(("rule", "reason", "model"), [
    ("matmul-bn", "declined", HEADER + f"""
g (float[1,2,3] x) => (float[1,2,2] y) <float[3,2] w = {{1.0, 2.0, 3.0, 4.0, 5.0, 6.0}}, {BN_PARAMS}> {{
  t = MatMul (x, w)
  y = BatchNormalization <epsilon = 0.25> (t, gamma, beta, mean, var)
}}"""),
    ("gemm-bn", "not-constant", HEADER + f"""
g (float[4,3] a, float[3,2] w) => (float[4,2] y) <{BN_PARAMS}> {{
  t = Gemm (a, w)
  y = BatchNormalization <epsilon = 0.25> (t, gamma, beta, mean, var)
}}"""),
    ("gemm-bn", "declined", HEADER + f"""
g (float[4,3] a) => (float[4,3] y) <float[3,3] w = {{1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0}}, {BN_PARAMS}> {{
  t = Gemm (a, w)
  y = BatchNormalization <epsilon = 0.25> (t, gamma, beta, mean, var)
}}"""),
    ("conv-transpose-bn", "declined", HEADER + f"""
g (float[1,1,2,2] x) => (float[1,1,3,3] y) <float[1,1,2,2] w = {{1.0, 2.0, 3.0, 4.0}}, {BN_PARAMS}> {{
  c = ConvTranspose (x, w)
  y = BatchNormalization <epsilon = 0.25> (c, gamma, beta, mean, var)
}}"""),
])
def test_not_folded(rule, reason, model):
    stats = assert_no_rewrite(RULES, model)
    assert stats.to_dict()["rejected"][rule] == {reason: 1}
