"""quantize-dynamic: readers of one activation share its DynamicQuantizeLinear (golden forms, bound, onnxruntime)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.codegen import ep_check, get_target
from onnxsmith.ir import GraphBuilder, parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.quant.scales import matmul_error_bound
from onnxsmith.passes.rewrite.testing import canonical_text
from onnxsmith.verify._session import run_model

MS_HEADER = '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>'

# Query/key/value-like projections of one activation; column maxima 127 * 2^-k keep the scales exact.
PROJECTIONS = '<ir_version: 8, opset_import: ["" : 17]>' + """
g (float[3,2] x) => (float[3,2] q, float[3,2] k) <float[2,2] wq = {1.984375, 3.96875, -0.5, 1.0},
                                                 float[2,2] wk = {0.9921875, -0.25, 0.5, 1.984375},
                                                 float[2] b = {0.25, -1.0}> {
  [mm_q] t = MatMul(x, wq)
  [add_q] q = Add(t, b)
  [mm_k] k = MatMul(x, wk)
}"""


def _run(model: ir.Model, target: str = "cpu") -> ir.Model:
    PassManager("quantize-dynamic", verify="structural").run(model, PassContext(target=target))
    return model


def _ops(model: ir.Model) -> Counter[str]:
    return Counter(node.op_type for node in model.graph)


def test_cpu_projections_share_one_dynamic_quantize_linear():
    model = _run(parse_text(PROJECTIONS))
    expected = MS_HEADER + """
g (float[3,2] x) => (float[3,2] q, float[3,2] k)
  <float[2] b = {0.25, -1.0},
   int8[2,2] wq_quantized = {127, 127, -32, 32}, float[2] wq_scale = {0.015625, 0.03125}, int8[2] wq_zero_point = {0, 0},
   int8[2,2] wk_quantized = {127, -16, 64, 127}, float[2] wk_scale = {0.0078125, 0.015625},
   int8[2] wk_zero_point = {0, 0}> {
  [x_quantize_input] x_quantized, x_scale, x_zero_point = DynamicQuantizeLinear(x)
  [add_q_DynamicQuantizeMatMul] q = com.microsoft.MatMulIntegerToFloat(x_quantized, wq_quantized, x_scale, wq_scale,
                                                                     x_zero_point, wq_zero_point, b)
  [mm_k_DynamicQuantizeMatMul] k = com.microsoft.MatMulIntegerToFloat(x_quantized, wk_quantized, x_scale, wk_scale,
                                                                    x_zero_point, wk_zero_point)
}"""
    assert canonical_text(model) == canonical_text(parse_text(expected))


def test_generic_projections_share_one_dynamic_quantize_linear():
    model = _run(parse_text(PROJECTIONS), target="generic")
    assert _ops(model)["DynamicQuantizeLinear"] == 1
    assert _ops(model)["MatMulInteger"] == 2


def test_a_single_reader_keeps_its_dynamic_quantize_matmul():
    model = _run(parse_text(PROJECTIONS.replace("k = MatMul(x, wk)", "k = MatMul(q, wk)")))
    assert _ops(model) == {"DynamicQuantizeMatMul": 2}


def test_second_run_changes_nothing():
    model = _run(parse_text(PROJECTIONS))
    before = canonical_text(model)
    report = PassManager("quantize-dynamic", verify="structural").run(model, PassContext(target="cpu"))
    assert not report.records[0].modified
    assert canonical_text(model) == before


def _projections(weights: list[np.ndarray], bias: np.ndarray, shape: tuple[int, ...]) -> ir.Model:
    b = GraphBuilder(17)
    x = b.input("x", "float32", list(shape))
    for i, w in enumerate(weights):
        product = b.MatMul(x, b.initializer(f"w{i}", w), _name=f"mm{i}")
        b.output(b.Add(product, b.initializer(f"b{i}", bias), _name=f"add{i}"), f"y{i}")
    return b.build()


@pytest.mark.parametrize("target", ["cpu", "generic"])
def test_shared_outputs_stay_within_the_bound_implied_by_the_scales(target):
    rng = np.random.default_rng(3)
    weights = [(rng.standard_normal((64, 24)) * rng.uniform(0.1, 3.0, 24)).astype(np.float32) for _ in range(3)]
    bias = rng.standard_normal(24).astype(np.float32)
    x = (rng.standard_normal((2, 5, 64)) * 2).astype(np.float32)
    model = _projections(weights, bias, x.shape)
    expected = run_model(model, {"x": x})
    _run(model, target)
    assert _ops(model)["DynamicQuantizeLinear"] == 1
    actual = run_model(model, {"x": x})
    a_step = float(np.float32((max(x.max(), 0) - min(x.min(), 0)) / 255))
    for w, want, got in zip(weights, expected, actual, strict=True):
        bound = matmul_error_bound(np.abs(x), np.abs(w), a_step, np.abs(w).max(axis=0) / 127)
        slack = 1e-5 * (np.abs(x) @ np.abs(w)) + 1e-5  # float32 accumulation
        assert np.all(np.abs(got - want) <= bound + slack)
        assert np.abs(got - want).max() > 0  # it did quantize


def test_onnxruntime_runs_one_quantization_and_integer_matmuls():
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal((32, 16)).astype(np.float32) for _ in range(3)]
    model = _run(_projections(weights, rng.standard_normal(16).astype(np.float32), (4, 32)))
    report = ep_check(model, get_target("cpu"))
    assert report.ok, report.format()
    assert report.optimized_ops.get("DynamicQuantizeLinear") == 1, report.format()
    assert report.optimized_ops.get("com.microsoft::MatMulIntegerToFloat") == 3, report.format()
    assert "com.microsoft::DynamicQuantizeMatMul" not in report.optimized_ops
    assert "MatMul" not in report.optimized_ops and "Add" not in report.optimized_ops and not report.qdq_left
