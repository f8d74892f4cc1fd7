"""Families silu (x * Sigmoid(x) as com.microsoft QuickGelu) and reshape (consecutive Reshapes collapsed)."""

from __future__ import annotations

import pytest

from onnxsmith.passes.fusion import reshape, silu
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


@pytest.mark.parametrize("mul", ["Mul (x, s)", "Mul (s, x)"])
def test_silu_becomes_quick_gelu(mul):
    before = HEADER + f"""
g (float[2,3] x) => (float[2,3] y) {{
  s = Sigmoid (x)
  [mul] y = {mul}
}}"""
    after = '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>' + """
g (float[2,3] x) => (float[2,3] y) {
  [mul_QuickGelu] y = com.microsoft.QuickGelu <alpha = 1.0> (x)
}"""
    assert_rewrites(silu.RULES, before, after)


@pytest.mark.parametrize(("reason", "model"), [
    ("binding", HEADER + "\ng (float[2,3] x, float[2,3] z) => (float[2,3] y) {\n  s = Sigmoid (z)\n  y = Mul (x, s)\n}"),
    ("dtype", HEADER + "\ng (double[2,3] x) => (double[2,3] y) {\n  s = Sigmoid (x)\n  y = Mul (x, s)\n}"),
    ("shared-intermediate",
     HEADER + "\ng (float[2,3] x) => (float[2,3] y, float[2,3] s) {\n  s = Sigmoid (x)\n  y = Mul (x, s)\n}"),
])
def test_silu_not_fused(reason, model):
    stats = assert_no_rewrite(silu.RULES, model)
    assert reason in stats.to_dict()["rejected"]["silu-to-quick-gelu"]


@pytest.mark.parametrize(("s1", "s2", "after_consts", "fused"), [
    ("{6, 4}", "{-1, 2, 3}", "int64[3] s2 = {-1, 2, 3}", "Reshape (x, s2)"),
    ("{4, 6}", "{0, 2, 3}", "int64[3] reshape_shape = {4, 2, 3}", "Reshape (x, reshape_shape)"),
])
def test_consecutive_reshapes_collapse(s1, s2, after_consts, fused):
    before = HEADER + f"""
g (float[2,3,4] x) => (float[4,2,3] y) <int64[2] s1 = {s1}, int64[3] s2 = {s2}> {{
  t = Reshape (x, s1)
  [outer] y = Reshape (t, s2)
}}"""
    after = HEADER + f"""
g (float[2,3,4] x) => (float[4,2,3] y) <{after_consts}> {{
  [outer_Reshape] y = {fused}
}}"""
    assert_rewrites(reshape.RULES, before, after)


@pytest.mark.parametrize(("reason", "inputs", "s2"), [
    ("declined", "float[2,3,4] x, int64[2] s1", "{0, 2, 3}"),
    ("not-constant", "float[2,3,4] x, int64[2] s1, int64[3] s2", None),
])
def test_reshapes_kept(reason, inputs, s2):
    consts = f"<int64[3] s2 = {s2}>" if s2 else ""
    model = HEADER + f"""
g ({inputs}) => (float[4,2,3] y) {consts} {{
  t = Reshape (x, s1)
  y = Reshape (t, s2)
}}"""
    stats = assert_no_rewrite(reshape.RULES, model)
    assert stats.to_dict()["rejected"]["reshape-reshape"][reason] == 1
