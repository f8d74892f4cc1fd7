"""quantize-dynamic: golden forms per target, declines, the error bound, and what onnxruntime runs."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.codegen import ep_check, get_target
from onnxsmith.errors import PassOptionError
from onnxsmith.ir import GraphBuilder, parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.quant.scales import QuantParams, dequantize, matmul_error_bound, params_for_range, quantize
from onnxsmith.passes.rewrite.testing import canonical_text
from onnxsmith.verify import check_pass, models
from onnxsmith.verify._session import run_model

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'

# Column maxima 127 * 2^-6 and 127 * 2^-5: the per-column scales are powers of two and exact.
MATMUL_ADD = HEADER + """
g (float[3,2] x) => (float[3,2] y) <float[2,2] w = {1.984375, 3.96875, -0.5, 1.0}, float[2] b = {0.25, -1.0}> {
  [mm] t = MatMul(x, w)
  [add] y = Add(t, b)
}"""

QUANTIZED_WEIGHT = ("int8[2,2] w_quantized = {127, 127, -32, 32}, float[2] w_scale = {0.015625, 0.03125}, "
                    "int8[2] w_zero_point = {0, 0}")


def _run(text_or_model, spec: str = "quantize-dynamic", target: str = "cpu", ctx: PassContext | None = None):
    model = parse_text(text_or_model) if isinstance(text_or_model, str) else text_or_model
    report = PassManager(spec, verify="structural").run(model, ctx or PassContext(target=target))
    return model, report.records[0]


def _assert_text(model: ir.Model, expected: str) -> None:
    assert canonical_text(model) == canonical_text(parse_text(expected))


def test_cpu_matmul_and_bias_become_one_dynamic_quantize_matmul():
    model, record = _run(MATMUL_ADD)
    _assert_text(model, '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>' + f"""
g (float[3,2] x) => (float[3,2] y) <float[2] b = {{0.25, -1.0}}, {QUANTIZED_WEIGHT}> {{
  [add_DynamicQuantizeMatMul] y = com.microsoft.DynamicQuantizeMatMul(x, w_quantized, w_scale, w_zero_point, b)
}}""")
    assert record.stats["applied"] == {"dynamic-matmul": 1, "dynamic-gemm": 0, "dynamic-matmul-bias": 1,
                                       "dynamic-attention": 0, "dynamic-gather": 0, "dynamic-embed-layer-norm": 0}


def test_generic_matmul_is_standard_integer_arithmetic():
    model, _ = _run(MATMUL_ADD, target="generic")
    q = "mm_DynamicQuantizeLinear_out"
    _assert_text(model, HEADER + f"""
g (float[3,2] x) => (float[3,2] y) <float[2] b = {{0.25, -1.0}}, {QUANTIZED_WEIGHT}> {{
  [mm_DynamicQuantizeLinear] {q}0, {q}1, {q}2 = DynamicQuantizeLinear(x)
  [mm_MatMulInteger] mm_MatMulInteger_out = MatMulInteger({q}0, w_quantized, {q}2, w_zero_point)
  [mm_Cast] mm_Cast_out = Cast <to = 1> (mm_MatMulInteger_out)
  [mm_Mul] mm_Mul_out = Mul({q}1, w_scale)
  [mm_Mul_1] t = Mul(mm_Cast_out, mm_Mul_out)
  [add] y = Add(t, b)
}}""")


def test_gemm_folds_alpha_transb_and_beta_bias():
    # alpha * x @ w^T + beta * c == x @ (alpha * w^T) + beta * c
    model, _ = _run(HEADER + """
g (float[3,2] x) => (float[3,2] y) <float[2,2] w = {0.9921875, -0.25, 1.984375, 0.5}, float[2] c = {0.5, -2.0}> {
  [gemm] y = Gemm <alpha = 2.0, beta = 0.5, transB = 1> (x, w, c)
}""")
    _assert_text(model, '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>' + f"""
g (float[3,2] x) => (float[3,2] y) <{QUANTIZED_WEIGHT}, float[2] w_bias = {{0.25, -1.0}}> {{
  [gemm_DynamicQuantizeMatMul] y = com.microsoft.DynamicQuantizeMatMul(x, w_quantized, w_scale, w_zero_point,
                                                                       w_bias)
}}""")


def _declines(text: str | ir.Model, spec: str = "quantize-dynamic{explain=true}", target: str = "cpu") -> list[str]:
    model = parse_text(text) if isinstance(text, str) else text
    before = canonical_text(model)
    ctx = PassContext(target=target)
    _, record = _run(model, spec, ctx=ctx)
    assert not record.modified and canonical_text(model) == before
    return ctx.trace.get("quantize-dynamic", [])


@pytest.mark.parametrize(("case", "text", "spec", "reason"), [
    ("weight is an input", HEADER + """
