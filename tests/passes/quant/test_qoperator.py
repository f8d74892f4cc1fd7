"""lower-qoperator: QDQ groups built by hand become QOperator ops; one output step at most per node;
onnxruntime runs the integer kernels; declines and the non-cpu error."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.codegen import ep_check, get_target
from onnxsmith.errors import UnsupportedError
from onnxsmith.ir import GraphBuilder, parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.quant.scales import quantize_weight
from onnxsmith.passes.rewrite.testing import canonical_text
from onnxsmith.verify._session import run_model

T = ir.DataType
HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def _run(text_or_model, spec: str = "lower-qoperator", target: str = "cpu", ctx: PassContext | None = None):
    model = parse_text(text_or_model) if isinstance(text_or_model, str) else text_or_model
    report = PassManager(spec, verify="structural").run(model, ctx or PassContext(target=target))
    return model, report.records[0]


def test_matmul_group_becomes_qlinear_matmul():
    model, record = _run(HEADER + """
g (uint8[2,3] a) => (uint8[2,2] y)
  <float as = {0.5}, uint8 az = {128}, int8[3,2] b = {1, -2, 3, -4, 5, -6}, float[2] bs = {0.25, 0.125},
   float ys = {2.0}, uint8 yz = {100}> {
  [a_dq] da = DequantizeLinear(a, as, az)
  [b_dq] db = DequantizeLinear <axis = 1> (b, bs)
  [mm] p = MatMul(da, db)
  [q] y = QuantizeLinear(p, ys, yz)
}""")
    expected = HEADER + """
g (uint8[2,3] a) => (uint8[2,2] y)
  <float as = {0.5}, uint8 az = {128}, int8[3,2] b = {1, -2, 3, -4, 5, -6}, float[2] bs = {0.25, 0.125},
   float ys = {2.0}, uint8 yz = {100}, int8 b_zero = {0}> {
  [q_QLinearMatMul] y = QLinearMatMul(a, as, az, b, bs, b_zero, ys, yz)
}"""
    assert canonical_text(model) == canonical_text(parse_text(expected))
    assert record.stats["applied"]["qlinear-matmul"] == 1


def test_pass_through_ops_drop_their_qdq_pair():
    model, _ = _run(HEADER + """
