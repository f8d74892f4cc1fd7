"""Family conv-activation: Conv followed by an activation as com.microsoft FusedConv."""

from __future__ import annotations

import pytest

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.fusion.conv_activation import RULES
from onnxsmith.passes.rewrite import explain
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
FUSED_HEADER = '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>'
WEIGHT = ("float[2,1,3,3] w = {1.0, -2.0, 0.5, 0.25, -1.0, 1.5, 2.0, -0.5, 1.0, "
          "0.5, 1.0, -1.0, 2.0, 0.5, -1.5, 1.0, -2.0, 0.25}")


@pytest.mark.parametrize(("act", "fused"), [
    ("Relu", 'activation: string = "Relu"'),
    ("Sigmoid", 'activation: string = "Sigmoid"'),
    ("Tanh", 'activation: string = "Tanh"'),
    ("LeakyRelu <alpha = 0.25>", 'activation: string = "LeakyRelu", activation_params: floats = [0.25]'),
    ("LeakyRelu", 'activation: string = "LeakyRelu", activation_params: floats = [0.01]'),
    ("HardSigmoid <alpha = 0.5>", 'activation: string = "HardSigmoid", activation_params: floats = [0.5, 0.5]'),
])
def test_activation_is_fused(act, fused):
    before = HEADER + f"""
g (float[1,1,4,4] x) => (float[1,2,4,4] y) <{WEIGHT}, float[2] b = {{0.5, -0.5}}> {{
  [conv] c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
  [act] y = {act} (c)
}}"""
    after = FUSED_HEADER + f"""
g (float[1,1,4,4] x) => (float[1,2,4,4] y) <{WEIGHT}, float[2] b = {{0.5, -0.5}}> {{
  [act_FusedConv] y = com.microsoft.FusedConv <{fused}, pads: ints = [1, 1, 1, 1]> (x, w, b)
}}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied == {"conv-activation": 1, "conv-clip": 0}


@pytest.mark.parametrize(("bounds", "constants", "params"), [
    (", lo, hi", ", float lo = {-0.5}, float hi = {1.5}", "[-0.5, 1.5]"),
    (", , hi", ", float hi = {1.5}", "[-3.4028234663852886e+38, 1.5]"),
    ("", "", "[-3.4028234663852886e+38, 3.4028234663852886e+38]"),
])
def test_clip_is_fused_with_its_bounds(bounds, constants, params):
    before = HEADER + f"""
g (float[1,1,4,4] x) => (float[1,2,2,2] y) <{WEIGHT}{constants}> {{
  [conv] c = Conv (x, w)
  [act] y = Clip (c{bounds})
}}"""
    after = FUSED_HEADER + f"""
g (float[1,1,4,4] x) => (float[1,2,2,2] y) <{WEIGHT}> {{
  [act_FusedConv] y = com.microsoft.FusedConv <activation: string = "Clip", activation_params: floats = {params}> (x, w)
}}"""
    stats = assert_rewrites(RULES, before, after)
    assert stats.applied == {"conv-activation": 0, "conv-clip": 1}


def _model(*, act: str = "y = Clip (c, lo)", inputs: str = "float[1,1,4,4] x", outputs: str = "float[1,2,2,2] y",
           lo: str = ", float lo = {-0.5}", extra: str = "", dtype: str = "float") -> str:
    return HEADER + f"""
g ({inputs}) => ({outputs}) <{WEIGHT.replace("float", dtype)}{lo}> {{
  [conv] c = Conv (x, w)
  [act] {act}
  {extra}
}}"""


@pytest.mark.parametrize(("case", "rule", "message", "model"), [
    ("Clip bound not constant", "conv-clip", "input 1 of Clip 'act' ('lo') is a graph input, not a constant",
     _model(inputs="float[1,1,4,4] x, float lo", lo="")),
    ("Clip bound not a scalar", "conv-clip", "constant 'lo' has shape [1], expected a scalar",
     _model(lo=", float[1] lo = {-0.5}")),
    ("double precision", "conv-activation", "'x' has type DOUBLE, expected FLOAT",
     _model(act="y = Relu (c)", inputs="double[1,1,4,4] x", outputs="double[1,2,2,2] y", lo="", dtype="double")),
    ("conv output used twice", "conv-activation", "value 'c' of Conv 'conv' is used outside the match (2 consumers)",
     _model(act="y = Relu (c)", outputs="float[1,2,2,2] y, float[1,2,2,2] z", extra="z = Neg (c)")),
])
def test_not_fused(case, rule, message, model):
    stats = assert_no_rewrite(RULES, model)
    assert sum(stats.to_dict()["rejected"][rule].values()) == 1, case
    assert explain(next(r for r in RULES if r.name == rule), parse_text(model), "act") == [message], case


@pytest.mark.parametrize(("target", "pipeline", "fused"), [
    ("cpu", "fuse{enable=conv-activation}", True),
    ("cpu", "fuse", False),  # opt-in: onnxruntime fuses Conv + Relu itself, faster on two threads
    ("cuda", "fuse", True),
    ("generic", "fuse{enable=conv-activation}", False),
])
def test_only_targets_with_contrib_ops_fuse(target, pipeline, fused):
    model = parse_text(_model(act="y = Relu (c)", lo=""))
    PassManager(pipeline, verify="numeric").run(model, PassContext(target=target))
    assert [node.op_type for node in model.graph] == (["FusedConv"] if fused else ["Conv", "Relu"])
    assert ("com.microsoft" in model.opset_imports) is fused
