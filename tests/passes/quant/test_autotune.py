"""tune-quant: excluding exactly the tensors that cost fidelity, leaving faithful plans alone, bounded trials."""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir
import pytest
from quant_models import conv_net, quantize, samples

from onnxsmith.calibration import RangeRecord, Ranges
from onnxsmith.errors import PassOptionError
from onnxsmith.ir import GraphBuilder
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.quant import QuantPlan, TuneQuant
from onnxsmith.passes.quant._replan import node_names, nodes_keeping_quantized, plan_without
from onnxsmith.verify._session import make_session

AUTO = "annotate-quant,tune-quant,insert-qdq,fold-scales"


def outlier_mlp(seed: int = 0) -> ir.Model:
    """x -> MatMul(w1) -> Relu -> MatMul(w2); w1 ignores x's channel 0, where the data has an outlier."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 16])
    w1 = rng.standard_normal((16, 32)).astype(np.float32) * 0.3
    w1[0] = 0.0
    h = b.Relu(b.MatMul(x, b.initializer("w1", w1), _name="mm1"), _name="relu")
    w2 = rng.standard_normal((32, 8)).astype(np.float32) * 0.3
    b.output(b.MatMul(h, b.initializer("w2", w2), _name="mm2"), "y")
    return b.build()


def outlier_data(count: int = 8) -> list[dict[str, np.ndarray]]:
    """Normal feeds, one of which holds 3000 in channel 0: x's range then quantizes every normal value to 0."""
    rng = np.random.default_rng(1)
    data = [{"x": rng.standard_normal((2, 16)).astype(np.float32)} for _ in range(count)]
    data[3]["x"][0, 0] = 3000.0
    return data


def tune_stats(ctx: PassContext, passes: str = AUTO, model: ir.Model | None = None) -> dict:
    report = PassManager(passes).run(model if model is not None else outlier_mlp(), ctx)
    return next(r.stats for r in report.records if r.name == "tune-quant")


def test_the_outlier_input_is_kept_float_and_the_threshold_is_met():
    model = outlier_mlp()

    ctx, plan = quantize(model, outlier_data(), AUTO)

    assert plan.quantized_nodes() == ["mm2"]
    decision = plan.nodes["mm1"]
    assert decision.action == "skip"
    assert decision.reason.startswith("tune-quant: keeping 'x' float")
    assert decision.reason.endswith("cosine 0.0000 -> 1.0000")  # the measured change is recorded
    assert "x" not in plan.values and "w1" not in plan.values
    assert plan.stats()["skipped"] == {"tune-quant": 1}
    assert [n.op_type for n in model.graph].count("QuantizeLinear") == 1  # only mm2's input (its weight is folded)


def test_stats_give_the_fidelity_before_and_after():
    ctx, _ = quantize(outlier_mlp(), outlier_data(), "annotate-quant")

    stats = tune_stats(ctx, "tune-quant")

    assert stats["before"] < 0.5 <= 0.99 <= stats["after"]
    assert (stats["met"], stats["trials"], stats["excluded"], stats["float_tensors"]) == (True, 1, 1, ["x"])


def test_a_faithful_plan_is_left_unchanged():
    model = conv_net()
    ctx, plan = quantize(model, samples(model), "annotate-quant")
    before = plan.to_dict()

    stats = tune_stats(ctx, "tune-quant", model)

    assert QuantPlan.from_context(ctx).to_dict() == before
    assert (stats["met"], stats["trials"]) == (True, 0)


def test_an_unreachable_threshold_stops_at_max_trials_with_a_warning_and_a_valid_plan(caplog):
    model = outlier_mlp()
    ctx, _ = quantize(model, outlier_data(), "annotate-quant")

    with caplog.at_level(logging.WARNING, logger="onnxsmith.passes.quant.autotune"):
        stats = tune_stats(ctx, "tune-quant{metric=sqnr;threshold=1000;max-trials=1},insert-qdq,fold-scales", model)

    assert (stats["met"], stats["trials"]) == (False, 1)
    assert "below the threshold sqnr 1000.0 dB" in caplog.text
    x = np.random.default_rng(2).standard_normal((2, 16)).astype(np.float32)
    assert make_session(model).run(None, {"x": x})[0].shape == (2, 8)


