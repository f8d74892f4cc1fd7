"""Matching: op types, domains, attributes, commutativity, optional inputs, outputs, bindings.

Each feature has a golden test (ONNX text before/after, checked with onnxruntime where the ops
run there) and a negative test whose tracer text says why the rule did not apply.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.ir import parse_text
from onnxsmith.passes.rewrite import (
    Const,
    Decline,
    Op,
    Opt,
    ShapePolicy,
    Var,
    explain,
    rule,
)
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>'


# Add(MatMul(x, w), b) -> Gemm(x, w, b)      [x 2-D]
@rule("matmul-add-to-gemm", Op("Add", Op("MatMul", Var("x"), Const("w", shape=ShapePolicy.ANY)),
                               Const("b", shape=ShapePolicy.PER_CHANNEL)))
def matmul_add_to_gemm(op, m):
    """Add(MatMul(x, w), b) -> Gemm(x, w, b)"""
    if m["x"].shape is None or m["x"].shape.rank() != 2:
        return Decline("x is not 2-D")
    return op.Gemm(m["x"], m["w"], m["b"])


def test_rule_description_comes_from_docstring():
    assert matmul_add_to_gemm.description == "Add(MatMul(x, w), b) -> Gemm(x, w, b)"
    assert matmul_add_to_gemm.name == "matmul-add-to-gemm"


GEMM_BEFORE = HEADER + """
g (float[2, 4] x) => (float[2, 3] y) <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {1,2,3}> {
  [mm] t = MatMul(x, w)
  [add0] y = Add(%s)
}"""
GEMM_AFTER = HEADER + """
g (float[2, 4] x) => (float[2, 3] y) <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {1,2,3}> {
  [add0_Gemm] y = Gemm(x, w, b)
}"""


@pytest.mark.parametrize("operands", ["t, b", "b, t"])
def test_commutative_op_matches_either_operand_order(operands):
    stats = assert_rewrites([matmul_add_to_gemm], GEMM_BEFORE % operands, GEMM_AFTER)
    assert stats.applied == {"matmul-add-to-gemm": 1}


def test_non_commutative_when_disabled():
    strict = rule("strict", Op("Add", Op("MatMul", Var("x"), Var("w")), Var("b"), _commutative=False))(
        lambda op, m: op.Gemm(m["x"], m["w"], m["b"]))
    assert_no_rewrite([strict], GEMM_BEFORE % "b, t")
    assert explain(strict, parse_text(GEMM_BEFORE % "b, t"), "add0") == [
        "input 0 of Add 'add0' ('b') is an initializer, expected the output of MatMul"]


def test_decline_reason_is_traced():
    model = parse_text(HEADER + """
g (float[2, 2, 4] x) => (float[2, 2, 3] y) <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {1,2,3}> {
  [mm] t = MatMul(x, w)
  [add0] y = Add(t, b)
}""")
    assert explain(matmul_add_to_gemm, model, "add0") == ["declined: x is not 2-D"]


def test_op_type_mismatch_is_traced():
    model = parse_text(HEADER + """
g (float[2, 3] x) => (float[2, 3] y) <float[3] b = {1,2,3}> {
  [r] t = Relu(x)
  [add0] y = Add(t, b)
}""")
    reasons = explain(matmul_add_to_gemm, model, "add0")
    assert "input 0 of Add 'add0' is produced by Relu 'r', expected MatMul" in reasons
    assert explain(matmul_add_to_gemm, model, "r") == ["Relu 'r' is not Add"]
    with pytest.raises(KeyError, match="no node named 'nope'"):
        explain(matmul_add_to_gemm, model, "nope")


# Relu(x) | LeakyRelu(x) followed by Neg -> com.example.NegAct(x)   (a set of op types, a domain)
@rule("neg-act", Op("Neg", Op({"Relu", "LeakyRelu"}, Var("x"), _name="act")))
def neg_act(op, m):
    """Neg(Relu|LeakyRelu(x)) -> com.example.NegAct(x)"""
    return op.NegAct(m["x"], _domain="com.example", kind=m.node("act").op_type)


@pytest.mark.parametrize("act", ["Relu", "LeakyRelu"])
def test_op_type_alternatives(act):
    before = HEADER + f"""
g (float[3] x) => (float[3] y) {{
  [a] t = {act}(x)
  [n] y = Neg(t)
}}"""
    after = HEADER + f"""
