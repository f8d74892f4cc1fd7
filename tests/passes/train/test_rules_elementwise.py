"""Elementwise gradient rules against central finite differences (float64, broadcasting operands)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradient_models import assert_gradients_match, away_from, broadcast_pair, distinct, op_model

from onnxsmith.passes.train.gradcheck import check_gradients

FEW = settings(max_examples=6, deadline=None)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@FEW
@given(data=st.data())
def test_binary_ops_with_broadcasting(op, data):
    a_shape, b_shape = broadcast_pair(data.draw)
    rng = np.random.default_rng(len(a_shape) * 7 + len(b_shape))
    b = rng.uniform(0.5, 2.0, b_shape) * rng.choice([-1, 1], b_shape)  # away from 0 for Div
    assert_gradients_match(op_model(op, {"a": rng.normal(size=a_shape), "b": b}))


@pytest.mark.parametrize("op, low, high", [("Neg", -2, 2), ("Exp", -2, 2), ("Log", 0.5, 3), ("Sqrt", 0.5, 3),
                                           ("Reciprocal", 0.5, 3), ("Reciprocal", -3, -0.5), ("Abs", -3, 3)])
@FEW
@given(shape=st.lists(st.integers(1, 3), min_size=0, max_size=3))
def test_unary_ops(op, low, high, shape):
    x = np.random.default_rng(1).uniform(low, high, shape)
    assert_gradients_match(op_model(op, {"x": x}))


@FEW
@given(data=st.data(), constant=st.booleans())
def test_pow_with_broadcast_exponent(data, constant):
    a_shape, b_shape = broadcast_pair(data.draw)
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.5, 2.0, a_shape), rng.uniform(-2, 3, b_shape)
    model = (op_model("Pow", {"a": a}, data={"b": b}, order=["a", "b"]) if constant
             else op_model("Pow", {"a": a, "b": b}))
    assert_gradients_match(model)


def test_pow_by_two_and_integer_exponent():
    a = np.random.default_rng(3).normal(size=(2, 3))
    assert_gradients_match(op_model("Pow", {"a": a}, data={"b": np.array(2.0)}, order=["a", "b"]))
    assert_gradients_match(op_model("Pow", {"a": a}, data={"b": np.array(3, np.int64)}, order=["a", "b"]))


@FEW
@given(data=st.data())
def test_sum_and_where_broadcast(data):
    a_shape, b_shape = broadcast_pair(data.draw)
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=a_shape), rng.normal(size=b_shape)
    assert_gradients_match(op_model("Sum", {"a": a, "b": b, "c": rng.normal(size=a_shape)}))
    cond = rng.random(np.broadcast_shapes(a_shape, b_shape)) > 0.5
    assert_gradients_match(op_model("Where", {"a": a, "b": b}, data={"c": cond}, order=["c", "a", "b"]))


@pytest.mark.parametrize("op", ["Max", "Min", "Mean"])
@FEW
@given(data=st.data(), three=st.booleans())
def test_variadic_max_min_mean_with_broadcasting(op, data, three):
    a_shape, b_shape = broadcast_pair(data.draw)
    rng = np.random.default_rng(7)
    # values of different inputs lie 0.025 apart or more: no tie within the finite-difference step
    dtype = "float32" if op == "Mean" else "float64"  # onnxruntime has no float64 Mean
    params = {"a": distinct(rng, a_shape, dtype), "b": distinct(rng, b_shape, dtype) + np.array(0.025, dtype)}
    if three:
        params["c"] = distinct(rng, a_shape, dtype) + np.array(0.05, dtype)
    assert_gradients_match(op_model(op, params, dtype=dtype), dtype=dtype)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_and_min_split_the_gradient_between_tied_inputs(op):
    a, b, c = np.array([1.0, 2.0, 5.0]), np.array([1.0, 3.0, 5.0]), np.array([0.0, 2.0, 5.0])
    if op == "Min":
        a, b, c = -a, -b, -c
    model = op_model(op, {"a": a, "b": b, "c": c}, seed=3)
    weights = next(n for n in model.graph if n.op_type == "Constant").attributes["value"].as_tensor().numpy()
    grads = {check.name: check.analytic for check in check_gradients(model)}
    np.testing.assert_allclose(grads["a"], weights * [1 / 2, 0, 1 / 3])
    np.testing.assert_allclose(grads["b"], weights * [1 / 2, 1, 1 / 3])
    np.testing.assert_allclose(grads["c"], weights * [0, 0, 1 / 3])


def test_clip_passes_gradient_inside_and_to_its_bounds():
    x = away_from(np.random.default_rng(5).uniform(-2, 2, (3, 4)), [-0.5, 0.7])
    assert_gradients_match(op_model("Clip", {"x": x, "lo": np.array(-0.5), "hi": np.array(0.7)}))
    assert_gradients_match(op_model("Clip", {"x": x, "hi": np.array(0.7)}, order=["x", "", "hi"]))
    assert_gradients_match(op_model("Clip", {"x": x}))


def test_cast_identity_and_inference_dropout():
    x = np.random.default_rng(6).normal(size=(2, 3))
    assert_gradients_match(op_model("Cast", {"x": x}, attrs={"to": 11}))
    assert_gradients_match(op_model("Identity", {"x": x}))
    assert_gradients_match(op_model("Dropout", {"x": x}, attrs={"seed": 0}))
    assert_gradients_match(op_model("Dropout", {"x": x}, data={"ratio": np.array(0.5), "training": np.array(False)},
                                    order=["x", "ratio", "training"]))


def test_training_dropout_is_refused():
    from onnxsmith.errors import UnsupportedError

    x = np.ones((2, 2))
    model = op_model("Dropout", {"x": x}, data={"ratio": np.array(0.5), "training": np.array(True)},
                     order=["x", "ratio", "training"])
    with pytest.raises(UnsupportedError, match="Dropout node .* inference form"):
        assert_gradients_match(model)
