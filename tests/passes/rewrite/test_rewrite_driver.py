"""The worklist driver: fixed point, cap, priority, determinism, subgraphs, functions, scale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from onnxsmith.ir import GraphBuilder, parse_text
from onnxsmith.passes.rewrite import (
    Const,
    Op,
    RewriteLimitError,
    RuleSet,
    ShapePolicy,
    Var,
    apply_rules,
    explain,
    rule,
)
from onnxsmith.passes.rewrite.testing import assert_rewrites, canonical_text
from onnxsmith.verify import verify_structure

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


# Neg(Neg(x)) -> x
@rule("neg-neg", Op("Neg", Op("Neg", Var("x"))))
def neg_neg(op, m):
    """Neg(Neg(x)) -> x"""
    return m["x"]


# Add(x, x) -> Mul(x, 2)
@rule("add-self", Op("Add", Var("x"), Var("x")))
def add_self(op, m):
    """Add(x, x) -> Mul(x, 2)"""
    return op.Mul(m["x"], op.initializer(np.array(2, np.float32), "two"))


def neg_chain(n: int) -> str:
    lines = "\n".join(f"  [n{i}] v{i + 1} = Neg(v{i})" for i in range(n))
    return HEADER + f"\ng (float[3] v0) => (float[3] v{n}) {{\n{lines}\n}}"


def test_rules_apply_to_a_fixed_point():
    after = HEADER + """
g (float[3] v0) => (float[3] v6) {
  [n5_Identity] v6 = Identity(v0)
}"""
    stats = assert_rewrites([neg_neg], neg_chain(6), after)
    assert stats.rewrites == 3
    odd = HEADER + """
g (float[3] v0) => (float[3] v5) {
  [n4] v5 = Neg(v0)
}"""
    assert assert_rewrites([neg_neg], neg_chain(5), odd).rewrites == 2


# Neg(x) -> Mul(x, -1) and Mul(x, -1) -> Neg(x): they undo each other
@rule("neg-to-mul", Op("Neg", Var("x")))
def neg_to_mul(op, m):
    """Neg(x) -> Mul(x, -1)"""
    return op.Mul(m["x"], op.initializer(np.array(-1, np.float32), "minus_one"))


@rule("mul-to-neg", Op("Mul", Var("x"), Const("k", shape=ShapePolicy.SCALAR, value=-1)))
def mul_to_neg(op, m):
    """Mul(x, -1) -> Neg(x)"""
    return op.Neg(m["x"])


def test_rules_that_undo_each_other_hit_the_cap():
    model = parse_text(neg_chain(1))
    with pytest.raises(RewriteLimitError) as error:
        apply_rules(model, [neg_to_mul, mul_to_neg], max_rewrites=40)
    message = str(error.value)
    assert message.startswith("rewrite rules reached no fixed point within 40 rewrites; still firing: ")
    assert "'neg-to-mul' (21 of the last 41 rewrites)" in message
    assert "'mul-to-neg' (20 of the last 41 rewrites)" in message
    assert "make it decline" in message


def test_a_rule_matching_its_own_output_hits_the_default_cap():
    again = rule("again", Op("Relu", Var("x")))(lambda op, m: op.Relu(m["x"]))
    model = parse_text(HEADER + "\ng (float[3] x) => (float[3] y) {\n  [r] y = Relu(x)\n}")
    with pytest.raises(RewriteLimitError, match=r"within 1000 rewrites; still firing: 'again' \(100 of the last 100"):
        apply_rules(model, [again])


def test_rules_are_tried_in_set_order():
    identity = rule("neg-neg-identity", neg_neg.pattern)(lambda op, m: op.Identity(m["x"]))
    stats = apply_rules(parse_text(neg_chain(2)), RuleSet([neg_neg, identity]))
    assert stats.applied == {"neg-neg": 1, "neg-neg-identity": 0}
    stats = apply_rules(parse_text(neg_chain(2)), RuleSet([identity, neg_neg]))
    assert stats.applied == {"neg-neg-identity": 1, "neg-neg": 0}


def test_rule_names_are_unique_in_a_set():
    with pytest.raises(ValueError, match="rule names must be unique in a rule set: neg-neg"):
        RuleSet([neg_neg, neg_neg])


IF_MODEL = HEADER + """
g (float[3] x, bool c) => (float[3] y) {
  [outer] a = Neg(x)
  [if] y = If(c) <
    then_branch = t () => (float[3] tb) {
      [t1] t0 = Neg(x)
      [t2] tb = Neg(t0)
    },
    else_branch = e () => (float[3] eb) {
      [e1] e0 = Add(a, a)
      [e2] eb = Neg(e0)
    }>
}"""


def test_subgraphs_are_rewritten():
    after = HEADER + """
g (float[3] x, bool c) => (float[3] y) {
  [outer] a = Neg(x)
  [if] y = If(c) <
    then_branch = t () => (float[3] tb) {
      [t2_Identity] tb = Identity(x)
    },
    else_branch = e () => (float[3] eb) <float two = {2}> {
      [e1_Mul] e0 = Mul(a, two)
      [e2] eb = Neg(e0)
    }>
}"""
    stats = assert_rewrites([neg_neg, add_self], IF_MODEL, after)
    assert stats.applied == {"neg-neg": 1, "add-self": 1}


def test_loop_bodies_are_rewritten():
    before = HEADER + """
g (float[3] x, int64 n) => (float[3] y) {
  [loop] y = Loop(n, , x) <body = b (int64 i, bool c, float[3] s) => (bool co, float[3] so) {
      [id] co = Identity(c)
      [b1] t = Neg(s)
      [b2] u = Neg(t)
      [b3] so = Relu(u)
    }>
}"""
    after = HEADER + """
