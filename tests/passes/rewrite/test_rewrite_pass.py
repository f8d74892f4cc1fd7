"""RewritePass: a registered pass from a rule set, its options, statistics and explanations."""

from __future__ import annotations

import numpy as np
import pytest

from onnxsmith.errors import PassOptionError
from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager, register_pass
from onnxsmith.passes.registry import unregister
from onnxsmith.passes.rewrite import (
    Const,
    Op,
    RewriteLimitError,
    RewritePass,
    RuleSet,
    ShapePolicy,
    Var,
    rule,
)

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


# Add(MatMul(x, w), b) -> Gemm(x, w, b)
@rule("matmul-add", Op("Add", Op("MatMul", Var("x"), Const("w", shape=ShapePolicy.ANY)),
                       Const("b", shape=ShapePolicy.PER_CHANNEL)))
def matmul_add(op, m):
    """Add(MatMul(x, w), b) -> Gemm(x, w, b)"""
    return op.Gemm(m["x"], m["w"], m["b"])


# Neg(Neg(x)) -> x
@rule("neg-neg", Op("Neg", Op("Neg", Var("x"))))
def neg_neg(op, m):
    """Neg(Neg(x)) -> x"""
    return m["x"]


# Neg(x) -> Mul(x, -1)
@rule("neg-to-mul", Op("Neg", Var("x")))
def neg_to_mul(op, m):
    """Neg(x) -> Mul(x, -1)"""
    return op.Mul(m["x"], op.initializer(np.array(-1, np.float32), "minus_one"))


class FuseExample(RewritePass):
    """Example rewrite pass for the tests: MatMul+Add into Gemm, double negation away."""

    name = "test-fuse-example"
    rules = RuleSet([matmul_add, neg_neg])


@pytest.fixture
def registered():
    register_pass(FuseExample)
    yield FuseExample
    unregister(FuseExample.name)


MODEL = HEADER + """
g (float[2, 4] x, float[2, 3] v) => (float[2, 3] y, float[2, 3] z)
  <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {1,2,3}> {
  [mm] t = MatMul(x, w)
  [add] y = Add(t, b)
  [n1] u = Neg(v)
  [n2] z = Neg(u)
}"""


def test_rewrite_pass_runs_in_the_pass_manager_with_statistics(registered):
    model = parse_text(MODEL)
    report = PassManager("test-fuse-example", verify="numeric").run(model)
    record = report.records[0]
    assert record.modified
    assert (record.nodes_before, record.nodes_after) == (4, 2)
    assert record.stats["applied"] == {"matmul-add": 1, "neg-neg": 1}
    assert record.stats["rejected"] == {"neg-neg": {"op-type": 1}}
    assert record.stats["rewrites"] == 2
    assert [n.op_type for n in model.graph] == ["Gemm", "Identity"]


def test_rules_option_selects_a_subset(registered):
    model = parse_text(MODEL)
    report = PassManager("test-fuse-example{rules=neg-neg}").run(model)
    assert report.records[0].stats["applied"] == {"neg-neg": 1}
    assert [n.op_type for n in model.graph] == ["MatMul", "Add", "Identity"]


def test_unknown_rule_option_suggests_the_closest(registered):
    with pytest.raises(PassOptionError, match=r"'test-fuse-example' has no rule 'neg-nag'.*did you mean 'neg-neg'"):
        PassManager("test-fuse-example{rules=neg-nag}").run(parse_text(MODEL))


def test_explain_option_collects_reasons_in_the_context(registered):
    ctx = PassContext()
    PassManager("test-fuse-example{explain=true}").run(parse_text(MODEL), ctx)
    assert ctx.trace["test-fuse-example"] == [
        "rule 'neg-neg' at Neg 'n1': input 0 of Neg 'n1' ('v') is a graph input, expected the output of Neg"]
    quiet = PassContext()
    PassManager("test-fuse-example").run(parse_text(MODEL), quiet)
    assert quiet.trace == {}


def test_unmodified_model_reports_no_change(registered):
    model = parse_text(HEADER + "\ng (float[3] x) => (float[3] y) {\n  [r] y = Relu(x)\n}")
    record = PassManager("test-fuse-example").run(model).records[0]
    assert not record.modified
    assert record.stats["rewrites"] == 0


def test_max_rewrites_option_caps_the_driver():
    class Looping(RewritePass):
        """Rewrites Neg into Mul and back, forever."""

        name = "test-looping"
        rules = RuleSet([neg_to_mul, rule("mul-to-neg", Op("Mul", Var("x"), Const(
            "k", shape=ShapePolicy.SCALAR, value=-1)))(lambda op, m: op.Neg(m["x"]))])

    with pytest.raises(RewriteLimitError, match="within 10 rewrites; still firing: 'neg-to-mul'"):
        Looping(max_rewrites=10)(parse_text(MODEL))


def test_the_package_docstring_example_works():
    import textwrap

    import onnxsmith.passes.rewrite as package

    doc = package.__doc__
    block = doc[doc.index("::\n") + 3:doc.index("\nThe pattern language")]
    namespace: dict = {}
    exec(textwrap.dedent(block), namespace)  # the documented example, verbatim
    model = parse_text(HEADER + """
g (float[2, 4] x) => (float[2, 3] y) <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[3] b = {1,2,3}> {
  [mm] t = MatMul(x, w)
  [add] y = Add(b, t)
}""")
    result = namespace["FuseGemm"]()(model)
    assert result.stats["applied"] == {"matmul-add-to-gemm": 1}
    assert [n.op_type for n in model.graph] == ["Gemm"]