g (float[3,2] x, float[2,2] w) => (float[3,2] y) { [mm] y = MatMul(x, w) }""", "", "not a constant"),
    ("excluded by name", MATMUL_ADD, "exclude=m.", "excluded by 'm.'"),
    ("not included", MATMUL_ADD, "include=other", "matches no include pattern"),
    ("op type not selected", MATMUL_ADD, "op-types=Gemm", "op type MatMul is not in op-types"),
    ("gemm transA", HEADER + """
g (float[2,3] x) => (float[3,2] y) <float[2,2] w = {1.0, 2.0, 3.0, 4.0}> {
  [gemm] y = Gemm <transA = 1> (x, w)
}""", "", "transA is set"),
    ("gemm C per row", HEADER + """
g (float[3,2] x) => (float[3,2] y)
  <float[2,2] w = {1.0, 2.0, 3.0, 4.0}, float[3,2] c = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}> {
  [gemm] y = Gemm(x, w, c)
}""", "", "C has shape [3, 2]"),
])
def test_declines_say_why(case, text, spec, reason):
    lines = _declines(text, "quantize-dynamic{explain=true" + (f";{spec}" if spec else "") + "}")
    assert any(reason in line for line in lines), lines


def test_generic_form_needs_opset_11():
    lines = _declines(MATMUL_ADD.replace('"" : 17', '"" : 10'), target="generic")
    assert any("needs opset 11" in line for line in lines)


@pytest.mark.parametrize(("options", "message"), [
    ("op-types=Conv", "Conv is not quantized dynamically"),
    ("op-types=Relu", "cannot be quantized dynamically"),
    ("exclude=(", "is not a regular expression"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(PassOptionError, match=message):
        _run(MATMUL_ADD, f"quantize-dynamic{{{options}}}")


def test_second_run_changes_nothing():
    model, _ = _run(MATMUL_ADD)
    _, record = _run(model)
    assert not record.modified


def _matmul_model(a_shape: tuple[int, ...], w: np.ndarray, bias: np.ndarray, op: str = "MatMul") -> ir.Model:
    b = GraphBuilder(17)
    x = b.input("a", "float32", list(a_shape))
    if op == "Gemm":
        y = b.Gemm(x, b.initializer("w", w), b.initializer("bias", bias), _name="gemm")
    else:
        y = b.Add(b.MatMul(x, b.initializer("w", w), _name="mm"), b.initializer("bias", bias), _name="add")
    b.output(y, "y")
    return b.build()


def _activation_step(a: np.ndarray) -> float:
    """DynamicQuantizeLinear's scale for ``a``."""
    return float(np.float32((max(a.max(), 0) - min(a.min(), 0)) / 255))


def _weight_step(w: np.ndarray, options: str) -> np.ndarray:
    """The weight quantization step each option set implies (per column unless per-channel=false)."""
    if "per-channel=false" in options:
        w = w.reshape(-1, 1)
    if "symmetric=false" in options:  # asymmetric, 256 levels
        return (np.maximum(w.max(axis=0), 0) - np.minimum(w.min(axis=0), 0)) / 255
    levels = 127.5 if "uint8" in options else 127  # zero point 128, or narrow int8 in [-127, 127]
    return np.abs(w).max(axis=0) / levels


@pytest.mark.parametrize("target", ["cpu", "generic"])
@pytest.mark.parametrize(("op", "a_shape"), [("MatMul", (2, 5, 64)), ("Gemm", (7, 64))])
@pytest.mark.parametrize("options", ["", "per-channel=false", "weight-dtype=uint8", "symmetric=false",
                                     "weight-dtype=uint8;symmetric=false"])
def test_outputs_stay_within_the_bound_implied_by_the_scales(target, op, a_shape, options):
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((64, 24)) * rng.uniform(0.1, 3.0, 24)).astype(np.float32)  # columns of mixed ranges
    bias = rng.standard_normal(24).astype(np.float32)
    a = (rng.standard_normal(a_shape) * 2).astype(np.float32)
    model = _matmul_model(a_shape, w, bias, op)
    expected = run_model(model, {"a": a})[0]
    _run(model, f"quantize-dynamic{{{options}}}" if options else "quantize-dynamic", target)
    assert not any(n.op_type in ("MatMul", "Gemm") for n in model.graph)
    actual = run_model(model, {"a": a})[0]
    bound = matmul_error_bound(np.abs(a), np.abs(w), _activation_step(a), _weight_step(w, options))
    slack = 1e-5 * (np.abs(a) @ np.abs(w)) + 1e-5  # float32 accumulation
    assert np.all(np.abs(actual - expected) <= bound + slack)
    assert np.abs(actual - expected).max() > 0  # it did quantize


@pytest.mark.parametrize("target", ["cpu", "generic"])
def test_onnxruntime_runs_integer_kernels(target):
    rng = np.random.default_rng(1)
    model = _matmul_model((4, 32), rng.standard_normal((32, 16)).astype(np.float32),
                          rng.standard_normal(16).astype(np.float32))
    _run(model, target=target)
    report = ep_check(model, get_target("cpu"))
    assert report.ok, report.format()
    fused = report.optimized_ops.get("com.microsoft::DynamicQuantizeMatMul", 0) + report.optimized_ops.get(
        "com.microsoft::MatMulIntegerToFloat", 0)
    assert fused == 1, report.format()
    assert "MatMul" not in report.optimized_ops and not report.qdq_left


