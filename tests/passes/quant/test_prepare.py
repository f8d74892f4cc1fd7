"""prepare-quant: FusedConv split back for QDQ, BatchNormalization folded before planning, on fused and unfused graphs."""

from __future__ import annotations

import numpy as np
import pytest
from quant_models import conv_bn_net, ops, quantize, samples

from onnxsmith.codegen import ep_check, get_target
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.quant import PrepareQuant
from onnxsmith.passes.quant.split_fused_conv import RULES
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites
from onnxsmith.verify import check_contract
from onnxsmith.verify._session import run_model

HEADER = '<ir_version: 8, opset_import: ["" : {opset}, "com.microsoft" : 1]>'
WEIGHT = ("float[2,1,3,3] w = {1.0, -2.0, 0.5, 0.25, -1.0, 1.5, 2.0, -0.5, 1.0, "
          "0.5, 1.0, -1.0, 2.0, 0.5, -1.5, 1.0, -2.0, 0.25}")


def _fused(attributes: str, *, opset: int = 17, z: str = "") -> str:
    inputs = "float[1,1,4,4] x" + (", float[1,2,4,4] z" if z else "")
    return HEADER.replace("{opset}", str(opset)) + f"""
g ({inputs}) => (float[1,2,4,4] y) <{WEIGHT}, float[2] b = {{0.5, -0.5}}> {{
  [fc] y = com.microsoft.FusedConv <{attributes}, pads: ints = [1, 1, 1, 1]> (x, w, b{z})
}}"""


def test_fused_conv_relu_is_split_into_conv_and_relu():
    after = HEADER.replace("{opset}", "17") + f"""
g (float[1,1,4,4] x) => (float[1,2,4,4] y) <{WEIGHT}, float[2] b = {{0.5, -0.5}}> {{
  [fc_Conv] fc_Conv_out = Conv <pads: ints = [1, 1, 1, 1]> (x, w, b)
  [fc_Relu] y = Relu (fc_Conv_out)
}}"""
    stats = assert_rewrites(RULES, _fused('activation: string = "Relu"'), after)
    assert stats.applied == {"split-fused-conv": 1}


def test_fused_conv_clip_keeps_its_bounds_as_inputs_or_attributes_by_opset():
    clip = 'activation: string = "Clip", activation_params: floats = [0.0, 6.0]'
    after = HEADER.replace("{opset}", "17") + f"""
g (float[1,1,4,4] x) => (float[1,2,4,4] y) <{WEIGHT}, float[2] b = {{0.5, -0.5}}, float clip_min = {{0.0}},
                                            float clip_max = {{6.0}}> {{
  [fc_Conv] fc_Conv_out = Conv <pads: ints = [1, 1, 1, 1]> (x, w, b)
  [fc_Clip] y = Clip (fc_Conv_out, clip_min, clip_max)
}}"""
    assert_rewrites(RULES, _fused(clip), after)
    old = HEADER.replace("{opset}", "10") + f"""
g (float[1,1,4,4] x) => (float[1,2,4,4] y) <{WEIGHT}, float[2] b = {{0.5, -0.5}}> {{
  [fc_Conv] fc_Conv_out = Conv <pads: ints = [1, 1, 1, 1]> (x, w, b)
  [fc_Clip] y = Clip <min: float = 0.0, max: float = 6.0> (fc_Conv_out)
}}"""
    assert_rewrites(RULES, _fused(clip, opset=10), old)


@pytest.mark.parametrize(("model", "reason"), [
    (_fused('activation: string = "Sigmoid"'),
     "FusedConv activation Sigmoid has no QDQ form in onnxruntime (only Clip and Relu fold into QLinearConv)"),
    (_fused('activation: string = "LeakyRelu", activation_params: floats = [0.1]'),
     "FusedConv activation LeakyRelu has no QDQ form"),
    (_fused('activation: string = "Relu"', z=", z"), "FusedConv adds a residual input Z, which QLinearConv has not"),
])
def test_other_fused_convs_stay_with_the_reason(model, reason):
    stats = assert_no_rewrite(RULES, model)

    assert any(reason in r for r in stats.reasons["split-fused-conv"])


def test_annotate_without_prepare_names_the_pass_that_splits_a_fused_conv():
    model = conv_bn_net(last="Relu")
    data = samples(model)
    PassManager("cleanup,fuse{enable=conv-activation}").run(model, PassContext(target="cpu"))

    _, plan = quantize(model, data, "annotate-quant")

    assert set(plan.skipped().values()) == {
        "FusedConv(Relu) is quantized as Conv + Relu: run 'prepare-quant' first ('qdq' does)",
        "FusedConv(Clip) is quantized as Conv + Clip: run 'prepare-quant' first ('qdq' does)"}


@pytest.mark.parametrize("passes", ["cleanup,fuse{enable=conv-activation},qdq", "cleanup,qdq"])
def test_fused_and_unfused_cnns_quantize_the_same_convs_with_folded_batch_norm(passes):
    model = conv_bn_net()
    data = samples(model)
    expected = run_model(model, data[0])[0]

    _, plan = quantize(model, data, passes)

    assert "BatchNormalization" not in ops(model)
    decisions = {d.op: (d.action, d.role, d.reason) for d in plan.nodes.values()}
    assert decisions["Relu"] == ("quantize", "fused-activation", decisions["Relu"][2])
    assert decisions["Clip"] == ("quantize", "fused-activation", decisions["Clip"][2])
    if "fuse" in passes:  # the Sigmoid conv stays one float FusedConv, with the reason in the plan
        assert plan.stats()["quantized"] == {"Clip": 1, "Conv": 2, "Relu": 1}
        assert decisions["com.microsoft::FusedConv"][:2] == ("skip", "")
        assert "Sigmoid has no QDQ form" in decisions["com.microsoft::FusedConv"][2]
    report = ep_check(model, get_target("cpu"), data[0])
    assert report.integer_ops["com.microsoft::QLinearConv"] == (2 if "fuse" in passes else 3)
    assert report.qdq_left == {"QuantizeLinear": 1, "DequantizeLinear": 1}  # x in, the Sigmoid's input out
    actual = run_model(model, data[0])[0]
    assert np.abs(actual - expected).max() < 0.05


@pytest.mark.parametrize("fused", [False, True])
def test_prepare_quant_keeps_the_pass_contract(fused):
    model = conv_bn_net(last="Tanh")
    if fused:
        PassManager("cleanup,fuse{enable=conv-activation}").run(model, PassContext(target="cpu"))

    check_contract(PrepareQuant, model)
