"""LayerNormalization and BatchNormalization gradient rules against finite differences.

LayerNormalization runs in float64 on onnxruntime's CPU provider; BatchNormalization's gradient
graph is checked in float64 as well (its forward op has a double kernel).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradient_models import assert_gradients_match, op_model, shapes
from onnxsmith.passes.train.gradcheck import check_gradients


@settings(max_examples=8, deadline=None)
@given(shape=shapes(2, 3, 4), data=st.data(), statistics=st.booleans(), with_bias=st.booleans())
def test_layer_normalization(shape, data, statistics, with_bias):
    axis = data.draw(st.integers(-len(shape) + 1, len(shape) - 1))
    normalized = shape[axis:]
    rng = np.random.default_rng(0)
    params = {"x": rng.normal(size=shape), "scale": rng.normal(size=normalized)}
    if with_bias:
        params["bias"] = rng.normal(size=normalized)
    model = op_model("LayerNormalization", params, attrs={"axis": axis, "epsilon": 1e-3},
                     outputs=3 if statistics else 1, opset=17)
    assert_gradients_match(model)


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4), (1, 2, 3, 3)])
def test_batch_normalization_inference(shape):
    rng = np.random.default_rng(1)
    c = shape[1]
    params = {"x": rng.normal(size=shape), "scale": rng.normal(size=c), "bias": rng.normal(size=c),
              "mean": rng.normal(size=c), "var": rng.uniform(0.5, 2, size=c)}
    model = op_model("BatchNormalization", params, attrs={"epsilon": 1e-3}, opset=15)
    assert {c.name for c in check_gradients(model)} == {"x", "scale", "bias"}  # running statistics stay constant
    assert_gradients_match(model)


@pytest.mark.parametrize("statistics", [False, True])
def test_layer_normalization_of_single_elements_in_double(statistics):
    """One element per group: xhat is exactly 0, so is dscale (the float32 Mean output would not give that)."""
    rng = np.random.default_rng(0)
    params = {"x": rng.normal(size=(3, 4, 1)), "scale": rng.normal(size=(1,))}
    model = op_model("LayerNormalization", params, attrs={"axis": -1, "epsilon": 1e-3},
                     outputs=3 if statistics else 1, opset=17)
    assert_gradients_match(model)
