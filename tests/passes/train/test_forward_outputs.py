"""Rules that read optional forward outputs get them added to the forward node (no recomputation)."""

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
