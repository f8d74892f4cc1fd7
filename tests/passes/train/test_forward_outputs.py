"""Forward rewrites before differentiating: optional outputs added for the rules that read them, GELU fused."""

from __future__ import annotations

import numpy as np

from gradient_models import assert_gradients_match, distinct
from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes.train import BuildGradients


def ops(model) -> list[str]:
    return [node.op_type for node in model.graph]


def layer_norm_model():
    rng = np.random.default_rng(0)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2, 4, 8])
    scale = b.initializer("scale", rng.uniform(0.5, 1.5, 8).astype(np.float32))
    bias = b.initializer("bias", rng.normal(size=8).astype(np.float32))
    y = b.op("LayerNormalization", x, scale, bias, axis=-1, _name="ln")
    b.output(b.ReduceSum(b.Mul(y, y), keepdims=0), "loss")
    return b.build()


def test_layer_normalization_gets_mean_and_inv_std_dev_outputs():
    model = layer_norm_model()
    BuildGradients(wrt="scale|bias").run(model, None)
    (ln,) = [node for node in model.graph if node.op_type == "LayerNormalization"]
    assert len(ln.outputs) == 3 and all(out.name for out in ln.outputs)
    assert not {"ReduceMean", "Sqrt", "Reciprocal"} & set(ops(model)), "statistics recomputed"


def test_layer_normalization_gradients_through_added_outputs():
    model = layer_norm_model()
    feeds = {"x": np.random.default_rng(1).normal(size=(2, 4, 8)).astype(np.float32)}
    assert_gradients_match(model, feeds, dtype="float32")


def test_max_pool_gets_indices_instead_of_a_second_max_pool():
    b = GraphBuilder(opset=18)
    x = b.initializer("x", distinct(np.random.default_rng(2), [1, 2, 4, 4]))
    pooled = b.op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])
    b.output(b.ReduceSum(b.Mul(pooled, pooled), keepdims=0), "loss")
    model = b.build()
    BuildGradients().run(model, None)
    assert ops(model).count("MaxPool") == 1
    (pool,) = [node for node in model.graph if node.op_type == "MaxPool"]
    assert len(pool.outputs) == 2 and pool.outputs[1].name


def erf_gelu_model(opset: int):
    """``sum(gelu(x @ w))`` with GELU as the TorchScript exporter writes it: ``x * 0.5 * (1 + Erf(x / sqrt 2))``."""
    b = GraphBuilder(opset=opset)
    x = b.input("x", "float32", [4, 3])
    w = b.initializer("w", np.random.default_rng(3).normal(size=(3, 5)).astype(np.float32))
    h = b.MatMul(x, w)
    erf = b.Erf(b.Div(h, b.Constant(value=np.array(np.sqrt(2.0), np.float32))))
    one, half = b.Constant(value=np.array(1.0, np.float32)), b.Constant(value=np.array(0.5, np.float32))
    b.output(b.ReduceSum(b.Mul(b.Mul(h, b.Add(erf, one)), half), keepdims=0), "loss")
    return b.build()


def test_erf_gelu_is_fused_before_differentiating():
    feeds = {"x": np.random.default_rng(4).normal(size=(4, 3)).astype(np.float32)}
    for opset, domain in ((17, "com.microsoft"), (20, "")):
        model = erf_gelu_model(opset)
        result = BuildGradients().run(model, None)
        assert result.stats["fused_gelu"] == 1
        (gelu,) = [node for node in model.graph if node.op_type == "Gelu"]
        assert gelu.domain == domain and "Div" not in ops(model)
        assert_gradients_match(erf_gelu_model(opset), feeds, dtype="float32")


def test_fuse_gelu_false_keeps_the_erf_chain():
    model = erf_gelu_model(17)
    result = BuildGradients(fuse_gelu=False).run(model, None)
    assert "fused_gelu" not in result.stats and "Gelu" not in ops(model)


def relu_pool_model(extra_reader: bool):
    """``sum(MaxPool(Relu(x))^2)`` with windows entirely negative; optionally Relu's output read again."""
    b = GraphBuilder(opset=18)
    values = distinct(np.random.default_rng(5), [1, 2, 4, 4]) + 0.05  # away from the Relu kink
    values[0, 0, :2, :2] = -np.abs(values[0, 0, :2, :2]) - 0.5  # a window where the Relu is inactive throughout
    x = b.initializer("x", values)
    active = b.Relu(x)
    pooled = b.op("MaxPool", active, kernel_shape=[2, 2], strides=[2, 2])
    loss = b.ReduceSum(b.Mul(pooled, pooled), keepdims=0)
    b.output(b.Add(loss, b.ReduceSum(active, keepdims=0)) if extra_reader else loss, "loss")
    return b.build()


def test_relu_before_max_pool_is_masked_at_pooled_resolution():
    for extra_reader in (False, True):
        model = relu_pool_model(extra_reader)
        BuildGradients().run(model, None)
        (pool,) = [node for node in model.graph if node.op_type == "MaxPool"]
        masks = [node for node in model.graph if node.op_type == "Greater"]
        assert [m.inputs[0] is pool.outputs[0] for m in masks] == ([False] if extra_reader else [True])
        assert_gradients_match(relu_pool_model(extra_reader), dtype="float32")


def test_erf_gelu_is_fused_in_a_model_without_intermediate_types():
    """A fresh export carries no value_info: the GELU rules, which check element types, still match."""
    model = erf_gelu_model(17)
    for node in model.graph:
        for value in node.outputs:
            if value not in model.graph.outputs:
                value.type, value.shape = None, None
    result = BuildGradients().run(model, None)
    assert result.stats.get("fused_gelu") == 1 and "Div" not in ops(model)
