"""Elementwise gradient rules against central finite differences (float64, broadcasting operands)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradient_models import assert_gradients_match, away_from, broadcast_pair, op_model

FEW = settings(max_examples=6, deadline=None)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@FEW
@given(data=st.data())
def test_binary_ops_with_broadcasting(op, data):
    a_shape, b_shape = broadcast_pair(data.draw)
    rng = np.random.default_rng(len(a_shape) * 7 + len(b_shape))
    b = rng.uniform(0.5, 2.0, b_shape) * rng.choice([-1, 1], b_shape)  # away from 0 for Div
    assert_gradients_match(op_model(op, {"a": rng.normal(size=a_shape), "b": b}))


@pytest.mark.parametrize("op, low, high", [("Neg", -2, 2), ("Exp", -2, 2), ("Log", 0.5, 3), ("Sqrt", 0.5, 3)])
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
