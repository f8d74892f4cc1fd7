"""The qdq pipeline's output runs on onnxruntime's integer kernels with no Q/DQ left on the hot path.

onnxruntime's optimized graph (ORT_ENABLE_ALL, via ``ep_check``) is counted: every quantized op
must have become an integer kernel, and the only QuantizeLinear/DequantizeLinear left are the
unavoidable ones (quantizing a float activation, dequantizing a float output).
"""

from __future__ import annotations

import numpy as np
from quant_models import attention_block, conv_net, gemm_net, mlp_block, quantize, samples

from onnxsmith.codegen import ep_check, get_target
from onnxsmith.verify._session import run_model


def _check(model, data):
    return ep_check(model, get_target("cpu"), data[0])


def test_conv_net_becomes_qlinearconv_with_only_boundary_qdq():
    model = conv_net()
    data = samples(model)
    expected = run_model(model, data[0])[0]

    quantize(model, data)
    report = _check(model, data)

    assert report.integer_ops == {"com.microsoft::QLinearConv": 2, "com.microsoft::NhwcMaxPool": 1}
    assert report.qdq_left == {"QuantizeLinear": 1, "DequantizeLinear": 1}  # the input x, the output y
    actual = run_model(model, data[0])[0]
    assert np.abs(actual - expected).max() < 0.05 * np.abs(expected).max()


def test_matmul_block_becomes_matmul_integer_to_float_with_no_dequantize_left():
    model = mlp_block()
    data = samples(model)
    expected = run_model(model, data[0])[0]

    quantize(model, data)
    report = _check(model, data)

    assert report.integer_ops == {"com.microsoft::MatMulIntegerToFloat": 2}
    assert report.qdq_left == {"QuantizeLinear": 2}  # each MatMul's float activation input, quantized once
    actual = run_model(model, data[0])[0]
    assert np.abs(actual - expected).max() < 0.05 * np.abs(expected).max()


def test_gemm_with_a_row_vector_bias_becomes_qgemm_with_an_int32_bias():
    model = gemm_net()  # fuse writes MatMul + Add as Gemm with a [1, N] bias
    data = samples(model)
    expected = run_model(model, data[0])[0]

    quantize(model, data)
    report = _check(model, data)

    gemm = next(n for n in model.graph if n.op_type == "Gemm")
    bias = gemm.inputs[2].producer()
    assert bias.op_type == "DequantizeLinear" and bias.inputs[0].dtype.name == "INT32"
    assert bias.inputs[0].shape.dims == (8,)
    assert report.integer_ops == {"com.microsoft::QGemm": 1}
    assert report.qdq_left == {"QuantizeLinear": 1}  # x; QGemm writes float y itself
    actual = run_model(model, data[0])[0]
    assert np.abs(actual - expected).max() < 0.05 * np.abs(expected).max()


def test_gemm_with_alpha_keeps_its_bias_float():
    model = gemm_net(alpha=2.0)  # QGemm would read an int32 bias with the scale alpha * s_a * s_b
    data = samples(model)

    quantize(model, data)

    gemm = next(n for n in model.graph if n.op_type == "Gemm")
    assert gemm.inputs[2].name == "c"


def test_static_matmuls_and_dynamic_attention_compose_in_one_pipeline():
    model = attention_block()
    rng = np.random.default_rng(1)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.int32)
    data = [{"x": rng.standard_normal((2, 5, 16)).astype(np.float32), "mask": mask} for _ in range(4)]
    expected = run_model(model, data[0])[0]

    ctx, plan = quantize(model, data, "qdq,quantize-dynamic{op-types=Attention,MatMul}")

    assert plan.nodes["attention"].action == "skip"
    assert "add 'quantize-dynamic{op-types=Attention}' after 'qdq'" in plan.nodes["attention"].reason
    mm_in, mm_out = (next(n for n in model.graph if n.name == name) for name in ("mm_in", "mm_out"))
    assert all(n.inputs[i].producer().op_type == "DequantizeLinear" for n in (mm_in, mm_out) for i in (0, 1))
    report = _check(model, data)
    assert report.integer_ops == {"com.microsoft::MatMulIntegerToFloat": 2, "com.microsoft::QAttention": 1,
                                  "DynamicQuantizeLinear": 1}  # QAttention's input, quantized at run time
    assert report.qdq_left == {"QuantizeLinear": 2}  # each MatMul's float input
    actual = run_model(model, data[0])[0]
    assert np.abs(actual - expected).max() < 0.05 * np.abs(expected).max()
