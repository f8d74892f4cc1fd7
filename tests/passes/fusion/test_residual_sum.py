"""Family residual-sum: LayerNormalization(Add(x, skip)) -> LayerNormalization(Sum(x, skip)) on cpu."""

from __future__ import annotations

import numpy as np
import pytest

from onnxsmith.codegen import get_target
from onnxsmith.codegen.ep_check import ep_check
from onnxsmith.ir import GraphBuilder
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.fusion.residual_sum import RULES
from onnxsmith.passes.rewrite import apply_rules, explain
from onnxsmith.verify import check_pass
from onnxsmith.verify._session import run_model

HIDDEN = 8


def _block(bias_operand: bool = False):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["batch", "seq", HIDDEN])
    skip = b.initializer("bias", np.linspace(-1, 1, HIDDEN, dtype=np.float32)) if bias_operand else (
        b.input("skip", "float32", ["batch", "seq", HIDDEN]))
    gamma = b.initializer("gamma", np.linspace(0.5, 1.5, HIDDEN, dtype=np.float32))
    beta = b.initializer("beta", np.linspace(-0.1, 0.1, HIDDEN, dtype=np.float32))
    b.output(b.LayerNormalization(b.Add(x, skip), gamma, beta, axis=-1, epsilon=1e-5), "y")
    return b.build()


def test_residual_add_becomes_sum_and_stays_exact():
    model = _block()
    feeds = {"x": np.random.default_rng(0).normal(size=(2, 3, HIDDEN)).astype(np.float32),
             "skip": np.random.default_rng(1).normal(size=(2, 3, HIDDEN)).astype(np.float32)}
    expected = run_model(model, feeds)[0]
    assert apply_rules(model, RULES).rewrites == 1
    assert [n.op_type for n in model.graph] == ["Sum", "LayerNormalization"]
    np.testing.assert_array_equal(run_model(model, feeds)[0], expected)


def test_onnxruntime_keeps_the_pair_instead_of_its_skip_layer_norm():
    model = _block()
    PassManager("fuse", verify="structural").run(model, PassContext(target="cpu"))
    report = ep_check(model, get_target("cpu"))
    assert "com.microsoft::SkipLayerNormalization" not in report.optimized_ops
    assert report.optimized_ops.get("LayerNormalization") == 1


def test_a_constant_operand_is_a_bias_and_is_left_alone():
    model = _block(bias_operand=True)
    assert apply_rules(model, RULES).rewrites == 0
    ln = next(n for n in model.graph if n.op_type == "LayerNormalization")
    assert any("is a constant: a bias, not a residual" in reason for reason in explain(next(iter(RULES)), model, ln.name))


@pytest.mark.parametrize("target, applies", [("cpu", True), ("generic", False), ("cuda", False)])
def test_only_the_cpu_target_lowers_it(target, applies):
    model = _block()
    PassManager("fuse", verify="structural").run(model, PassContext(target=target))
    assert ("Sum" in [n.op_type for n in model.graph]) is applies


def test_fuse_keeps_its_contract_with_residual_sums():
    check_pass("fuse", max_examples=10, context=lambda _model: PassContext(target="cpu"))
