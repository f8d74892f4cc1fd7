"""smooth-quant: exact on fp32 models, shared scales, absorbers, the explicit Mul, less quantization error."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quant_models import attention_block, ops, quantize, samples

from onnxsmith.calibration import Ranges, calibrate
from onnxsmith.calibration.ranges import CONTEXT_KEY as RANGES_KEY
from onnxsmith.errors import OnnxsmithError, PassOptionError
from onnxsmith.ir import GraphBuilder
from onnxsmith.passes import PassContext
from onnxsmith.passes.quant import CalibrationSetup, SmoothQuant
from onnxsmith.passes.quant.smooth_quant import MAX_SCALE, smoothing_scales
from onnxsmith.passes.quant.testing import calibrated_context
from onnxsmith.verify import check_contract
from onnxsmith.verify._session import run_model

OUTLIERS = (3, 11)


def encoder(seed: int = 0, *, residual: bool = False, gelu_like: bool = False) -> ir.Model:
    """LayerNorm (outlier gamma) -> query and key MatMuls -> Add -> MatMul + bias -> MatMul.

    ``residual``: the LayerNorm output is also added to the result (a reader outside the group).
    ``gelu_like``: a Tanh between the bias Add and the last MatMul (a producer that cannot absorb).
    """
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 5, 16])
    gamma = rng.uniform(0.5, 1.5, 16).astype(np.float32)
    gamma[list(OUTLIERS)] = [40.0, -30.0]
    ln = b.LayerNormalization(x, b.initializer("gamma", gamma),
                              b.initializer("beta", rng.standard_normal(16).astype(np.float32)), _name="ln")
    weight = lambda name, k, n: b.initializer(name, rng.standard_normal((k, n)).astype(np.float32) * 0.3)  # noqa: E731
    h = b.Add(b.MatMul(ln, weight("wq", 16, 16), _name="query"), b.MatMul(ln, weight("wk", 16, 16), _name="key"),
              _name="qk")
    w1 = rng.standard_normal((16, 24)).astype(np.float32) * 0.3
    w1[:, 5] *= 25.0
    h = b.Add(b.MatMul(h, b.initializer("w1", w1), _name="up"),
              b.initializer("b1", rng.standard_normal(24).astype(np.float32)), _name="up_bias")
    if gelu_like:
        h = b.Tanh(h, _name="act")
    y = b.MatMul(h, weight("w2", 24, 16), _name="down")
    if residual:
        y = b.Add(y, ln, _name="residual")
    b.output(y, "y")
    return b.build()


def gemm_chain(seed: int = 0) -> ir.Model:
    """Gemm(x, A^T, c) -> Gemm(h, B^T): a linear producer and a transB reader."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 16])
    a = rng.standard_normal((8, 16)).astype(np.float32) * 0.3
    a[2] *= 30.0
    h = b.Gemm(x, b.initializer("a", a), b.initializer("c", rng.standard_normal((1, 8)).astype(np.float32)),
               transB=1, _name="first")
    b.output(b.Gemm(h, b.initializer("bt", rng.standard_normal((4, 8)).astype(np.float32)), transB=1,
                    _name="second"), "y")
    return b.build()


def skip_layer_norm(seed: int = 0) -> ir.Model:
    """com.microsoft SkipLayerNormalization -> MatMul."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(17, opsets={"com.microsoft": 1})
    x = b.input("x", "float32", [2, 5, 16])
    skip = b.input("skip", "float32", [2, 5, 16])
    gamma = rng.uniform(0.5, 1.5, 16).astype(np.float32)
    gamma[7] = 50.0
    h = b.op("SkipLayerNormalization", x, skip, b.initializer("gamma", gamma),
             b.initializer("beta", rng.standard_normal(16).astype(np.float32)), _domain="com.microsoft",
             _name="skip_ln", epsilon=1e-5)
    h.dtype, h.shape = ir.DataType.FLOAT, ir.Shape([2, 5, 16])
    w = b.initializer("w", rng.standard_normal((16, 8)).astype(np.float32) * 0.3)
    b.output(b.MatMul(h, w, _name="mm"), "y", "float32", [2, 5, 8])
    return b.build()


def feeds(model: ir.Model, count: int = 4, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """Standard-normal feeds for every float input (symbolic dims as 2), int32 ones for a mask."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        feed = {}
        for value in model.graph.inputs:
            shape = [d if isinstance(d, int) else 2 for d in value.shape]
            feed[value.name] = (np.ones(shape, np.int32) if value.dtype == ir.DataType.INT32
                                else rng.standard_normal(shape).astype(np.float32))
        out.append(feed)
    return out


