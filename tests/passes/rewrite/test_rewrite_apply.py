"""Committing replacements: rewiring, names, order, multiple outputs, checks and rule errors."""

from __future__ import annotations

import numpy as np
import pytest

from onnxsmith.ir import parse_text
from onnxsmith.passes.rewrite import (
    Decline,
    Op,
    RuleError,
    Var,
    apply_rules,
    explain,
    rule,
)
from onnxsmith.passes.rewrite.testing import (
    assert_no_rewrite,
    assert_rewrites,
    canonical_text,
)

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


# Neg(Neg(x)) -> x
@rule("neg-neg", Op("Neg", Op("Neg", Var("x"))))
def neg_neg(op, m):
    """Neg(Neg(x)) -> x"""
    return m["x"]


def test_uses_are_redirected_to_an_existing_value():
    before = HEADER + """
g (float[3] x) => (float[3] y) {
  [r] a = Relu(x)
  [n1] b = Neg(a)
  [n2] c = Neg(b)
  [s] y = Sigmoid(c)
}"""
    after = HEADER + """
g (float[3] x) => (float[3] y) {
  [r] a = Relu(x)
  [s] y = Sigmoid(a)
}"""
    assert_rewrites([neg_neg], before, after)


# Relu(Abs(x)) -> Abs(x)
@rule("relu-abs", Op("Relu", Op("Abs", Var("x"))))
def relu_abs(op, m):
    """Relu(Abs(x)) -> Abs(x)"""
    return op.Abs(m["x"])


def test_new_value_takes_the_replaced_name_and_position():
    before = HEADER + """
g (float[3] x) => (float[3] y, float[3] z) {
  [e] a = Exp(x)
  [abs] b = Abs(a)
  [relu] c = Relu(b)
  [sig] y = Sigmoid(c)
  [tanh] z = Tanh(a)
}"""
    after = HEADER + """
g (float[3] x) => (float[3] y, float[3] z) {
  [e] a = Exp(x)
  [relu_Abs] c = Abs(a)
  [sig] y = Sigmoid(c)
  [tanh] z = Tanh(a)
}"""
    assert_rewrites([relu_abs], before, after)


# Split(x, axis=0) into two -> Slice(x, 0:h), Slice(x, h:2h)
@rule("split-to-slices", Op("Split", Var("x"), axis=0))
def split_to_slices(op, m):
    """Split(x) -> Slice(x, 0:h), Slice(x, h:2h)"""
    x = m["x"]
    if len(m.outputs) != 2 or x.shape is None or not isinstance(x.shape[0], int):
        return Decline("not a split of a known length into two")
    half = x.shape[0] // 2

    def index(i, name):
        return op.initializer(np.array([i], np.int64), name)

    zero, mid, end = index(0, "zero"), index(half, "mid"), index(2 * half, "end")
    return op.Slice(x, zero, mid, zero), op.Slice(x, mid, end, zero)


def test_every_output_of_a_multi_output_root_is_replaced():
    before = HEADER + """
g (float[4, 2] x) => (float[2, 2] a, float[2, 2] b) {
  [s] a, b = Split <axis = 0> (x)
}"""
    after = HEADER + """
g (float[4, 2] x) => (float[2, 2] a, float[2, 2] b) <int64[1] zero = {0}, int64[1] mid = {2}, int64[1] end = {4}> {
  [s_Slice] a = Slice(x, zero, mid, zero)
  [s_Slice_1] b = Slice(x, mid, end, zero)
}"""
    assert_rewrites([split_to_slices], before, after)


# Split(x) into two -> Slice(x, 0:h), <nothing>      [the second half is unused]
@rule("first-half", Op("Split", Var("x"), axis=0))
def first_half(op, m):
    """Split(x) -> Slice(x, 0:h), None"""
    zero, mid = op.initializer(np.array([0], np.int64), "zero"), op.initializer(np.array([2], np.int64), "mid")
    return [op.Slice(m["x"], zero, mid, zero)]


def test_unused_outputs_may_be_left_without_replacement():
    before = HEADER + """
g (float[4, 2] x) => (float[2, 2] a) {
  [s] a, b = Split <axis = 0> (x)
}"""
    after = HEADER + """
g (float[4, 2] x) => (float[2, 2] a) <int64[1] zero = {0}, int64[1] mid = {2}> {
  [s_Slice] a = Slice(x, zero, mid, zero)
}"""
    assert_rewrites([first_half], before, after)


def test_used_outputs_need_a_replacement():
    model = parse_text(HEADER + """
g (float[4, 2] x) => (float[2, 2] a, float[2, 2] b) {
  [s] a, b = Split <axis = 0> (x)
}""")
    with pytest.raises(RuleError, match="rule 'first-half' at Split 's' returned no value for output 'b', which is"):
        apply_rules(model, [first_half])