def _attention_model(w: np.ndarray, bias: np.ndarray | None, heads: int = 2) -> ir.Model:
    hidden = w.shape[0]
    b = GraphBuilder(17, opsets={"com.microsoft": 1})
    x = b.input("x", "float32", [2, 5, hidden])
    mask = b.input("mask", "int32", [2, 5])
    bias_value = None if bias is None else b.initializer("qkv_b", bias)
    y = b.op("Attention", x, b.initializer("qkv", w), bias_value, mask, _domain="com.microsoft", _name="attention",
             num_heads=heads)
    b.output(y, "y", "float32", [2, 5, hidden])
    return b.build()


def _constant(model: ir.Model, name: str) -> np.ndarray:
    return model.graph.initializers[name].const_value.numpy()


@pytest.mark.parametrize("with_bias", [True, False])
def test_attention_becomes_qattention_of_the_dequantized_operands(with_bias):
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((16, 48)) * 0.3).astype(np.float32)
    bias = (rng.standard_normal(48) * 0.1).astype(np.float32) if with_bias else None
    model = _attention_model(w, bias)
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    feeds = {"x": x, "mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.int32)}
    expected = run_model(model, feeds)[0]
    _, record = _run(model)
    assert record.stats["applied"]["dynamic-attention"] == 1
    assert [n.op_type for n in model.graph] == ["DynamicQuantizeLinear", "QAttention"]
    actual = run_model(model, feeds)[0]
    # QAttention is float Attention of the dequantized input and weight: per-tensor uint8 input
    # (DynamicQuantizeLinear) and the per-column int8 weight the pass stored.
    x_params = params_for_range(x.min(), x.max(), ir.DataType.UINT8)
    w_params = QuantParams(_constant(model, "qkv_scale"), _constant(model, "qkv_zero_point"), ir.DataType.INT8, axis=1)
    dequantized = {**feeds, "x": dequantize(quantize(x, x_params), x_params)}
    reference = run_model(_attention_model(dequantize(_constant(model, "qkv_quantized"), w_params), bias), dequantized)
    np.testing.assert_allclose(actual, reference[0], atol=1e-4)
    assert 0 < np.abs(actual - expected).max() < 0.05 * np.abs(expected).max()  # and close to float
    report = ep_check(model, get_target("cpu"), feeds)
    assert report.optimized_ops.get("com.microsoft::QAttention") == 1, report.format()


def test_attention_is_left_alone_on_generic():
    lines = _declines(_attention_model(np.ones((4, 12), np.float32), None), target="generic")
    assert any("no com.microsoft::QAttention kernel" in line for line in lines)


def test_untyped_activations_are_quantized():
    """Exported models often carry no inferred types: the float32 weight says what A is."""
    b = GraphBuilder(17)
    x = b.input("x", "float32", [2, 8])
    b.output(b.MatMul(b.Relu(x), b.initializer("w", np.ones((8, 4), np.float32)), _name="mm"), "y", "float32")
    model = b.build(infer_types=False)
    _, record = _run(model)
    assert record.stats["applied"]["dynamic-matmul"] == 1


def test_a_shared_activation_named_like_a_quantized_weight_gets_fresh_names():
    """w1 is read as an activation (Gemm's A, shared by two readers) and as a weight (MatMul's B): the
    shared DynamicQuantizeLinear must not reuse the weight's 'w1_quantized'/'w1_scale'/'w1_zero_point'
    (found by the random-model contract test)."""
    text = HEADER + """
g (float[1] x0) => (float[1,1] y1, float[1,1] y2) <float[1,1] w1 = {0.27392337}, float[1,1] w2 = {-0.46042657}> {
  [g1] y1 = Gemm(w1, w2)
  [m2] y2 = MatMul(w1, w1)
}"""
    model, record = _run(text)
    assert record.modified
    names = [v.name for v in model.graph.initializers.values()]
    names += [v.name for n in model.graph for v in n.outputs]
    assert len(names) == len(set(names)), names
    quantizer = next(n for n in model.graph if n.op_type == "DynamicQuantizeLinear")
    for output, base in zip(quantizer.outputs, ("w1_quantized_", "w1_scale_", "w1_zero_point_")):
        assert output.name.startswith(base), output.name  # the weight holds the plain names
    expected = run_model(parse_text(text), {"x0": np.zeros(1, np.float32)})
    got = run_model(model, {"x0": np.zeros(1, np.float32)})
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=0.02, atol=1e-3)


@pytest.mark.parametrize("target", ["cpu", "generic"])
def test_pass_contract_on_random_models(target):
    """Structure, tolerance, idempotence and save/load on random MatMul/Gemm models."""
    check_pass("quantize-dynamic", models=models(["MatMul", "Gemm", "Relu", "Add"], max_nodes=6, dynamic=False),
               max_examples=10, context=lambda model: PassContext(target=target))