g (int8[1,1,4,4] x) => (int8[1,2,2] y) <float s = {0.1}, int8 z = {3}, int64[3] shape = {1, 2, 2}> {
  [x_dq] d0 = DequantizeLinear(x, s, z)
  [pool] p = MaxPool <kernel_shape = [2, 2]> (d0)
  [q0] q0 = QuantizeLinear(p, s, z)
  [r_dq] d1 = DequantizeLinear(q0, s, z)
  [reshape] r = Reshape(d1, shape)
  [q1] q1 = QuantizeLinear(r, s, z)
  [t_dq] d2 = DequantizeLinear(q1, s, z)
  [transpose] t = Transpose <perm = [0, 2, 1]> (d2)
  [q] y = QuantizeLinear(t, s, z)
}""")
    assert [n.op_type for n in model.graph] == ["MaxPool", "Reshape", "Transpose"]


def _quantized_input(b: GraphBuilder, name: str, shape: list[int], scale: float, zero: int, dtype=np.uint8):
    x = b.input(name, "float32", shape)
    s, z = b.const(np.float32(scale)), b.const(np.array(zero, dtype))
    return b.DequantizeLinear(b.QuantizeLinear(x, s, z), s, z)


def _weight_dq(b: GraphBuilder, w: np.ndarray, axis: int) -> ir.Value:
    q, params = quantize_weight(w, T.INT8, axis=axis, narrow=True)
    return b.DequantizeLinear(b.const(q), b.const(params.scale), b.const(params.zero_point), axis=axis), params


def _conv_group(with_bias: bool = True) -> ir.Model:
    """Q(x) -> DQ -> Conv(DQ(w per channel), DQ(b int32)) -> Q: output the quantized tensor."""
    rng = np.random.default_rng(0)
    b = GraphBuilder(17)
    x = _quantized_input(b, "x", [1, 3, 8, 8], 0.02, 128)
    w, params = _weight_dq(b, rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, 0)
    bias = None
    if with_bias:
        bias_scale = (np.float32(0.02) * params.scale).astype(np.float32)
        bias_q = np.rint(rng.standard_normal(4) / bias_scale).astype(np.int32)
        bias = b.DequantizeLinear(b.const(bias_q), b.const(bias_scale), axis=0)
    y = b.Conv(x, w, bias, pads=[1, 1, 1, 1], _name="conv")
    b.output(b.QuantizeLinear(y, b.const(np.float32(0.05)), b.const(np.uint8(120)), _name="q"), "y")
    return b.build()


def _matmul_group() -> ir.Model:
    rng = np.random.default_rng(1)
    b = GraphBuilder(17)
    a = _quantized_input(b, "a", [2, 5, 16], 0.03, 120)
    w, _ = _weight_dq(b, rng.standard_normal((16, 8)).astype(np.float32), 1)
    y = b.MatMul(a, w, _name="mm")
    b.output(b.QuantizeLinear(y, b.const(np.float32(0.1)), b.const(np.uint8(128)), _name="q"), "y")
    return b.build()


def _binary_group(op_type: str) -> ir.Model:
    b = GraphBuilder(17)
    u = _quantized_input(b, "u", [2, 8], 0.02, 100)
    v = _quantized_input(b, "v", [2, 8], 0.03, 140)
    y = b.op(op_type, u, v, _name="binary")
    b.output(b.QuantizeLinear(y, b.const(np.float32(0.04)), b.const(np.uint8(90)), _name="q"), "y")
    return b.build()


@pytest.mark.parametrize(("build", "op"), [
    (_conv_group, "QLinearConv"), (lambda: _conv_group(with_bias=False), "QLinearConv"),
    (_matmul_group, "QLinearMatMul"), (lambda: _binary_group("Add"), "QLinearAdd"),
    (lambda: _binary_group("Mul"), "QLinearMul"),
])
def test_each_lowered_group_is_within_one_output_step(build, op):
    model = build()
    inputs = {v.name: np.random.default_rng(2).standard_normal(v.shape.numpy()).astype(np.float32)
              for v in model.graph.inputs}
    expected = run_model(model, inputs)[0]
    _run(model)
    ops = [n.op_type for n in model.graph]
    assert op in ops and not {"Conv", "MatMul", "Add", "Mul"} & set(ops)
    actual = run_model(model, inputs)[0]
    assert actual.dtype == np.uint8
    diff = np.abs(actual.astype(np.int32) - expected.astype(np.int32))
    assert diff.max() <= 1


def _chain() -> ir.Model:
    """x -> Q -> DQ -> Conv -> Q -> DQ -> MaxPool -> Q -> DQ -> Reshape -> Q -> DQ -> MatMul -> Q -> DQ -> y."""
    rng = np.random.default_rng(5)
    b = GraphBuilder(17)
    s1, z1 = b.const(np.float32(0.05)), b.const(np.uint8(128))
    x = _quantized_input(b, "x", [1, 3, 8, 8], 0.02, 128)
    w, _ = _weight_dq(b, rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, 0)
    conv = b.DequantizeLinear(b.QuantizeLinear(b.Conv(x, w, pads=[1, 1, 1, 1]), s1, z1), s1, z1)
    pool = b.DequantizeLinear(b.QuantizeLinear(b.MaxPool(conv, kernel_shape=[2, 2], strides=[2, 2]), s1, z1), s1, z1)
    flat = b.Reshape(pool, b.const(np.array([1, 64], np.int64)))
    flat = b.DequantizeLinear(b.QuantizeLinear(flat, s1, z1), s1, z1)
    w2, _ = _weight_dq(b, rng.standard_normal((64, 10)).astype(np.float32) * 0.2, 1)
    s2, z2 = b.const(np.float32(0.1)), b.const(np.uint8(128))
    b.output(b.DequantizeLinear(b.QuantizeLinear(b.MatMul(flat, w2), s2, z2), s2, z2), "y")
    return b.build()


def test_chain_runs_on_integer_kernels_with_qdq_only_at_the_edges():
    model = _chain()
    x = {"x": np.random.default_rng(6).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    expected = run_model(model, x)[0]
    _, record = _run(model)
    assert [n.op_type for n in model.graph] == ["QuantizeLinear", "QLinearConv", "MaxPool", "Reshape",
                                                "QLinearMatMul", "DequantizeLinear"]
    report = ep_check(model, get_target("cpu"), x)
    assert report.ok, report.format()
    # onnxruntime moves the convolution to NHWC (com.microsoft QLinearConv, NhwcMaxPool): still integer kernels
    kernels = {op.split("::")[-1] for op in report.integer_ops}
    assert {"QLinearConv", "QLinearMatMul"} <= kernels and "Conv" not in report.optimized_ops, report.format()
    assert report.qdq_left == {"QuantizeLinear": 1, "DequantizeLinear": 1}
    # one step of the last layer's output; an inner step moves it by at most |W2| summed, in steps of the input
    actual = run_model(model, x)[0]
    assert np.abs(actual - expected).max() <= 0.1 + 0.05 * 0.2 * 64 * 3


def test_shared_dequantize_stays_for_its_other_consumer():
    model, _ = _run(HEADER + """
