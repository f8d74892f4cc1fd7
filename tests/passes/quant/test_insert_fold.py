"""insert-qdq and fold-scales: structure of the QDQ graph, integer storage, folds, and the error bound."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from hypothesis import given, settings
from hypothesis import strategies as st
from quant_models import conv_net, mlp_block, ops, quantize, samples

from onnxsmith.ir import GraphBuilder
from onnxsmith.passes import PassContext
from onnxsmith.passes.quant import FoldScales, params_for_range
from onnxsmith.passes.quant.qdq_nodes import read_params
from onnxsmith.verify import check_contract
from onnxsmith.verify._session import run_model


def _node(model: ir.Model, name: str) -> ir.Node:
    return next(n for n in model.graph if n.name == name)


def _producer_op(node: ir.Node, index: int) -> str:
    producer = node.inputs[index].producer()
    return producer.op_type if producer is not None else "<input>"


def test_insert_qdq_one_quantize_per_value_one_dequantize_per_reader():
    model = mlp_block()
    data = samples(model)

    quantize(model, data, "annotate-quant,insert-qdq")

    x = model.graph.inputs[0]
    quantizers = [u.node for u in x.uses() if u.node.op_type == "QuantizeLinear"]
    assert len(quantizers) == 1
    assert {u.node.name for u in x.uses()} == {quantizers[0].name, "residual"}  # the residual Add stays exact
    dequantizers = [u.node for u in quantizers[0].outputs[0].uses()]
    assert [d.op_type for d in dequantizers] == ["DequantizeLinear"]
    assert _producer_op(_node(model, "mm1"), 0) == "DequantizeLinear"
    assert _producer_op(_node(model, "mm1"), 1) == "DequantizeLinear"  # Q(W) -> DQ until fold-scales


def test_conv_output_feeds_only_its_quantizer_and_graph_output_keeps_its_name():
    model = conv_net()

    quantize(model, samples(model), "annotate-quant,insert-qdq")

    relu = _node(model, "relu1")
    assert [u.node.op_type for u in relu.outputs[0].uses()] == ["QuantizeLinear"]
    conv2 = _node(model, "conv2")
    assert [u.node.op_type for u in conv2.outputs[0].uses()] == ["QuantizeLinear"]
    assert model.graph.outputs[0].name == "y"


def test_fold_scales_stores_integer_weights_and_int32_biases():
    model = conv_net()

    quantize(model, samples(model))

    conv1 = _node(model, "conv1")
    w_dq, b_dq, x_dq = (conv1.inputs[i].producer() for i in (1, 2, 0))
    assert w_dq.inputs[0].const_value.dtype == ir.DataType.INT8
    assert b_dq.inputs[0].const_value.dtype == ir.DataType.INT32
    w, b, x = read_params(w_dq), read_params(b_dq), read_params(x_dq)
    np.testing.assert_allclose(b.scale, x.scale * w.scale, rtol=1e-6)
    assert b.axis == 0 and w.axis == 0 and not np.any(b.zero_point)
    assert not {"w1", "w2", "b1", "b2"} & set(model.graph.initializers)  # no float copies left
    assert "QuantizeLinear" not in [n.op_type for n in model.graph if n.inputs[0].const_value is not None]


def test_fold_scales_removes_dq_q_pairs_with_the_same_parameters():
    b = GraphBuilder(opset=17)
    x = b.input("x", "uint8", ["N", 4])
    scale, zero = b.const(np.float32(0.1), "s"), b.const(np.uint8(128), "z")
    requantized = b.QuantizeLinear(b.DequantizeLinear(x, scale, zero), scale, zero)
    b.output(b.DequantizeLinear(requantized, scale, zero), "y")
    model = b.build()

    result = FoldScales().run(model, PassContext())

    assert result.stats["redundant"] == 1
    assert ops(model) == ["DequantizeLinear"] and model.graph[0].inputs[0] is model.graph.inputs[0]


def test_fold_scales_drops_a_pair_that_feeds_no_integer_op():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 4])
    scale, zero = b.const(np.float32(0.1)), b.const(np.uint8(128))
    b.output(b.Tanh(b.DequantizeLinear(b.QuantizeLinear(x, scale, zero), scale, zero)), "y")
    model = b.build()

    FoldScales().run(model, PassContext())

    assert ops(model) == ["Tanh"]


def test_fold_scales_keeps_the_pair_feeding_a_matmul():
    model = mlp_block()
    quantize(model, samples(model))
    before = ops(model)

    assert not FoldScales().run(model, PassContext()).modified
    assert ops(model) == before


def test_fold_scales_folds_a_constant_division_after_matmul_into_the_scale():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 8])
    w = b.initializer("w", np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    b.output(b.Tanh(b.Div(b.MatMul(x, w, _name="mm"), b.const(np.float32(4.0)), _name="div")), "y")
    model = b.build()
    data = samples(model)
    expected = run_model(model, data[0])[0]

    ctx, _ = quantize(model, data)

    assert ops(model).count("Div") == 0
    assert ctx is not None and np.abs(run_model(model, data[0])[0] - expected).max() < 0.05


def _matmul_bound(x: np.ndarray, w: np.ndarray, sx: float, sw: np.ndarray) -> np.ndarray:
    """|x'w' - xw| <= |x| |w - w'| + |x - x'| |w'|, with |x - x'| <= sx/2 and |w - w'| <= sw/2 per column."""
    w_abs = np.abs(w) + sw / 2
    return np.abs(x) @ np.broadcast_to(sw / 2, w.shape) + (sx / 2) * w_abs.sum(axis=0) + 1e-5


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), k=st.integers(2, 24), n=st.integers(1, 12), scale=st.floats(0.01, 10))
def test_quantized_matmul_is_within_the_bound_implied_by_the_scales(seed, k, n, scale):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((k, n)) * scale).astype(np.float32)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [3, k])
    b.output(b.MatMul(x, b.initializer("w", w)), "y")
    model = b.build()
    data = [{"x": (rng.standard_normal((3, k)) * scale).astype(np.float32)} for _ in range(2)]
    feed = data[0]["x"]

    quantize(model, data, target="generic")

    low, high = min(d["x"].min() for d in data), max(d["x"].max() for d in data)
    sx = float(params_for_range(low, high, ir.DataType.INT8).scale)
    sw = np.maximum(np.abs(w).max(axis=0), 0) / 127
    error = np.abs(run_model(model, data[0])[0] - feed @ w)
    assert np.all(error <= _matmul_bound(feed, w, sx, sw) * (1 + 1e-3))


def test_insert_qdq_and_fold_scales_keep_the_pass_contract_on_a_conv_net():
    from onnxsmith.passes.quant.testing import calibrated_context

    for name in ("insert-qdq", "fold-scales"):
        model = conv_net()
        if name == "fold-scales":
            quantize(model, samples(model), "annotate-quant,insert-qdq")
        check_contract(name, model, context=calibrated_context(name))