def test_an_exclusion_that_does_not_help_is_undone():
    # y = x @ w1 + z @ wz, where z (integers 0..255) and wz (integers, 127 in every column) quantize exactly
    rng = np.random.default_rng(0)
    b = GraphBuilder(opset=17)
    x, z = b.input("x", "float32", ["N", 16]), b.input("z", "float32", ["N", 4])
    w1 = rng.standard_normal((16, 8)).astype(np.float32) * 0.3
    w1[0] = 0.0
    wz = rng.integers(-127, 128, (4, 8)).astype(np.float32)
    wz[0] = 127.0
    b.output(b.Add(b.MatMul(x, b.initializer("w1", w1), _name="mm1"),
                   b.MatMul(z, b.initializer("wz", wz), _name="mmz"), _name="add"), "y")
    model = b.build()
    data = [{"x": d["x"], "z": rng.integers(0, 256, (2, 4)).astype(np.float32)} for d in outlier_data()]
    for d in data:
        d["z"][0, 0], d["z"][1, 0] = 0.0, 255.0  # every sample spans [0, 255]: scale 1
    ctx, _ = quantize(model, data, "annotate-quant")

    stats = tune_stats(ctx, "tune-quant{threshold=1.5;max-trials=5}", model)

    plan = QuantPlan.from_context(ctx)
    assert stats["float_tensors"] == ["x"] and stats["trials"] >= 2
    assert plan.nodes["mm1"].action == "skip" and plan.nodes["mmz"].action == "quantize"


def test_tuning_is_deterministic():
    def run() -> tuple[dict, dict]:
        ctx, _ = quantize(outlier_mlp(), outlier_data(), "annotate-quant")
        stats = tune_stats(ctx, "tune-quant{top-k=2}", outlier_mlp())
        stats.pop("seconds")
        return QuantPlan.from_context(ctx).to_dict(), stats

    assert run() == run()


def test_without_calibration_data_the_plan_is_not_tuned(caplog):
    ctx = PassContext(target="cpu")
    Ranges({"x": RangeRecord(-4, 4), "relu_out": RangeRecord(0, 8)}).store(ctx)

    with caplog.at_level(logging.WARNING, logger="onnxsmith.passes.quant.autotune"):
        stats = tune_stats(ctx, "annotate-quant,tune-quant")

    assert stats["why"] == "no calibration data"
    assert "not tuned" in caplog.text
    assert QuantPlan.from_context(ctx).quantized_nodes() == ["mm1", "mm2"]


def test_the_pipeline_qdq_auto_tunes():
    model = outlier_mlp()

    _, plan = quantize(model, outlier_data(), "qdq-auto")

    assert plan.quantized_nodes() == ["mm2"]


@pytest.mark.parametrize("options", [{"samples": 0}, {"max_trials": -1}, {"metric": "accuracy"}])
def test_bad_options_are_errors(options):
    with pytest.raises(PassOptionError):
        TuneQuant(**options)


def test_top1_needs_a_classifier_output():
    model = conv_net()  # its output is [N, 64]: 2-D, so top-1 applies
    ctx, _ = quantize(model, samples(model), "annotate-quant")

    assert tune_stats(ctx, "tune-quant{metric=top1}", model)["met"]


def test_keeping_a_conv_output_float_excludes_its_producer_and_its_reader():
    model = conv_net()
    _, plan = quantize(model, samples(model), "annotate-quant")
    values = {out.name: out for node in model.graph for out in node.outputs}
    names = node_names(model.graph)

    assert nodes_keeping_quantized(values["conv1_out"], plan, names) == ["conv1"]  # its only reader, Relu, is fused
    assert nodes_keeping_quantized(values["relu1_out"], plan, names) == ["conv1"]  # stands for the fused Relu
    assert nodes_keeping_quantized(values["pool_out"], plan, names) == ["conv2"]


def test_plan_without_a_node_is_what_the_planner_decides_when_it_is_excluded():
    model = conv_net()
    data = samples(model)
    _, plan = quantize(model, data, "annotate-quant")
    _, expected = quantize(conv_net(), data, "annotate-quant{exclude=conv2}")

    edited = plan_without(plan, model.graph, {"conv2": "excluded: matches 'conv2'"}, {})

    assert edited.to_dict() == expected.to_dict()
    assert "pool" not in edited.nodes and "w2" not in edited.values  # the shared scale went with conv2
