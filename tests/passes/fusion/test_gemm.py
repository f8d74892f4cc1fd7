"""Family gemm: 2-D MatMul by a constant plus a bias vector as Gemm (golden and negative tests)."""

from __future__ import annotations

import pytest

from onnxsmith.passes.fusion.gemm import RULES
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
WEIGHT = "float[4,2] w = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}"


@pytest.mark.parametrize("bias", ["float[2] b = {0.5, -1.0}", "float[1,2] b = {0.5, -1.0}"])
def test_matmul_add_becomes_gemm(bias):
    before = HEADER + f"""
g (float[3,4] x) => (float[3,2] y) <{WEIGHT}, {bias}> {{
  [mm] t = MatMul(x, w)
  [add] y = Add(b, t)
}}"""
    after = HEADER + f"""
g (float[3,4] x) => (float[3,2] y) <{WEIGHT}, {bias}> {{
  [add_Gemm] y = Gemm(x, w, b)
}}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied == {"matmul-add-to-gemm": 1}


def _model(*, inputs: str = "float[3,4] x", outputs: str = "float[3,2] y", weight: str = WEIGHT + ", ",
           bias: str = "float[2] b = {0.5, -1.0}", extra: str = "", header: str = HEADER) -> str:
    return header + f"""
g ({inputs}) => ({outputs}) <{weight}{bias}> {{
  [mm] t = MatMul(x, w)
  [add] y = Add(t, b)
  {extra}
}}"""


@pytest.mark.parametrize(("case", "reason", "model"), [
    ("rank-3 x", "declined", _model(inputs="float[5,3,4] x", outputs="float[5,3,2] y")),
    ("rank of x unknown", "declined", _model(inputs="float x", outputs="float y")),
    ("weights not constant", "not-constant", _model(inputs="float[3,4] x, float[4,2] w", weight="")),
    ("matmul output used twice", "shared-intermediate",
     _model(outputs="float[3,2] y, float[3,2] z", extra="z = Relu(t)")),
    ("bias broadcast along rows", "const-shape", _model(bias="float[3,1] b = {0.5, -1.0, 2.0}")),
    ("bias of the wrong length", "declined", _model(bias="float[1] b = {0.5}")),
    ("bias of rank 3", "declined", _model(bias="float[1,1,2] b = {0.5, -1.0}", outputs="float[1,3,2] y")),
    ("integer types", "dtype", _model(inputs="int32[3,4] x", outputs="int32[3,2] y", weight="int32[4,2] w = "
                             "{1, 2, 3, 4, 5, 6, 7, 8}, ", bias="int32[2] b = {1, 2}")),
])
def test_not_fused(case, reason, model):
    stats = assert_no_rewrite(RULES, model)
    assert stats.to_dict()["rejected"] == {"matmul-add-to-gemm": {reason: 1}}, case