g (float[3] x, int64 n) => (float[3] y) {
  [loop] y = Loop(n, , x) <body = b (int64 i, bool c, float[3] s) => (bool co, float[3] so) {
      [id] co = Identity(c)
      [b3] so = Relu(s)
    }>
}"""
    assert assert_rewrites([neg_neg], before, after).applied == {"neg-neg": 1}


def test_patterns_do_not_reach_into_enclosing_graphs():
    model = parse_text(IF_MODEL.replace("[e1] e0 = Add(a, a)", "[e1] e0 = Relu(a)").replace(
        "[e2] eb = Neg(e0)", "[e2] eb = Neg(a)"))
    assert explain(neg_neg, model, "e2") == ["input 0 of Neg 'e2' ('a') is computed in an enclosing graph"]


FUNCTION_MODEL = """
<ir_version: 8, opset_import: ["" : 17, "local" : 1]>
g (float[3] x) => (float[3] y) {
  [call] y = local.F(x)
}
<domain: "local", opset_import: ["" : 17]>
F (a) => (b) {
  [f1] n = Neg(a)
  [f2] m = Neg(n)
  [f3] b = Add(m, m)
}"""


def test_function_bodies_are_rewritten_with_constant_nodes():
    after = """
<ir_version: 8, opset_import: ["" : 17, "local" : 1]>
g (float[3] x) => (float[3] y) {
  [call] y = local.F(x)
}
<domain: "local", opset_import: ["" : 17]>
F (a) => (b) {
  [two] two = Constant <value = float {2}> ()
  [f3_Mul] b = Mul(a, two)
}"""
    stats = assert_rewrites([neg_neg, add_self], FUNCTION_MODEL, after)
    assert stats.applied == {"neg-neg": 1, "add-self": 1}


DETERMINISM_SCRIPT = textwrap.dedent("""
    import json

    import numpy as np
    from onnxsmith.ir import GraphBuilder
    from onnxsmith.passes.rewrite import Const, Op, ShapePolicy, Var, apply_rules, rule
    from onnxsmith.passes.rewrite.testing import canonical_text

    order = []

    @rule("neg-neg", Op("Neg", Op("Neg", Var("x"))))
    def neg_neg(op, m):
        order.append(m.root.name)
        return m["x"]

    @rule("matmul-add", Op("Add", Op("MatMul", Var("x"), Const("w", shape=ShapePolicy.ANY)),
                           Const("b", shape=ShapePolicy.ANY)))
    def matmul_add(op, m):
        order.append(m.root.name)
        return op.Gemm(m["x"], m["w"], m["b"])

    @rule("add-self", Op("Add", Var("x"), Var("x")))
    def add_self(op, m):
        order.append(m.root.name)
        return op.Mul(m["x"], op.initializer(np.array(2, np.float32), "two"))

    rng = np.random.default_rng(7)
    b = GraphBuilder()
    values = [b.input("x", "float32", [1, 4])]
    w, bias = b.const(np.ones((4, 4), np.float32)), b.const(np.ones(4, np.float32))
    for _ in range(300):
        kind = rng.integers(4)
        src = values[rng.integers(max(0, len(values) - 5), len(values))]
        if kind == 0:
            values.append(b.Neg(src))
        elif kind == 1:
            values.append(b.Add(b.MatMul(src, w), bias) if rng.integers(2) else b.Add(bias, b.MatMul(src, w)))
        elif kind == 2:
            values.append(b.Add(src, src))
        else:
            values.append(b.Relu(src))
    b.output(b.Sum(*values[-8:]), "y", dtype="float32", shape=[1, 4])
    model = b.build(infer_types=False)
    stats = apply_rules(model, [neg_neg, matmul_add, add_self])
    print(json.dumps(stats.applied))
    print(order)
    print(canonical_text(model))
""")


def test_same_input_gives_same_output_and_order_whatever_the_hash_seed():
    runs = []
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT], env=env, capture_output=True, text=True,
                              timeout=120, check=True)
        runs.append(done.stdout)
    assert runs[0] == runs[1]
    applied = json.loads(runs[0].splitlines()[0])
    assert all(count > 0 for count in applied.values())


def test_same_input_twice_in_one_process_gives_the_same_model():
    texts = []
    for _ in range(2):
        model = parse_text(IF_MODEL)
        apply_rules(model, [neg_neg, add_self])
        texts.append(canonical_text(model))
    assert texts[0] == texts[1]


# Add(MatMul(x, w), b) -> Gemm(x, w, b)
@rule("matmul-add", Op("Add", Op("MatMul", Var("x"), Const("w", shape=ShapePolicy.ANY)),
                       Const("b", shape=ShapePolicy.ANY)))
def matmul_add(op, m):
    """Add(MatMul(x, w), b) -> Gemm(x, w, b)"""
    return op.Gemm(m["x"], m["w"], m["b"])


def test_twenty_thousand_nodes_rewrite_quickly():
    b = GraphBuilder()
    x = b.input("x", "float32", [1, 8])
    w, bias = b.const(np.eye(8, dtype=np.float32)), b.const(np.zeros(8, np.float32))
    for i in range(10_000):
        x = b.Add(bias, b.MatMul(x, w)) if i % 2 else b.Add(b.MatMul(x, w), bias)
    b.output(x, "y", dtype="float32", shape=[1, 8])
    model = b.build(infer_types=False)
    start = time.perf_counter()
    stats = apply_rules(model, [matmul_add, neg_neg])
    seconds = time.perf_counter() - start
    assert stats.applied == {"matmul-add": 10_000, "neg-neg": 0}
    assert len(model.graph) == 10_000 and all(n.op_type == "Gemm" for n in model.graph)
    verify_structure(model)
    assert seconds < 5, f"rewriting 20k nodes took {seconds:.1f}s"
