"""annotate-quant: the plan as data, what it quantizes by default, and what it must leave float."""

from __future__ import annotations

import json

import numpy as np
import pytest
from quant_models import conv_net, mlp_block, quantize, samples

from onnxsmith.calibration import RangeRecord, Ranges
from onnxsmith.calibration.ranges import CONTEXT_KEY as RANGES_KEY
from onnxsmith.errors import OnnxsmithError, PassOptionError
from onnxsmith.ir import GraphBuilder
from onnxsmith.passes import PassContext
from onnxsmith.passes.quant import AnnotateQuant, QuantPlan
from onnxsmith.passes.quant.float_islands import find_float_islands


def test_conv_plan_quantizes_convs_fuses_relu_and_shares_the_pool_scale():
    model = conv_net()

    _, plan = quantize(model, samples(model), "annotate-quant")

    assert {n: (d.action, d.role) for n, d in plan.nodes.items()} == {
        "conv1": ("quantize", "integer"), "conv2": ("quantize", "integer"),
        "relu1": ("quantize", "fused-activation"), "pool": ("quantize", "shared-scale")}
    specs = plan.values
    assert specs["x"].source == "calibrated" and specs["x"].dtype == "uint8"  # cpu prefers u8 activations
    assert specs["relu1_out"].source == "calibrated" and specs["relu1_out"].range[0] == 0.0
    assert specs["pool_out"].source == "shared-with:relu1_out"
    assert specs["pool_out"].range == specs["relu1_out"].range
    assert (specs["w1"].dtype, specs["w1"].axis, specs["w1"].symmetric, specs["w1"].narrow) == ("int8", 0, True, True)
    assert (specs["b1"].dtype, specs["b1"].source, specs["b1"].axis) == ("int32", "bias", 0)
    assert plan.stats()["quantized"] == {"Conv": 2, "MaxPool": 1, "Relu": 1}


def test_plan_round_trips_through_json():
    model = conv_net()
    _, plan = quantize(model, samples(model), "annotate-quant")

    again = QuantPlan.from_dict(json.loads(json.dumps(plan.to_dict())))

    assert again == plan


def test_elementwise_ops_stay_float_and_matmul_outputs_are_not_quantized():
    model = mlp_block()

    _, plan = quantize(model, samples(model), "annotate-quant")

    assert plan.quantized_nodes() == ["mm1", "mm2"]
    assert set(plan.values) == {"x", "relu_out", "w1", "w2"}  # MatMul outputs feed float Adds
    assert plan.values["w1"].axis == 1  # per output column of [K, N]


def test_absurd_range_is_skipped_with_its_reason():
    model = mlp_block(mask_add=True)

    _, plan = quantize(model, samples(model), "annotate-quant")

    assert plan.nodes["mm1"].action == "quantize"
    assert plan.nodes["mm2"].action == "skip"
    assert plan.nodes["mm2"].reason.startswith("absurd range: 'mask_out' in [-3.4e+38")
    assert "mask_out" not in plan.values


def test_exclude_by_name_op_type_and_regex():
    for pattern in ("mm2", "MatMul", "mm[0-9]"):
        model = mlp_block()
        ctx = PassContext(target="cpu")
        Ranges({"x": RangeRecord(-4, 4), "relu_out": RangeRecord(0, 8)}).store(ctx)

        AnnotateQuant(exclude=[pattern]).run(model, ctx)

        plan = QuantPlan.from_context(ctx)
        assert plan.nodes["mm2"].action == "skip" and plan.nodes["mm2"].reason == f"excluded: matches '{pattern}'"


def test_include_adds_an_elementwise_op_and_overrides_set_types():
    model = mlp_block()
    ctx = PassContext(target="cpu")  # 16-bit types below opset 21: com.microsoft Q/DQ, cpu only
    Ranges({"x": RangeRecord(-4, 4), "relu_out": RangeRecord(0, 8), "add1_out": RangeRecord(-8, 8),
            "mm1_out": RangeRecord(-8, 8), "b1": RangeRecord(-1, 1)}).store(ctx)

    AnnotateQuant(include=["add1"], overrides=["x:int16", "relu_out:symmetric"]).run(model, ctx)

    plan = QuantPlan.from_context(ctx)
    assert plan.nodes["add1"] == plan.nodes["add1"].__class__("Add", "quantize", role="integer")
    assert plan.nodes["relu"].role == "fused-activation"  # QLinearAdd writes the Relu's output
    assert "add1_out" not in plan.values and plan.values["relu_out"].dtype == "uint8"
    assert plan.values["x"].dtype == "int16" and plan.values["relu_out"].symmetric
    assert plan.qdq_domain == "com.microsoft"


def test_override_skip_keeps_the_reader_float():
    model = mlp_block()
    ctx = PassContext(target="cpu")
    Ranges({"x": RangeRecord(-4, 4), "relu_out": RangeRecord(0, 8)}).store(ctx)

    AnnotateQuant(overrides=["relu_out:skip"]).run(model, ctx)

    plan = QuantPlan.from_context(ctx)
    assert plan.nodes["mm2"].reason == "override: 'relu_out' is not quantized"


def test_no_ranges_and_no_data_is_one_error_naming_both_remedies():
    with pytest.raises(OnnxsmithError) as info:
        AnnotateQuant().run(mlp_block(), PassContext())
    assert "--calib-data DIR or --ranges FILE" in str(info.value)


