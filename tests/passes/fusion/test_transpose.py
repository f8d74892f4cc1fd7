"""Family transpose: consecutive Transposes composed, Transposes folded into Gemm's flags."""

from __future__ import annotations

import pytest

from onnxsmith.ir import parse_text
from onnxsmith.passes.fusion.transpose import RULES
from onnxsmith.passes.rewrite import explain
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def test_two_transposes_compose():
    before = HEADER + """
g (float[2,3,4] x) => (float[3,2,4] y) {
  [t1] t = Transpose <perm = [1, 2, 0]> (x)
  [t2] y = Transpose <perm = [0, 2, 1]> (t)
}"""
    after = HEADER + """
g (float[2,3,4] x) => (float[3,2,4] y) {
  [t2_Transpose] y = Transpose <perm = [1, 0, 2]> (x)
}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["transpose-transpose"] == stats.rewrites == 1


def test_default_perms_cancel_and_the_output_keeps_its_name():
    before = HEADER + """
g (float[2,3,4] x) => (float[2,3,4] y) {
  [t1] t = Transpose (x)
  [t2] y = Transpose (t)
}"""
    after = HEADER + """
g (float[2,3,4] x) => (float[2,3,4] y) {
  [t2_Identity] y = Identity (x)
}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["transpose-transpose"] == stats.rewrites == 1


def test_inverse_transposes_vanish_inside_the_graph():
    before = HEADER + """
g (float[2,3,4] x) => (float[2,3,4] y) {
  [t1] t = Transpose <perm = [2, 0, 1]> (x)
  [t2] u = Transpose <perm = [1, 2, 0]> (t)
  [relu] y = Relu (u)
}"""
    after = HEADER + """
g (float[2,3,4] x) => (float[2,3,4] y) {
  [relu] y = Relu (x)
}"""
    assert_rewrites(RULES, before, after)


@pytest.mark.parametrize(("w_shape", "perm", "trans_b", "folded"), [
    ("[2,4]", "", 0, 1),
    ("[4,2]", "<perm = [1, 0]>", 1, 0),
    ("[4,2]", "<perm = [0, 1]>", 0, 0),
])
def test_transposed_weight_flips_trans_b(w_shape, perm, trans_b, folded):
    weight = f"float{w_shape} w = {{1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}}"
    before = HEADER + f"""
g (float[3,4] x) => (float[3,2] y) <{weight}> {{
  [t] wt = Transpose {perm} (w)
  [gemm] y = Gemm <transB = {trans_b}, alpha = 2.0> (x, wt)
}}"""
    after = HEADER + f"""
g (float[3,4] x) => (float[3,2] y) <{weight}> {{
  [gemm_Gemm] y = Gemm <transB = {folded}, alpha = 2.0> (x, w)
}}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["transpose-into-gemm-b"] == stats.rewrites == 1


def test_transposed_constant_a_flips_trans_a():
    before = HEADER + """
g (float[4,2] w) => (float[3,2] y) <float[4,3] a = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 1.0, 2.0, 3.0},
                                    float[2] c = {0.5, -1.0}> {
  [t] at = Transpose <perm = [1, 0]> (a)
  [gemm] y = Gemm (at, w, c)
}"""
    after = HEADER + """
g (float[4,2] w) => (float[3,2] y) <float[4,3] a = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 1.0, 2.0, 3.0},
                                    float[2] c = {0.5, -1.0}> {
  [gemm_Gemm] y = Gemm <transA = 1> (a, w, c)
}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["transpose-into-gemm-a"] == stats.rewrites == 1


def test_transpose_used_twice_is_kept():
    model = HEADER + """
g (float[3,4] x, float[2,4] w) => (float[3,2] y, float[4,2] z) {
  [t] wt = Transpose <perm = [1, 0]> (w)
  [gemm] y = Gemm (x, wt)
  [relu] z = Relu (wt)
}"""
    stats = assert_no_rewrite(RULES, model)
    assert stats.to_dict()["rejected"]["transpose-into-gemm-b"] == {"shared-intermediate": 1}


def test_default_perm_of_unknown_rank_is_declined():
    model = HEADER + """
g (float[3,4] x, float[8] v, int64[N] s) => (float[3,2] y) {
  [reshape] w = Reshape (v, s)
  [t] wt = Transpose (w)
  [gemm] y = Gemm (x, wt)
}"""
    stats = assert_no_rewrite(RULES, model)
    assert stats.to_dict()["rejected"]["transpose-into-gemm-b"] == {"declined": 1}
    assert explain(RULES.rules[1], parse_text(model), "gemm") == [
        "declined: the Transpose has no perm and the rank of its input is unknown"]


def test_default_perms_cancel_whatever_the_rank():
    before = HEADER + """
g (float[8] v, int64[N] s) => (float[8] y) <int64[1] s8 = {8}> {
  [reshape] r = Reshape (v, s)
  [t1] t = Transpose (r)
  [t2] u = Transpose (t)
  [flat] y = Reshape (u, s8)
}"""
    after = HEADER + """
g (float[8] v, int64[N] s) => (float[8] y) <int64[1] s8 = {8}> {
  [reshape] r = Reshape (v, s)
  [flat] y = Reshape (r, s8)
}"""
    stats = assert_rewrites(RULES, before, after, numeric=False)  # random shape inputs would not reshape
    assert stats.applied["transpose-transpose"] == stats.rewrites == 1


def test_default_inner_perm_of_unknown_rank_is_declined():
    model = HEADER + """
g (float[8] v, int64[N] s) => (float[2,4] y) {
  [reshape] r = Reshape (v, s)
  [t1] t = Transpose (r)
  [t2] y = Transpose <perm = [1, 0]> (t)
}"""
    stats = assert_no_rewrite(RULES, model)
    assert stats.to_dict()["rejected"]["transpose-transpose"]["declined"] == 1
    assert explain(RULES.rules[0], parse_text(model), "t2") == [
        "declined: the inner Transpose has no perm and the rank of its input is unknown"]