g (float[3] x) => (float[3] y) {{
  [n_NegAct] y = com.example.NegAct <kind = "{act}"> (x)
}}"""
    assert_rewrites([neg_act], before, after, numeric=False)


# com.example.Scale(com.example.Scale(x)) -> com.example.Scale2(x)   (patterns in a custom domain)
@rule("scale-twice", Op("Scale", Op("Scale", Var("x"), _domain="com.example"), _domain="com.example"))
def scale_twice(op, m):
    """com.example.Scale(com.example.Scale(x)) -> com.example.Scale2(x)"""
    return op.Scale2(m["x"], _domain="com.example")


def test_domain_is_part_of_the_op():
    before = HEADER + """
g (float[3] x) => (float[3] y) {
  [s1] t = com.example.Scale(x)
  [s2] y = com.example.Scale(t)
}"""
    after = HEADER + """
g (float[3] x) => (float[3] y) {
  [s2_Scale2] y = com.example.Scale2(x)
}"""
    assert_rewrites([scale_twice], before, after, numeric=False)


def test_default_domain_op_does_not_match_custom_domain_pattern():
    model = parse_text(HEADER + """
g (float[3] x) => (float[3] y) {
  [s1] t = com.example.Scale(x)
  [s2] y = Neg(t)
}""")
    assert explain(scale_twice, model, "s2") == ["Neg 's2' is not com.example::Scale"]


# Gemm(a, w, c?, transB=1) -> Gemm(a, w^T, c)   (attributes with defaults, optional input, new constant)
@rule("gemm-fold-transb", Op("Gemm", Var("a"), Const("w", shape=ShapePolicy.ANY), Opt(Var("c")),
                             _name="gemm", transA=0, transB=1, alpha=1.0, beta=lambda beta: beta == 1.0))
def gemm_fold_transb(op, m):
    """Gemm(a, w, c?, transB=1) -> Gemm(a, w^T, c?)"""
    w_t = op.initializer(np.ascontiguousarray(m.const("w").T), f"{m['w'].name}_T")
    return op.Gemm(m["a"], w_t, m["c"])


GEMM_T = HEADER + """
g (float[2, 3] a) => (float[2, 2] y) <float[2, 3] w = {1,2,3,4,5,6}, float[2] c = {1,2}> {
  [g] y = Gemm <%s> (a, w%s)
}"""


@pytest.mark.parametrize("bias", [", c", ""])
def test_optional_input_present_or_absent(bias):
    after = HEADER + f"""
g (float[2, 3] a) => (float[2, 2] y) <float[2] c = {{1,2}}, float[3, 2] w_T = {{1,4,2,5,3,6}}> {{
  [g_Gemm] y = Gemm(a, w_T{bias})
}}"""
    assert_rewrites([gemm_fold_transb], GEMM_T % ("transB = 1", bias), after)


def test_absent_optional_input_captures_none():
    model = parse_text(GEMM_T % ("transB = 1", ""))
    seen = []
    probe = rule("probe", gemm_fold_transb.pattern)(lambda op, m: seen.append(m["c"]) or Decline("probe"))
    assert explain(probe, model, "g") == ["declined: probe"]
    assert seen == [None]


def test_attribute_default_is_used_when_absent():
    model = parse_text(GEMM_T % ("alpha = 1.0", ", c"))
    assert explain(gemm_fold_transb, model, "g") == ["attribute 'transB' of Gemm 'g' is 0, expected 1"]


def test_attribute_predicate_failure_is_traced():
    model = parse_text(GEMM_T % ("transB = 1, beta = 0.5", ", c"))
    assert explain(gemm_fold_transb, model, "g") == ["attribute 'beta' of Gemm 'g' is 0.5, which fails <lambda>"]


def test_float_attributes_compare_as_float32():
    model = parse_text(HEADER + """
g (float[3] x) => (float[3] y) {
  [l] y = LeakyRelu <alpha = 0.1> (x)
}""")
    probe = rule("leaky", Op("LeakyRelu", Var("x"), alpha=0.1))(lambda op, m: op.Relu(m["x"]))
    assert explain(probe, model, "l") == []
    other = rule("leaky2", Op("LeakyRelu", Var("x"), alpha=0.2))(lambda op, m: op.Relu(m["x"]))
    assert explain(other, model, "l") == ["attribute 'alpha' of LeakyRelu 'l' is 0.10000000149011612, expected 0.2"]


def test_extra_node_inputs_do_not_match():
    model = parse_text(HEADER + """