def smooth(model: ir.Model, data: list[dict[str, np.ndarray]], **options) -> tuple[PassContext, dict]:
    ctx = PassContext(target="cpu")
    CalibrationSetup(data).store(ctx)
    result = SmoothQuant(**options).run(model, ctx)
    return ctx, result.stats


def assert_same_outputs(before: ir.Model, after: ir.Model, data: list[dict[str, np.ndarray]]) -> None:
    for feed in data:
        for want, got in zip(run_model(before, feed), run_model(after, feed), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def constant(model: ir.Model, node_name: str, index: int) -> np.ndarray:
    node = next(n for n in model.graph if n.name == node_name)
    return node.inputs[index].const_value.numpy()


@pytest.mark.parametrize(("build", "kinds"), [
    (encoder, {"absorbed-layer-norm": 1, "absorbed-linear": 1}),
    (gemm_chain, {"absorbed-linear": 1}),
    (skip_layer_norm, {"absorbed-layer-norm": 1}),
])
def test_smoothing_is_exact_on_the_float_model(build, kinds):
    model, reference = build(), build()
    data = feeds(model)
    _, stats = smooth(model, data)
    assert {k: v for k, v in stats.items() if k.startswith("absorbed")} == kinds
    assert ops(model) == ops(reference)  # only constants changed
    assert_same_outputs(reference, model, feeds(model, seed=7))


def test_readers_of_one_activation_share_one_scale_and_layer_norm_absorbs_its_inverse():
    model, reference = encoder(), encoder()
    data = feeds(model)
    smooth(model, data, alpha=0.5)
    s_query = constant(model, "query", 1)[:, 0] / constant(reference, "query", 1)[:, 0]
    s_key = constant(model, "key", 1)[:, 0] / constant(reference, "key", 1)[:, 0]
    np.testing.assert_allclose(s_query, s_key, rtol=1e-6)
    np.testing.assert_allclose(constant(model, "ln", 1), constant(reference, "ln", 1) / s_query, rtol=1e-6)
    np.testing.assert_allclose(constant(model, "ln", 2), constant(reference, "ln", 2) / s_query, rtol=1e-6)
    assert np.all(s_query[list(OUTLIERS)] > 3 * np.median(s_query))  # the outlier channels move most


def test_the_smoothed_activation_and_weight_rows_meet_at_alpha_one_half():
    model = encoder()
    data = feeds(model)
    smooth(model, data, alpha=0.5, include=["query", "key"])
    ranges = calibrate(model, data, per_channel=True, axis=-1, values=["ln_out"])
    low, high = ranges["ln_out"].bounds()
    activation = np.maximum(np.abs(low), np.abs(high))
    weight = np.maximum(np.abs(constant(model, "query", 1)).max(1), np.abs(constant(model, "key", 1)).max(1))
    np.testing.assert_allclose(activation, weight, rtol=1e-4)


def test_a_reader_outside_the_group_blocks_absorption_unless_a_mul_is_allowed():
    model, reference = encoder(residual=True), encoder(residual=True)
    data = feeds(model)
    ctx, stats = smooth(model, data)
    assert "absorbed-layer-norm" not in stats
    assert any("'ln_out' not smoothed: it also feeds Add 'residual'" in note for note in ctx.trace["smooth-quant"])
    _, stats = smooth(model := encoder(residual=True), data, insert_mul=True)
    assert stats["inserted-mul"] == 2 and ops(model).count("Mul") == 2  # ln_out and qk_out (an Add of two MatMuls)
    mul = next(n for n in model.graph if n.op_type == "Mul" and n.inputs[0].name == "ln_out")
    assert {use.node.name for use in mul.outputs[0].uses()} == {"query", "key"}
    assert_same_outputs(reference, model, feeds(model, seed=7))


def test_a_producer_that_cannot_absorb_needs_the_mul_option():
    model = encoder(gelu_like=True)
    ctx, _ = smooth(model, feeds(model), include=["down"])
    assert ctx.trace["smooth-quant"] == ["'act_out' not smoothed: its producer cannot absorb 1/s "
                                         "(insert-mul=true would scale it with a Mul)"]


def test_fused_attention_absorbs_into_its_value_columns_and_is_smoothed_as_a_reader():
    model, reference = attention_block(), attention_block()
    data = feeds(model)
    _, stats = smooth(model, data, op_types=["MatMul", "Attention"])
    assert stats["absorbed-attention"] == 1 and stats["absorbed-linear"] == 1  # mm_out; the Attention input
    qkv, qkv_before = constant(model, "attention", 1), constant(reference, "attention", 1)
    np.testing.assert_allclose(qkv[:, :32] / qkv_before[:, :32], np.broadcast_to(
        (qkv[:, :1] / qkv_before[:, :1]), (16, 32)), rtol=1e-5)  # Q and K columns: only the row scales
    assert_same_outputs(reference, model, feeds(model, seed=7))


def test_quantization_error_drops_on_a_model_with_outlier_channels():
    errors = {}
    data = feeds(encoder(), count=8)
    test = feeds(encoder(), count=4, seed=9)
    for pipeline in ("qdq", "qdq-smooth"):
        model = encoder()
        quantize(model, data, pipeline)
        errors[pipeline] = np.mean([np.abs(run_model(model, f)[0] - run_model(encoder(), f)[0]).mean() for f in test])
    assert errors["qdq-smooth"] < 0.5 * errors["qdq"]


def test_ranges_of_the_unsmoothed_model_are_dropped():
    model = encoder()
    data = feeds(model)
    ctx = PassContext()
    CalibrationSetup(data).store(ctx)
    calibrate(model, data).store(ctx)
    SmoothQuant().run(model, ctx)
    assert RANGES_KEY not in ctx.data and RANGES_KEY not in ctx.properties


def test_without_calibration_data_or_with_a_bad_alpha_the_pass_says_what_to_do():
    with pytest.raises(OnnxsmithError, match="needs calibration data"):
        SmoothQuant().run(encoder(), PassContext(data={RANGES_KEY: Ranges()}))
    with pytest.raises(PassOptionError, match=r"in \[0, 1\]"):
        smooth(encoder(), feeds(encoder()), alpha=1.5)


def test_a_second_run_finds_nothing_to_do():
    model = encoder(residual=True)
    data = feeds(model)
    smooth(model, data, insert_mul=True)
    ctx, stats = smooth(model, data, insert_mul=True)
    assert stats["smoothed-values"] == 0
    assert all("already smooth" in note for note in ctx.trace["smooth-quant"] if "'ln_out" in note)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1e3), min_size=1, max_size=8), st.floats(0, 1))
def test_scales_are_positive_bounded_and_one_for_dead_channels(activation, alpha):
    a = np.array(activation)
    w = np.linspace(0.0, 2.0, a.size)
    s = smoothing_scales(a, w, alpha)
    assert np.all((s > 0) & (s <= MAX_SCALE))
    assert np.all(s[(a == 0) | (w == 0)] == 1.0)


@pytest.mark.parametrize("build", [encoder, gemm_chain])
def test_pass_contract(build):
    check_contract(SmoothQuant(), build(), context=calibrated_context(SmoothQuant))


def test_the_mul_variant_keeps_the_contract():
    check_contract(SmoothQuant(insert_mul=True), encoder(residual=True), context=calibrated_context(SmoothQuant))


def test_qdq_smooth_pipeline_plans_the_smoothed_model():
    model = encoder()
    _, plan = quantize(model, samples(model), "qdq-smooth")
    assert plan.stats()
