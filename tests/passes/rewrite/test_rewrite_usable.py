"""Rules whose pattern needs an op type that no node has are not tried; one that a rewrite creates
enables them again, wherever they could now match."""

from __future__ import annotations

from onnxsmith.ir import parse_text
from onnxsmith.passes.rewrite import Op, Opt, RuleSet, Var, apply_rules, rule
from onnxsmith.passes.rewrite.pattern import required_op_types
from onnxsmith.passes.rewrite.testing import canonical_text

HEADER = '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>'


# Abs(x) -> Neg(x) (a test rule: it need not preserve values)
@rule("abs-to-neg", Op("Abs", Var("x")))
def abs_to_neg(op, m):
    """Abs(x) -> Neg(x)"""
    return op.Neg(m["x"])


# Exp(Neg(x)) -> Sigmoid(x)
@rule("exp-neg", Op("Exp", Op("Neg", Var("x"))))
def exp_neg(op, m):
    """Exp(Neg(x)) -> Sigmoid(x)"""
    return op.Sigmoid(m["x"])


# Relu(Abs(x)) -> Neg(x)
@rule("relu-abs-to-neg", Op("Relu", Op("Abs", Var("x"))))
def relu_abs_to_neg(op, m):
    """Relu(Abs(x)) -> Neg(x)"""
    return op.Neg(m["x"])


# Mul(Abs(x), y) -> Sub(x, y), recomputing a shared Abs
@rule("mul-abs", Op("Mul", Op("Abs", Var("x")), Var("y"), _commutative=False), allow_shared_intermediates=True)
def mul_abs(op, m):
    """Mul(Abs(x), y) -> Sub(x, y)"""
    return op.Sub(m["x"], m["y"])


def _apply(rules, text, **kwargs):
    model = parse_text(HEADER + text)
    stats = apply_rules(model, RuleSet(rules), **kwargs)
    return canonical_text(model), stats


def test_a_rule_needing_a_type_that_only_a_rewrite_creates_still_fires():
    text, stats = _apply([abs_to_neg, exp_neg], """
g (float[3] x) => (float[3] y) {
  [a] t = Abs(x)
  [e] y = Exp(t)
}""")
    assert stats.applied == {"abs-to-neg": 1, "exp-neg": 1}
    assert text.endswith("{\n   [e_Sigmoid] y = Sigmoid (x)\n}")


def test_a_root_visited_before_its_type_appeared_is_matched_again():
    # At Relu, relu-abs-to-neg is refused (Abs is shared with Mul); Exp is visited while no Neg
    # exists; mul-abs then frees the Abs, relu-abs-to-neg creates the Neg, and exp-neg must fire.
    text, stats = _apply([relu_abs_to_neg, exp_neg, mul_abs], """
g (float[3] x, float[3] w) => (float[3] y, float[3] z) {
  [a] t = Abs(x)
  [r] u = Relu(t)
  [e] y = Exp(u)
  [m] z = Mul(t, w)
}""")
    assert stats.applied == {"relu-abs-to-neg": 1, "exp-neg": 1, "mul-abs": 1}
    assert text.endswith("{\n   [e_Sigmoid] y = Sigmoid (x)\n   [m_Sub] z = Sub (x, w)\n}")


def test_rules_whose_ops_are_nowhere_are_not_tried_and_explained_once():
    lines: list[str] = []
    text, stats = _apply([exp_neg, relu_abs_to_neg], """
g (float[3] x) => (float[3] y, float[3] z) {
  [e] y = Exp(x)
  [f] z = Exp(y)
}""", explain=lines.append)
    assert stats.attempts == 0 and stats.rejected == {"exp-neg": {}, "relu-abs-to-neg": {}}
    assert lines == ["rule 'exp-neg': not tried, no Neg node in the model",
                     "rule 'relu-abs-to-neg': not tried, no Relu node in the model"]


def test_a_rule_with_every_op_present_is_tried_and_explained_as_before():
    lines: list[str] = []
    _, stats = _apply([exp_neg], """
g (float[3] x) => (float[3] y) {
  [n] t = Neg(x)
  [e] y = Exp(x)
}""", explain=lines.append)
    assert stats.attempts == 1 and stats.rejected == {"exp-neg": {"op-type": 1}}
    assert lines == ["rule 'exp-neg' at Exp 'e': input 0 of Exp 'e' ('x') is a graph input, expected the output of Neg"]


def test_required_types_skip_optional_inputs_and_keep_alternatives_and_domains():
    gemm = Op("Gemm", Var("a"), Op(["Transpose", "Reshape"], Var("b")), Opt(Op("Erf", Var("c"))))
    root = Op("Gelu", gemm.output(0), _domain="com.microsoft")
    assert required_op_types(root) == (frozenset({("com.microsoft", "Gelu")}), frozenset({("", "Gemm")}),
                                       frozenset({("", "Transpose"), ("", "Reshape")}))
    assert exp_neg.can_match_among({("", "Exp"), ("", "Neg")})
    assert not exp_neg.can_match_among({("", "Exp"), ("com.microsoft", "Neg")})


def test_an_op_both_optional_and_required_is_required():
    shared = Op("Erf", Var("x"))
    root = Op("Add", Opt(shared), shared, _commutative=False)
    assert frozenset({("", "Erf")}) in required_op_types(root)
