"""Constants in patterns: shape policies, Constant nodes, values, new and shared initializers."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.ir import load, parse_text, save
from onnxsmith.passes.rewrite import (
    Const,
    Decline,
    Op,
    Opt,
    ShapePolicy,
    Var,
    apply_rules,
    explain,
    rule,
)
from onnxsmith.passes.rewrite.testing import assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


@pytest.mark.parametrize(("policy", "shape", "problem"), [
    (ShapePolicy.SCALAR, (), None),
    (ShapePolicy.SCALAR, (1,), "has shape [1], expected a scalar"),
    (ShapePolicy.SCALAR_LIKE, (), None),
    (ShapePolicy.SCALAR_LIKE, (1,), None),
    (ShapePolicy.SCALAR_LIKE, (1, 1), "has shape [1, 1], expected a scalar or [1]"),
    (ShapePolicy.PER_CHANNEL, (5,), None),
    (ShapePolicy.PER_CHANNEL, (1,), None),
    (ShapePolicy.PER_CHANNEL, (5, 1), "has shape [5, 1], expected per-channel [C]"),
    (ShapePolicy.PER_CHANNEL, (), "has shape [], expected per-channel [C]"),
    (ShapePolicy.per_channel(1, rank=4), (1, 8, 1, 1), None),
    (ShapePolicy.per_channel(1, rank=4), (8, 1, 1), "has shape [8, 1, 1], expected per-channel along axis 1, rank 4"),
    (ShapePolicy.per_channel(-3), (8, 1, 1), None),
    (ShapePolicy.per_channel(-3), (1, 8, 1, 1), None),
    (ShapePolicy.per_channel(-3), (1, 8, 1, 2), "has shape [1, 8, 1, 2], expected per-channel along axis -3"),
    (ShapePolicy.per_channel(-3), (8, 1), "has shape [8, 1], expected per-channel along axis -3"),
    (ShapePolicy.ANY, (3, 4, 5), None),
])
def test_shape_policy(policy, shape, problem):
    assert policy.violation(shape) == problem


def test_shape_policy_axis_must_fit_rank():
    with pytest.raises(ValueError, match="axis 4 is out of range for rank 2"):
        ShapePolicy.per_channel(4, rank=2)


def test_const_requires_a_shape_policy():
    with pytest.raises(TypeError):
        Const("w")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="shape must be a ShapePolicy"):
        Const("w", shape="scalar")  # type: ignore[arg-type]


# Mul(Conv(x, w, b?), s) -> Conv(x, w * s, b * s)      [s per output channel, rank <= 4]
@rule("conv-mul-fold", Op("Mul", Op("Conv", Var("x"), Const("w", shape=ShapePolicy.ANY),
                                    Opt(Const("b", shape=ShapePolicy.PER_CHANNEL)), _name="conv"),
                          Const("s", shape=ShapePolicy.per_channel(-3))))
def conv_mul_fold(op, m):
    """Mul(Conv(x, w, b?), s) -> Conv(x, w * s, b * s)"""
    w, s, b = m.const("w"), m.const("s"), m.const("b")
    if s.ndim > 4 or s.size not in (1, w.shape[0]):
        return Decline(f"scale of shape {list(s.shape)} does not fit {w.shape[0]} output channels")
    s = np.broadcast_to(s.reshape(-1), (w.shape[0],))
    bias = (np.zeros(w.shape[0], w.dtype) if b is None else b) * s
    w_scaled = op.initializer((w * s.reshape(-1, 1, 1, 1)).astype(w.dtype), f"{m['w'].name}_scaled")
    b_scaled = op.initializer(bias.astype(w.dtype), "b_scaled")
    return op.Conv(m["x"], w_scaled, b_scaled, **m.attributes("conv"))


CONV = HEADER + """
g (float[1, 1, 3, 3] x%s) => (float[1, 2, 3, 3] y) <float[2, 1, 1, 1] w = {1, 2}, float[2] b = {1, 1}%s> {
  [conv] c = Conv <kernel_shape = [1, 1]> (x, w, b)
  %s
  [mul] y = Mul(c, s)
}"""
CONV_FOLDED = HEADER + """
g (float[1, 1, 3, 3] x) => (float[1, 2, 3, 3] y) <float[2, 1, 1, 1] w_scaled = {3, 8}, float[2] b_scaled = {3, 4}> {
  [mul_Conv] y = Conv <kernel_shape = [1, 1]> (x, w_scaled, b_scaled)
}"""


@pytest.mark.parametrize("shape", ["2, 1, 1", "1, 2, 1, 1"])
def test_per_channel_constant_initializer(shape):
    before = CONV % ("", f", float[{shape}] s = {{3, 4}}", "")
    assert_rewrites([conv_mul_fold], before, CONV_FOLDED)


def test_per_channel_constant_from_constant_node():
    before = CONV % ("", "", "[k] s = Constant <value = float[2, 1, 1] {3, 4}> ()")
    assert_rewrites([conv_mul_fold], before, CONV_FOLDED)


def test_shape_policy_failure_is_traced():
    model = parse_text(CONV % ("", ", float[1, 2, 1, 2] s = {3, 4, 5, 6}", ""))
    assert explain(conv_mul_fold, model, "mul") == [
        "constant 's' has shape [1, 2, 1, 2], expected per-channel along axis -3"]


def test_graph_input_is_not_a_constant():
    model = parse_text(CONV % (", float[2, 1, 1] s", "", ""))
    assert explain(conv_mul_fold, model, "mul") == ["input 1 of Mul 'mul' ('s') is a graph input, not a constant"]


def test_initializer_that_is_also_an_input_is_not_a_constant():
    model = parse_text(CONV % (", float[2, 1, 1] s", ", float[2, 1, 1] s = {3, 4}", ""))
    assert explain(conv_mul_fold, model, "mul") == [
        "input 1 of Mul 'mul' ('s') is an initializer that is also a graph input (callers may override it)"]


def test_shared_initializer_is_never_overwritten():
    before = HEADER + """