g (uint8[2,3] a) => (uint8[2,3] y, float[2,3] r)
  <float s = {0.5}, uint8 z = {128}> {
  [dq] d = DequantizeLinear(a, s, z)
  [t] t = Transpose <perm = [0, 1]> (d)
  [q] y = QuantizeLinear(t, s, z)
  [relu] r = Relu(d)
}""")
    assert [n.op_type for n in model.graph] == ["DequantizeLinear", "Transpose", "Relu"]


def _declines(text: str) -> list[str]:
    model = parse_text(text)
    before = canonical_text(model)
    ctx = PassContext(target="cpu")
    _, record = _run(model, "lower-qoperator{explain=true}", ctx=ctx)
    assert not record.modified and canonical_text(model) == before
    return ctx.trace["lower-qoperator"]


BINARY = HEADER + """
g (uint8[2] a, uint8[2] b) => (uint8[2] y) <float s = {0.5}, uint8 z = {128}, float ys = {0.5}, YZ> {
  [a_dq] da = DequantizeLinear(a, s, z)
  [b_dq] db = DequantizeLinear(b, s, z)
  [binary] p = Add(da, db)
  [q] y = QuantizeLinear(p, ys, yz)
  EXTRA
}"""


@pytest.mark.parametrize(("text", "reason"), [
    (BINARY.replace("YZ", "uint8 yz = {1}").replace("EXTRA", "").replace("float ys = {0.5}", "float[2] ys = {0.5, 1}"),
     "'ys' has shape [2], expected a scalar or [1]"),
    (BINARY.replace("YZ", "int8 yz = {1}").replace("EXTRA", "").replace("uint8[2] y", "int8[2] y"),
     "needs one integer type"),
    (BINARY.replace("YZ", "uint8 yz = {1}").replace("EXTRA", "r = Relu(p)").replace("(uint8[2] y)",
                                                                                     "(uint8[2] y, float[2] r)"),
     "also used outside the QuantizeLinear"),
    (HEADER + """
g (uint8[2,3] a) => (uint8[2,3] y) <float s = {0.5}, uint8 z = {128}, float s2 = {0.25}> {
  [dq] d = DequantizeLinear(a, s, z)
  [op] t = Transpose <perm = [0, 1]> (d)
  [q] y = QuantizeLinear(t, s2, z)
}""", "another scale or zero point"),
])
def test_declines_say_why(text, reason):
    lines = _declines(text)
    assert any(reason in line for line in lines), lines


def test_conv_bias_with_another_scale_is_declined():
    model = _conv_group()
    bias_dq = next(n for n in model.graph if n.op_type == "DequantizeLinear" and n.inputs[0].dtype == T.INT32)
    scale = bias_dq.inputs[1]
    scale.const_value = ir.tensor(scale.const_value.numpy() * 2)
    ctx = PassContext(target="cpu")
    _run(model, "lower-qoperator{explain=true}", ctx=ctx)
    assert any("bias scale is not x_scale * w_scale" in line for line in ctx.trace["lower-qoperator"])


@pytest.mark.parametrize("target", ["generic", "tensorrt"])
def test_targets_without_qoperator_form_are_a_one_line_error(target):
    with pytest.raises(UnsupportedError, match=f"target '{target}' takes quantized models in QDQ form only"):
        _run(_matmul_group(), target=target)


def test_second_run_changes_nothing():
    model, _ = _run(_chain())
    _, record = _run(model)
    assert not record.modified
