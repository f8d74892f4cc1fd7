"""Activation and softmax gradient rules against central finite differences.

float64 where onnxruntime's CPU provider implements the op in double; Erf, Gelu, HardSigmoid
and HardSwish only exist in float32 there and are checked with h = 1e-2 and loose tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradient_models import assert_gradients_match, away_from, op_model, shapes
from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes.train import BuildGradients
from onnxsmith.verify._session import run_model

FEW = settings(max_examples=5, deadline=None)

ACTIVATIONS = [
    ("Relu", {}, [0.0]),
    ("LeakyRelu", {"alpha": 0.1}, [0.0]),
    ("Sigmoid", {}, []),
    ("Tanh", {}, []),
    ("Softplus", {}, []),
]


@pytest.mark.parametrize("op, attrs, kinks", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@FEW
@given(shape=shapes(0, 3))
def test_activation_float64(op, attrs, kinks, shape):
    x = away_from(np.random.default_rng(0).uniform(-3, 3, shape), kinks)
    assert_gradients_match(op_model(op, {"x": x}, attrs=attrs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_gradient_is_the_masked_upstream_gradient(dtype):
    """``dx = dy`` where ``x > 0`` and exactly 0 elsewhere, at ``x = 0`` too (as torch), bit for bit."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=20), np.zeros(4), -np.abs(rng.normal(size=4))]).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    b = GraphBuilder(opset=18)
    y = b.Relu(b.initializer("x", x))
    b.output(b.ReduceSum(b.Mul(y, b.Constant(value=dy)), keepdims=0), "loss")
    model = b.build()
    BuildGradients(gradients_only=True).run(model, None)
    _, dx = run_model(model, {})
    np.testing.assert_array_equal(dx, np.where(x > 0, dy, dtype(0)))


FLOAT32 = [
    ("Erf", {}, []),
    ("Gelu", {}, []),
    ("Gelu", {"approximate": "tanh"}, []),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, [-0.4 / 0.3, 0.6 / 0.3]),
    ("HardSwish", {}, [-3.0, 3.0]),
]


@pytest.mark.parametrize("op, attrs, kinks", FLOAT32, ids=["Erf", "Gelu", "Gelu-tanh", "HardSigmoid", "HardSwish"])
@FEW
@given(shape=shapes(1, 3))
def test_activation_float32(op, attrs, kinks, shape):
    x = away_from(np.random.default_rng(1).uniform(-5, 5, shape), kinks).astype(np.float32)
    assert_gradients_match(op_model(op, {"x": x}, attrs=attrs, opset=20, dtype="float32"), dtype="float32")


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@FEW
@given(shape=shapes(1, 3, 4), data=st.data())
def test_softmax_family(op, shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(2).normal(size=shape)
    assert_gradients_match(op_model(op, {"x": x}, attrs={"axis": axis}))