g (float[1, 1, 3, 3] x) => (float[1, 2, 3, 3] y, float[1, 2, 3, 3] z)
  <float[2, 1, 1, 1] w = {1, 2}, float[2, 1, 1] s = {3, 4}, float[2, 1, 1] t = {5, 6}> {
  [conv] c = Conv <kernel_shape = [1, 1]> (x, w)
  [mul] y = Mul(c, s)
  [conv2] c2 = Conv <kernel_shape = [1, 1]> (x, w)
  [relu] z = Relu(c2)
}"""
    after = HEADER + """
g (float[1, 1, 3, 3] x) => (float[1, 2, 3, 3] y, float[1, 2, 3, 3] z)
  <float[2, 1, 1, 1] w = {1, 2}, float[2, 1, 1] t = {5, 6},
   float[2, 1, 1, 1] w_scaled = {3, 8}, float[2] b_scaled = {0, 0}> {
  [mul_Conv] y = Conv <kernel_shape = [1, 1]> (x, w_scaled, b_scaled)
  [conv2] c2 = Conv <kernel_shape = [1, 1]> (x, w)
  [relu] z = Relu(c2)
}"""
    assert_rewrites([conv_mul_fold], before, after)


def test_each_rewrite_of_a_shared_weight_gets_its_own_initializer():
    before = HEADER + """
g (float[1, 1, 3, 3] x) => (float[1, 2, 3, 3] y, float[1, 2, 3, 3] z)
  <float[2, 1, 1, 1] w = {1, 2}, float[2, 1, 1] s = {3, 4}, float[2, 1, 1] t = {5, 6}> {
  [conv] c = Conv <kernel_shape = [1, 1]> (x, w)
  [mul] y = Mul(c, s)
  [conv2] c2 = Conv <kernel_shape = [1, 1]> (x, w)
  [mul2] z = Mul(t, c2)
}"""
    after = HEADER + """