NEG = HEADER + """
g (float[3] x) => (float[3] y) {
  [n] y = Neg(x)
}"""


@pytest.mark.parametrize(("rewrite", "message"), [
    (lambda op, m: m.outputs, "returned the matched outputs unchanged"),
    (lambda op, m: (m["x"], m["x"]), "returned 2 entries for a node with 1 output(s)"),
    (lambda op, m: "x", "returned str"),
    (lambda op, m: op.Relu(m.outputs[0]), "the replacement reads the output of the node it replaces"),
    (lambda op, m: 1 / 0, "raised ZeroDivisionError in rewrite at Neg 'n': division by zero"),
])
def test_rule_errors_name_the_rule_and_node(rewrite, message):
    model = parse_text(NEG)
    with pytest.raises(RuleError, match="rule 'bad'.*" + message.replace("(", r"\(").replace(")", r"\)")):
        apply_rules(model, [rule("bad", Op("Neg", Var("x")))(rewrite)])
    assert len(model.graph.inputs[0].uses()) == 1


def test_declining_after_building_leaves_no_trace():
    def tease(op, m):
        op.Relu(op.Abs(m["x"]))
        return Decline("changed my mind")

    stats = assert_no_rewrite([rule("tease", Op("Neg", Var("x")))(tease)], NEG)
    assert stats.rejected == {"tease": {"declined": 1}}
    model = parse_text(NEG)
    assert explain(rule("tease", Op("Neg", Var("x")))(tease), model, "n") == ["declined: changed my mind"]
    assert len(model.graph.inputs[0].uses()) == 1


def test_explaining_an_applicable_rule_changes_nothing():
    model = parse_text(NEG)
    text = canonical_text(model)
    assert explain(rule("abs", Op("Neg", Var("x")))(lambda op, m: op.Abs(m["x"])), model, "n") == []
    assert canonical_text(model) == text
    assert len(model.graph.inputs[0].uses()) == 1


def test_nodes_that_contribute_nothing_are_dropped():
    def wasteful(op, m):
        op.Relu(m["x"])
        return op.Abs(m["x"])

    after = HEADER + """
g (float[3] x) => (float[3] y) {
  [n_Abs] y = Abs(x)
}"""
    model = parse_text(NEG)
    apply_rules(model, [rule("wasteful", Op("Neg", Var("x")))(wasteful)])
    assert canonical_text(model) == canonical_text(parse_text(after))
    assert len(model.graph.inputs[0].uses()) == 1


def has_vector_input(m):
    """A check: the input is 1-D."""
    if m["x"].shape is None:
        return False
    return True if m["x"].shape.rank() == 1 else Decline(f"input has rank {m['x'].shape.rank()}")


# Neg(x) -> Abs(x)      (not an identity; exercises the check hook only)
@rule("neg-abs", Op("Neg", Var("x")), check=has_vector_input)
def neg_abs(op, m):
    """Neg(x) -> Abs(x)"""
    return op.Abs(m["x"])


def test_check_hook_gates_the_rewrite():
    vector = parse_text(NEG)
    matrix = parse_text(NEG.replace("float[3]", "float[3, 1]"))
    unknown = parse_text(NEG.replace("float[3] x", "float x"))
    unknown.graph.inputs[0].shape = None
    assert explain(neg_abs, vector, "n") == []
    assert explain(neg_abs, matrix, "n") == ["check declined: input has rank 2"]
    assert explain(neg_abs, unknown, "n") == ["check returned False"]


def test_check_errors_are_rule_errors():
    crashing = rule("crash", Op("Neg", Var("x")), check=lambda m: m["missing"])(lambda op, m: m["x"])
    with pytest.raises(RuleError, match=r"rule 'crash' raised KeyError in check at Neg 'n'.*no value 'missing'"):
        apply_rules(parse_text(NEG), [crashing])
    wordy = rule("wordy", Op("Neg", Var("x")), check=lambda m: "looks fine")(lambda op, m: m["x"])
    with pytest.raises(RuleError, match=r"rule 'wordy': check returned str at Neg 'n' \(return True, False or Decl"):
        apply_rules(parse_text(NEG), [wordy])


def test_pattern_predicate_errors_are_rule_errors():
    def rank_is_two(value):
        return value.shape.rank() == 2

    shapeless = parse_text(NEG.replace("float[3] x", "float x"))
    shapeless.graph.inputs[0].shape = None
    fragile = rule("fragile", Op("Neg", Var("x", where=rank_is_two)))(lambda op, m: m["x"])
    with pytest.raises(RuleError, match="rule 'fragile' raised AttributeError in its pattern at Neg 'n'"):
        apply_rules(shapeless, [fragile])
