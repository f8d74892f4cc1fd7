"""Family scale-into-gemm: constant Mul/Add after Gemm, constant Mul after MatMul, folded into them."""

from __future__ import annotations

import pytest

from onnxsmith.passes.fusion.scale_gemm import RULES
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
B = "float[3,2] w = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}"
B_T = "float[2,3] w = {1.0, 3.0, 5.0, 2.0, 4.0, 6.0}"


def test_single_number_scales_alpha_and_beta():
    before = HEADER + f"""
g (float[4,3] a, float[3,2] w, float[2] c) => (float[4,2] y) <float[1] s = {{3.0}}> {{
  [gemm] t = Gemm <alpha = 0.5, beta = 2.0> (a, w, c)
  [mul] y = Mul (s, t)
}}"""
    after = HEADER + """
g (float[4,3] a, float[3,2] w, float[2] c) => (float[4,2] y) {
  [mul_Gemm] y = Gemm <alpha = 1.5, beta = 6.0> (a, w, c)
}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["gemm-mul-into-weights"] == 1


@pytest.mark.parametrize(("trans_b", "weight", "scaled"), [
    (0, B, "{2.0, -2.0, 6.0, -4.0, 10.0, -6.0}"),
    (1, B_T, "{2.0, 6.0, 10.0, -2.0, -4.0, -6.0}"),
])
def test_per_column_scale_goes_into_b_and_c(trans_b, weight, scaled):
    before = HEADER + f"""
g (float[4,3] a) => (float[4,2] y) <{weight}, float[2] c = {{1.0, 2.0}}, float[1,2] s = {{2.0, -1.0}}> {{
  [gemm] t = Gemm <transB = {trans_b}> (a, w, c)
  [mul] y = Mul (t, s)
}}"""
    after = HEADER + f"""
g (float[4,3] a) => (float[4,2] y)
  <float[{'2,3' if trans_b else '3,2'}] gemm_scaled_weight = {scaled}, float[1,2] gemm_scaled_bias = {{2.0, -2.0}}> {{
  [mul_Gemm] y = Gemm <transB = {trans_b}> (a, gemm_scaled_weight, gemm_scaled_bias)
}}"""
    assert_rewrites(RULES, before, after)


@pytest.mark.parametrize(("c", "bias"), [
    (", c", "{3.0, 3.0}"),  # beta * C + k = 2 * {1, 2} + {1, -1}
    ("", "{1.0, -1.0}"),
])
def test_add_goes_into_the_bias(c, bias):
    before = HEADER + f"""
g (float[4,3] a) => (float[4,2] y) <{B}, float[2] c = {{1.0, 2.0}}, float[2] k = {{1.0, -1.0}}> {{
  [gemm] t = Gemm <beta = 2.0> (a, w{c})
  [add] y = Add (k, t)
}}"""
    unused_c = ", float[2] c = {1.0, 2.0}" if not c else ""
    after = HEADER + f"""
g (float[4,3] a) => (float[4,2] y) <{B}{unused_c}, float[2] gemm_bias = {bias}> {{
  [add_Gemm] y = Gemm (a, w, gemm_bias)
}}"""
    assert_rewrites(RULES, before, after)


def test_batched_matmul_takes_a_per_column_scale():
    before = HEADER + f"""
g (float[2,4,3] x) => (float[2,4,2] y) <{B}, float[1,1,2] s = {{2.0, -1.0}}> {{
  [mm] t = MatMul (x, w)
  [mul] y = Mul (t, s)
}}"""
    after = HEADER + """
g (float[2,4,3] x) => (float[2,4,2] y) <float[3,2] mm_scaled_weight = {2.0, -2.0, 6.0, -4.0, 10.0, -6.0}> {
  [mul_MatMul] y = MatMul (x, mm_scaled_weight)
}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["matmul-mul-into-weights"] == 1


@pytest.mark.parametrize(("rule", "reason", "body", "extra"), [
    ("gemm-mul-into-weights", "declined", "t = Gemm (a, w)\n  y = Mul (t, s)", "float[4,1] s = {1.0, 2.0, 3.0, 4.0}"),
    ("gemm-add-into-bias", "declined", "t = Gemm (a, w)\n  y = Add (t, s)", "float[4,1] s = {1.0, 2.0, 3.0, 4.0}"),
    ("gemm-mul-into-weights", "declined", "t = Gemm (a, v)\n  y = Mul (t, s)", "float[2] s = {1.0, 2.0}"),
    ("gemm-add-into-bias", "declined", "t = Gemm (a, w, v2)\n  y = Add (t, s)", "float[2] s = {1.0, 2.0}"),
    ("gemm-add-into-bias", "shared-intermediate", "t = Gemm (a, w)\n  y = Add (t, s)\n  z = Relu (t)",
     "float[2] s = {1.0, 2.0}"),
    ("matmul-mul-into-weights", "declined", "t = MatMul (a, w)\n  y = Mul (t, s)", "float[3,1,2] s = {1, 2, 3, 4, 5, 6}"),
])
def test_not_folded(rule, reason, body, extra):
    model = HEADER + f"""
g (float[4,3] a, float[3,2] v, float[2] v2) => (float[4,2] y) <{B}, {extra}> {{
  {body}
}}"""
    if "z = Relu" in body:
        model = model.replace("(float[4,2] y)", "(float[4,2] y, float[4,2] z)")
    stats = assert_no_rewrite(RULES, model)
    assert stats.to_dict()["rejected"][rule] == {reason: 1}
