"""Reduce* and GlobalMaxPool gradient rules against central finite differences (float64), and how
ReduceMax/ReduceMin split the gradient between ties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradient_models import assert_gradients_match, away_from, distinct, op_model, shapes

from onnxsmith.passes.train.gradcheck import check_gradients

REDUCTIONS = ["ReduceSum", "ReduceMean", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceMax",
              "ReduceMin"]


@pytest.mark.parametrize("op", REDUCTIONS)
@pytest.mark.parametrize("opset", [13, 18])
@settings(max_examples=6, deadline=None)
@given(shape=shapes(1, 3), data=st.data())
def test_reductions(op, opset, shape, data):
    axes = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), unique_by=lambda a: a % len(shape)))
    keepdims = data.draw(st.integers(0, 1))
    rng = np.random.default_rng(0)
    # no kink within the finite-difference step: no zeros for L1, no ties for Max/Min
    kinked = op in ("ReduceMax", "ReduceMin", "ReduceL1")
    x = distinct(rng, shape, "float64") + 0.025 if kinked else rng.normal(size=shape)
    axes_as_input = opset >= 18 or op == "ReduceSum"
    if not axes:
        model = op_model(op, {"x": x}, attrs={"keepdims": keepdims}, opset=opset)
    elif axes_as_input:
        model = op_model(op, {"x": x}, data={"axes": np.array(axes, np.int64)}, attrs={"keepdims": keepdims},
                         opset=opset)
    else:
        model = op_model(op, {"x": x}, attrs={"keepdims": keepdims, "axes": axes}, opset=opset)
    assert_gradients_match(model)


@pytest.mark.parametrize("op", REDUCTIONS)
def test_noop_with_empty_axes(op):
    x = away_from(np.random.default_rng(1).normal(size=(2, 3)), [0.0])
    assert_gradients_match(op_model(op, {"x": x}, attrs={"noop_with_empty_axes": 1}))


def test_reduce_l2_of_zeros_has_a_zero_gradient():
    checks = check_gradients(op_model("ReduceL2", {"x": np.zeros((2, 3))}, data={"axes": np.array([1])}))
    np.testing.assert_array_equal(checks[0].analytic, np.zeros((2, 3)))


@pytest.mark.parametrize("op, keepdims", [("ReduceMax", 1), ("ReduceMin", 0)])
def test_ties_share_the_gradient_evenly(op, keepdims):
    x = np.array([[1.0, 3.0, 3.0, 3.0], [2.0, 2.0, 0.0, 1.0]]) * (1 if op == "ReduceMax" else -1)
    model = op_model(op, {"x": x}, data={"axes": np.array([1])}, attrs={"keepdims": keepdims})
    constants = [n.attributes["value"].as_tensor().numpy() for n in model.graph if n.op_type == "Constant"]
    weights = next(c for c in constants if c.dtype == np.float64)  # the loss's weights (the other is the axes)
    analytic = check_gradients(model)[0].analytic
    expected = np.array([[0, 1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0, 0]]) * weights.reshape(2, 1)
    np.testing.assert_allclose(analytic, expected, rtol=1e-12)


@settings(max_examples=6, deadline=None)
@given(shape=shapes(3, 4))
def test_global_max_pool(shape):
    x = distinct(np.random.default_rng(2), shape, "float32")  # onnxruntime has no float64 GlobalMaxPool
    assert_gradients_match(op_model("GlobalMaxPool", {"x": x}, dtype="float32"), dtype="float32")
