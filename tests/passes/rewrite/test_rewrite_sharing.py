"""Intermediate values used outside a match: refusal, tracer text, opt-in duplication, re-queueing."""

from __future__ import annotations

from onnxsmith.ir import parse_text
from onnxsmith.passes.rewrite import Const, Decline, Op, ShapePolicy, Var, explain, rule
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
PATTERN = Op("Add", Op("MatMul", Var("x"), Const("w", shape=ShapePolicy.ANY)), Const("b", shape=ShapePolicy.ANY))


# Add(MatMul(x, w), b) -> Gemm(x, w, b)
@rule("matmul-add", PATTERN)
def matmul_add(op, m):
    """Add(MatMul(x, w), b) -> Gemm(x, w, b)"""
    return op.Gemm(m["x"], m["w"], m["b"])


# Add(MatMul(x, w), b) -> Gemm(x, w, b), keeping the MatMul for its other users
@rule("matmul-add-dup", PATTERN, allow_shared_intermediates=True)
def matmul_add_dup(op, m):
    """Add(MatMul(x, w), b) -> Gemm(x, w, b)   [MatMul kept if shared]"""
    return op.Gemm(m["x"], m["w"], m["b"])


SHARED = HEADER + """
g (float[2, 4] x) => (float[2, 3] y, float[2, 3] z)
  <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {1,2,3}> {
  [mm] t = MatMul(x, w)
  [add] y = Add(t, b)
  [relu] z = Relu(t)
}"""


def test_shared_intermediate_blocks_the_match():
    stats = assert_no_rewrite([matmul_add], SHARED)
    assert stats.rejected == {"matmul-add": {"shared-intermediate": 1}}
    assert explain(matmul_add, parse_text(SHARED), "add") == [
        "value 't' of MatMul 'mm' is used outside the match (2 consumers)"]


def test_intermediate_graph_output_blocks_the_match():
    model = parse_text(HEADER + """
g (float[2, 4] x) => (float[2, 3] y, float[2, 3] t)
  <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {1,2,3}> {
  [mm] t = MatMul(x, w)
  [add] y = Add(t, b)
}""")
    assert explain(matmul_add, model, "add") == ["value 't' of MatMul 'mm' is a graph output"]


def test_shared_intermediates_are_duplicated_when_allowed():
    after = HEADER + """
g (float[2, 4] x) => (float[2, 3] y, float[2, 3] z)
  <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {1,2,3}> {
  [mm] t = MatMul(x, w)
  [add_Gemm] y = Gemm(x, w, b)
  [relu] z = Relu(t)
}"""
    assert_rewrites([matmul_add_dup], SHARED, after)


def test_a_var_reading_an_intermediate_is_a_use_outside_the_match():
    model = parse_text(HEADER + """
g (float[3] x) => (float[3] y) {
  [relu] r = Relu(x)
  [add] y = Add(r, r)
}""")
    relu_add = rule("relu-add", Op("Add", Op("Relu", Var("x")), Var("y")))(lambda op, m: Decline("never"))
    assert explain(relu_add, model, "add") == ["value 'r' of Relu 'relu' is used outside the match (1 consumer)"]


# Where(true, a, b) -> a      [a has the output's shape]
@rule("where-true", Op("Where", Const("c", shape=ShapePolicy.SCALAR_LIKE, value=True), Var("a"), Var("b")))
def where_true(op, m):
    """Where(true, a, b) -> a"""
    out = m.outputs[0]
    if m["a"].shape is None or out.shape is None or m["a"].shape != out.shape:
        return Decline("a does not have the output's shape")
    return m["a"]


def test_a_match_unblocked_by_a_later_rewrite_is_found():
    # 'add' is visited first and refused (t also feeds the Where); removing that use re-queues it.
    before = HEADER + """
g (float[2, 4] x, float[2, 3] u) => (float[2, 3] y, float[2, 3] z)
  <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {1,2,3}, bool c = {1}> {
  [mm] t = MatMul(x, w)
  [add] y = Add(t, b)
  [where] z = Where(c, u, t)
}"""
    after = HEADER + """
g (float[2, 4] x, float[2, 3] u) => (float[2, 3] y, float[2, 3] z)
  <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {1,2,3}> {
  [add_Gemm] y = Gemm(x, w, b)
  [where_Identity] z = Identity(u)
}"""
    stats = assert_rewrites([matmul_add, where_true], before, after)
    assert stats.applied == {"matmul-add": 1, "where-true": 1}
    assert stats.rejected == {"matmul-add": {"shared-intermediate": 1}, "where-true": {}}