g (float[1, 1, 3, 3] x) => (float[1, 2, 3, 3] y, float[1, 2, 3, 3] z)
  <float[2, 1, 1, 1] w_scaled = {3, 8}, float[2] b_scaled = {0, 0},
   float[2, 1, 1, 1] w_scaled_1 = {5, 12}, float[2] b_scaled_1 = {0, 0}> {
  [mul_Conv] y = Conv <kernel_shape = [1, 1]> (x, w_scaled, b_scaled)
  [mul2_Conv] z = Conv <kernel_shape = [1, 1]> (x, w_scaled_1, b_scaled_1)
}"""
    assert_rewrites([conv_mul_fold], before, after)


# Mul(x, 1) -> x
@rule("mul-one", Op("Mul", Var("x"), Const("one", shape=ShapePolicy.SCALAR_LIKE, value=1)))
def mul_one(op, m):
    """Mul(x, 1) -> x"""
    return m["x"]


MUL = HEADER + """
g (float[3] x) => (float[3] y) <%s k = {%s}> {
  [m] y = Mul(k, x)
}"""


def test_constant_value_and_scalar_like_policy():
    after = HEADER + """
g (float[3] x) => (float[3] y) {
  [m_Identity] y = Identity(x)
}"""
    assert_rewrites([mul_one], MUL % ("float[1]", "1"), after)
    assert_rewrites([mul_one], MUL % ("float", "1"), after)


def test_constant_value_mismatch_is_traced():
    assert explain(mul_one, parse_text(MUL % ("float[1]", "2")), "m") == ["constant 'k' is not 1 everywhere"]
    strict = rule("strict", Op("Mul", Var("x"), Const("one", shape=ShapePolicy.SCALAR, value=1)))(
        lambda op, m: m["x"])
    assert explain(strict, parse_text(MUL % ("float[1]", "1")), "m") == [
        "constant 'k' has shape [1], expected a scalar"]


def test_constant_dtype_and_predicate():
    model = parse_text(MUL % ("float[1]", "-2"))

    def positive(array):
        return bool(np.all(array > 0))

    ints = rule("ints", Op("Mul", Var("x"), Const("k", shape=ShapePolicy.ANY, dtype=ir.DataType.INT64)))(
        lambda op, m: m["x"])
    pos = rule("pos", Op("Mul", Var("x"), Const("k", shape=ShapePolicy.ANY, where=positive)))(
        lambda op, m: m["x"])
    assert explain(ints, model, "m") == ["constant 'k' has type FLOAT, expected INT64"]
    assert explain(pos, model, "m") == ["constant 'k' fails positive"]


# Add(MatMul(x, w), b) -> Gemm(x, w, b)   (reads no constant data)
@rule("matmul-add", Op("Add", Op("MatMul", Var("x"), Const("w", shape=ShapePolicy.ANY)),
                       Const("b", shape=ShapePolicy.PER_CHANNEL)))
def matmul_add(op, m):
    """Add(MatMul(x, w), b) -> Gemm(x, w, b)"""
    return op.Gemm(m["x"], m["w"], m["b"])


def test_matching_does_not_read_external_data(tmp_path, monkeypatch):
    model = parse_text(HEADER + """
g (float[2, 4] x) => (float[2, 3] y) <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {1,2,3}> {
  [mm] t = MatMul(x, w)
  [add] y = Add(t, b)
}""")
    save(model, tmp_path / "m.onnx", external_data=True, size_threshold_bytes=0)
    loaded = load(tmp_path / "m.onnx")
    assert isinstance(loaded.graph.initializers["w"].const_value, ir.ExternalTensor)

    def no_read(self, *args, **kwargs):
        raise AssertionError("external data was read")

    monkeypatch.setattr(ir.ExternalTensor, "numpy", no_read)
    monkeypatch.setattr(ir.ExternalTensor, "tobytes", no_read)
    stats = apply_rules(loaded, [matmul_add])
    assert stats.applied == {"matmul-add": 1}
    assert [n.op_type for n in loaded.graph] == ["Gemm"]