g (float[3] x, float[3] lo, float[3] hi) => (float[3] y) {
  [c] y = Clip(x, lo, hi)
}""")
    probe = rule("clip-lo", Op("Clip", Var("x"), Var("lo")))(lambda op, m: op.Max(m["x"], m["lo"]))
    assert explain(probe, model, "c") == ["Clip 'c' has 3 inputs, the pattern expects at most 2"]


# Concat(Split(x).output(0), Split(x).output(1)) -> x      [same axis]   (multiple outputs)
split = Op("Split", Var("x"), Opt(Var()), _name="split")


@rule("split-concat", Op("Concat", split.output(0), split.output(1), _name="concat"))
def split_concat(op, m):
    """Concat(Split(x)[0], Split(x)[1]) -> x"""
    if len(m.node("split").outputs) != 2 or m.attr("split", "axis") != m.attr("concat", "axis"):
        return Decline("the split is not undone")
    return m["x"]


SPLIT = HEADER + """
g (float[4, 2] x) => (float[4, 2] y) {
  [s] a, b = Split <axis = 0> (x)
  [c] y = Concat <axis = 0> (%s)
}"""


def test_multiple_outputs_of_one_node():
    after = HEADER + """
g (float[4, 2] x) => (float[4, 2] y) {
  [c_Identity] y = Identity(x)
}"""
    assert_rewrites([split_concat], SPLIT % "a, b", after)


def test_wrong_output_index_is_traced():
    model = parse_text(SPLIT % "b, a")
    assert explain(split_concat, model, "c") == ["input 0 of Concat 'c' is output 1 of Split 's', expected output 0"]


# Add(x, x) -> Mul(x, 2)   (one name in two places binds one value)
@rule("add-self", Op("Add", Var("x"), Var("x")))
def add_self(op, m):
    """Add(x, x) -> Mul(x, 2)"""
    return op.Mul(m["x"], op.initializer(np.array(2, m["x"].dtype.numpy()), "two"))


def test_repeated_name_binds_the_same_value():
    before = HEADER + """
g (float[3] x) => (float[3] y) {
  [a] y = Add(x, x)
}"""
    after = HEADER + """
g (float[3] x) => (float[3] y) <float two = {2}> {
  [a_Mul] y = Mul(x, two)
}"""
    assert_rewrites([add_self], before, after)


def test_repeated_name_with_different_values_fails():
    model = parse_text(HEADER + """
g (float[3] x, float[3] z) => (float[3] y) {
  [a] y = Add(x, z)
}""")
    assert explain(add_self, model, "a") == ["'x' is already bound to 'x', but here it would be 'z'"]


# Sum(x, Neg(x), y) -> y   (variadic commutative op: every input order)
@rule("sum-cancel", Op("Sum", Var("x"), Op("Neg", Var("x")), Var("y")))
def sum_cancel(op, m):
    """Sum(x, Neg(x), y) -> Identity(y)"""
    return op.Identity(m["y"])


def test_variadic_commutative_op_tries_all_orders():
    before = HEADER + """
g (float[3] x, float[3] y) => (float[3] z) {
  [n] nx = Neg(x)
  [s] z = Sum(y, nx, x)
}"""
    after = HEADER + """
g (float[3] x, float[3] y) => (float[3] z) {
  [s_Identity] z = Identity(y)
}"""
    assert_rewrites([sum_cancel], before, after)


def test_var_dtype_and_predicate_constraints():
    model = parse_text(HEADER + """
g (int64[3] x) => (int64[3] y) {
  [r] y = Neg(x)
}""")
    floats = rule("f", Op("Neg", Var("x", dtype=ir.DataType.FLOAT)))(lambda op, m: op.Identity(m["x"]))
    assert explain(floats, model, "r") == ["'x' has type INT64, expected FLOAT"]

    def is_vector(value):
        return value.shape is not None and value.shape.rank() == 1

    def is_matrix(value):
        return value.shape is not None and value.shape.rank() == 2

    vec = rule("v", Op("Neg", Var("x", where=is_vector)))(lambda op, m: op.Identity(m["x"]))
    mat = rule("m", Op("Neg", Var("x", where=is_matrix)))(lambda op, m: op.Identity(m["x"]))
    assert explain(vec, model, "r") == []
    assert explain(mat, model, "r") == ["'x' fails is_matrix"]


@pytest.mark.parametrize("op_type", ["Add", "Mul", "Max", "Min", "Sum", "Mean", "And", "Or", "Xor", "Equal",
                                     "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Sub", "Div"])
def test_commutative_ops_match_swapped_operands(op_type):
    model = parse_text(HEADER + f"""
g (float[3] x) => (float[3] y) <float[3] k = {{1, 2, 3}}> {{
  [n] y = {op_type}(k, x)
}}""", check=False)
    probe = rule("probe", Op(op_type, Var("x"), Const("k", shape=ShapePolicy.ANY)))(lambda op, m: op.Identity(m["x"]))
    reasons = explain(probe, model, "n")
    if op_type in ("Sub", "Div"):
        assert reasons == [f"input 1 of {op_type} 'n' ('x') is a graph input, not a constant"]
    else:
        assert reasons == []