def test_bad_options_are_refused():
    with pytest.raises(PassOptionError):
        AnnotateQuant(overrides=["x=int8"]).run(mlp_block(), PassContext())
    with pytest.raises(PassOptionError, match="tensorrt"):
        ctx = PassContext(target="tensorrt")
        Ranges({"x": RangeRecord(-1, 1)}).store(ctx)
        AnnotateQuant(activation_dtype="uint8").run(mlp_block(), ctx)


def test_old_opset_on_cpu_uses_microsoft_qdq_for_per_channel():
    b = GraphBuilder(opset=11)
    x = b.input("x", "float32", [2, 16])
    b.output(b.MatMul(x, b.initializer("w", np.ones((16, 4), np.float32))), "y")
    model = b.build()

    _, plan = quantize(model, samples(model), "annotate-quant")

    assert plan.qdq_domain == "com.microsoft" and plan.values["w"].axis == 1


def _layer_norm_e_x2(b: GraphBuilder, x):
    """magika's LayerNorm: (x - E[x]) / sqrt(max(E[x*x] - E[x]^2, 0) + eps)."""
    axes = b.const(np.array([-1], np.int64))
    mean = b.ReduceMean(x, axes)
    var = b.Max(b.Sub(b.ReduceMean(b.Mul(x, x), axes), b.Mul(mean, mean)), b.const(np.float32(0)))
    inv = b.Reciprocal(b.Sqrt(b.Add(var, b.const(np.float32(1e-5)))))
    return b.Add(b.Mul(b.Mul(b.Sub(x, mean), inv), b.const(np.ones(16, np.float32))), b.const(np.zeros(16, np.float32)))


def _gelu(b: GraphBuilder, x):
    return b.Mul(b.Mul(x, b.Add(b.Erf(b.Div(x, b.const(np.float32(1.4142135)))), b.const(np.float32(1)))),
                 b.const(np.float32(0.5)))


def test_decomposed_layernorm_and_gelu_are_found_and_kept_float():
    b = GraphBuilder(opset=18)
    x = b.input("x", "float32", ["N", 16])
    h = b.MatMul(b.Add(x, b.const(np.ones(16, np.float32))), b.initializer("w", np.eye(16, dtype=np.float32)))
    normed = _layer_norm_e_x2(b, h)
    b.output(b.MatMul(_gelu(b, normed), b.initializer("w2", np.eye(16, dtype=np.float32))), "y")
    model = b.build()

    islands = find_float_islands(model.graph)

    assert [i.kind for i in islands] == ["LayerNorm", "GELU"]
    assert sorted(n.op_type for n in islands[0].nodes) == sorted(
        ["ReduceMean", "Mul", "ReduceMean", "Mul", "Sub", "Max", "Add", "Sqrt", "Reciprocal", "Sub", "Mul", "Mul", "Add"])
    assert sorted(n.op_type for n in islands[1].nodes) == ["Add", "Div", "Erf", "Mul", "Mul"]
    _, plan = quantize(model, samples(model), "annotate-quant{include=Mul,Sub,Add,Div}")
    inside = [d for d in plan.nodes.values() if d.reason.startswith("inside decomposed")]
    assert len(inside) == 18 and all(d.action == "skip" for d in inside)
    assert plan.stats()["quantized"] == {"Add": 1, "MatMul": 2}  # the first Add, outside the islands


@pytest.mark.parametrize(("target", "symmetric"), [("tensorrt", True), ("cpu", False)])
def test_calibration_searches_the_range_form_the_target_quantizes_with(target, symmetric):
    """Zero-point-free activations (tensorrt) are calibrated as (-T, T); cpu's uint8 ones as they fall."""
    model = conv_net()
    data = [{name: value + 0.5 for name, value in row.items()} for row in samples(model, count=8)]  # skewed

    ctx, _ = quantize(model, data, "annotate-quant", target=target)

    ranges = ctx.data[RANGES_KEY]
    low, high = ranges["x"].bounds()
    assert (float(np.min(low)) == -float(np.max(high))) == symmetric


def _constant_and_activation_chains():
    """A chain of Adds on x, fed by constant subgraphs (a Constant, initializers, their sum) and a
    RandomNormal (computed without inputs, yet not constant)."""
    b = GraphBuilder()
    x = b.input("x", "float32", ["N", 4])
    c = b.Add(b.Constant(value=np.ones(4, np.float32), _name="one"), b.initializer("w", np.ones(4, np.float32)),
              _name="w_plus_one")
    folded = b.Mul(c, b.initializer("s", np.float32(2.0)), _name="scaled")
    noise = b.RandomNormal(shape=[4], dtype=1, _name="noise")
    h = x
    for i in range(6):
        h = b.Add(h, folded if i % 2 else noise, _name=f"add{i}")
    b.output(h, "y")
    return b.build()


def test_is_constant_answers_the_same_with_a_shared_memo_and_reuses_it():
    from onnxsmith.passes.quant.planner import is_constant

    model = _constant_and_activation_chains()
    values = [*model.graph.inputs, *model.graph.initializers.values(), *(v for n in model.graph for v in n.outputs)]
    alone = {v.name: is_constant(v) for v in values}
    assert {name for name, constant in alone.items() if constant} == {"w", "s", "one_out", "w_plus_one_out",
                                                                       "scaled_out"}
    for order in (values, values[::-1]):
        memo: dict = {}
        assert {v.name: is_constant(v, memo) for v in order} == alone
    memo = {}
    is_constant(model.graph.outputs[0], memo)
    known = dict(memo)
    assert set(known) == set(values)  # y's ancestors: the whole graph
    assert all(is_constant(v, memo) == alone[v.name] for v in values if v in known)
    assert memo == known  # every ancestor was answered by the first question
