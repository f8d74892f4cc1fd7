"""Family pad-into-conv: a constant Pad folded into the pads of a Conv, AveragePool or MaxPool."""

from __future__ import annotations

import pytest

from onnxsmith.passes.fusion.pad_pool import RULES
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
W = "float[2,1,3,3] w = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, -1.0, 0.5, 2.0, -3.0, 1.0, 0.0, 2.0, 1.0, -1.0}"


@pytest.mark.parametrize(("conv_pads", "fused"), [("", "[1, 2, 3, 4]"), (" <pads = [1, 1, 1, 1]>", "[2, 3, 4, 5]")])
def test_zero_pad_goes_into_the_conv(conv_pads, fused):
    before = HEADER + f"""
g (float[1,1,4,4] x) => (float[1,2,6,8] y) <{W}, int64[8] p = {{0, 0, 1, 2, 0, 0, 3, 4}}> {{
  [pad] t = Pad (x, p)
  [conv] y = Conv{conv_pads} (t, w)
}}"""
    after = HEADER + f"""
g (float[1,1,4,4] x) => (float[1,2,6,8] y) <{W}> {{
  [conv_Conv] y = Conv <pads = {fused}> (x, w)
}}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["pad-into-conv"] == 1


@pytest.mark.parametrize(("opset", "constants", "pad", "size", "fused"), [
    pytest.param(10, "", "Pad <pads = [0, 0, 1, 1, 0, 0, 1, 1]> (x)", 4, "[1, 1, 1, 1]",
                 id="attribute-before-opset-11"),
    pytest.param(18, ", int64[4] p = {1, 0, 2, 2}, int64[2] axes = {-2, -1}", "Pad (x, p, , axes)", 5, "[1, 0, 2, 2]",
                 id="axes-input-from-opset-18"),
])
def test_other_pad_forms_go_into_the_conv(opset, constants, pad, size, fused):
    header = HEADER.replace(": 17", f": {opset}")
    before = header + f"""
g (float[1,1,4,4] x) => (float[1,2,{size},{size}] y) <{W}{constants}> {{
  [pad] t = {pad}
  [conv] y = Conv (t, w)
}}"""
    after = header + f"""
g (float[1,1,4,4] x) => (float[1,2,{size},{size}] y) <{W}> {{
  [conv_Conv] y = Conv <pads = {fused}> (x, w)
}}"""
    assert_rewrites(RULES, before, after)


def test_average_pool_counts_the_padding():
    before = HEADER + """
g (float[1,2,4,4] x) => (float[1,2,4,4] y) <int64[8] p = {0, 0, 1, 1, 0, 0, 0, 0}> {
  [pad] t = Pad (x, p)
  [pool] y = AveragePool <kernel_shape = [2, 2]> (t)
}"""
    after = HEADER + """
g (float[1,2,4,4] x) => (float[1,2,4,4] y) {
  [pool_AveragePool] y = AveragePool <kernel_shape = [2, 2], pads = [1, 1, 0, 0], count_include_pad = 1> (x)
}"""
    assert_rewrites(RULES, before, after)


@pytest.mark.parametrize(("producer", "value"), [
    ("u = Relu (x)", "float v = {0.0}"),
    ("u = Clip (x, lo)", "float v = {-1.0}"),
    ("u = Neg (x)", "float v = {-inf}"),
])
def test_max_pool_takes_padding_that_cannot_be_a_maximum(producer, value):
    before = HEADER + f"""
g (float[1,2,4,4] x) => (float[1,2,4,4] y) <int64[8] p = {{0, 0, 1, 1, 0, 0, 1, 1}}, {value}, float lo = {{-0.5}}> {{
  {producer}
  [pad] t = Pad (u, p, v)
  [pool] y = MaxPool <kernel_shape = [3, 3], strides = [1, 1]> (t)
}}"""
    after = HEADER + f"""
g (float[1,2,4,4] x) => (float[1,2,4,4] y) <float lo = {{-0.5}}> {{
  {producer}
  [pool_MaxPool] y = MaxPool <kernel_shape = [3, 3], strides = [1, 1], pads = [1, 1, 1, 1]> (u)
}}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied["pad-into-max-pool"] == 1


def _model(body: str, *, p: str = "0, 0, 1, 1, 0, 0, 1, 1", extra: str = "", opset: int = 17) -> str:
    return HEADER.replace(": 17", f": {opset}") + f"""
g (float[1,1,4,4] x, int64[8] q) => (float[1,2,4,4] y) <{W}, int64[8] p = {{{p}}}{extra}> {{
  {body}
}}"""


@pytest.mark.parametrize(("rule", "reason", "model"), [
    ("pad-into-conv", "declined", _model("t = Pad (x, p, v)\n  y = Conv (t, w)", extra=", float v = {1.0}")),
    ("pad-into-conv", "declined", _model("t = Pad <mode = \"reflect\"> (x, p)\n  y = Conv (t, w)")),
    ("pad-into-conv", "declined", _model("t = Pad (x, p)\n  y = Conv (t, w)", p="0, 1, 1, 1, 0, 0, 1, 1")),
    ("pad-into-conv", "declined", _model("t = Pad (x, p)\n  y = Conv (t, w)", p="0, 0, -1, 1, 0, 0, 1, 1")),
    ("pad-into-conv", "declined", _model("t = Pad (x, q)\n  y = Conv (t, w)")),
    ("pad-into-conv", "declined", _model("t = Pad (x, p)\n  y = Conv <auto_pad = \"SAME_UPPER\"> (t, w)")),
    ("pad-into-average-pool", "declined",
     _model("t = Pad (x, p)\n  y = AveragePool <kernel_shape = [3, 3], pads = [1, 1, 1, 1]> (t)")),
    ("pad-into-average-pool", "declined",
     _model("t = Pad (x, p)\n  y = AveragePool <kernel_shape = [3, 3], ceil_mode = 1> (t)")),
    ("pad-into-max-pool", "declined", _model("t = Pad (x, p)\n  y = MaxPool <kernel_shape = [3, 3]> (t)")),
    ("pad-into-max-pool", "declined",
     _model("u = Relu (x)\n  t = Pad (u, p)\n  y = MaxPool <kernel_shape = [2, 2]> (t)", p="0, 0, 2, 0, 0, 0, 0, 0")),
    ("pad-into-max-pool", "declined",
     _model("t = Pad (x, p, v)\n  y, i = MaxPool <kernel_shape = [3, 3]> (t)\n  z = Identity (i)",
            extra=", float v = {-inf}")),
    ("pad-into-conv", "shared-intermediate", _model("t = Pad (x, p)\n  y = Conv (t, w)\n  z = Relu (t)")),
])
def test_not_folded(rule, reason, model):
    stats = assert_no_rewrite(RULES, model)
    assert stats.to_dict()["rejected"][rule] == {reason: 1}
