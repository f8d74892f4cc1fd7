"""Data-movement gradient rules against central finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradient_models import assert_gradients_match, op_model, shapes

FEW = settings(max_examples=6, deadline=None)
I64 = np.int64


def test_reshape_flatten_squeeze_unsqueeze():
    x = np.random.default_rng(0).normal(size=(2, 1, 3))
    assert_gradients_match(op_model("Reshape", {"x": x}, data={"s": np.array([3, -1], I64)}))
    assert_gradients_match(op_model("Flatten", {"x": x}, attrs={"axis": 2}))
    assert_gradients_match(op_model("Squeeze", {"x": x}, data={"a": np.array([1], I64)}))
    assert_gradients_match(op_model("Unsqueeze", {"x": x}, data={"a": np.array([0, -1], I64)}))


@FEW
@given(shape=shapes(1, 4), data=st.data())
def test_transpose(shape, data):
    perm = data.draw(st.permutations(range(len(shape))))
    x = np.random.default_rng(1).normal(size=shape)
    assert_gradients_match(op_model("Transpose", {"x": x}, attrs={"perm": list(perm)}))


def test_expand_broadcasts_back():
    x = np.random.default_rng(2).normal(size=(3, 1))
    assert_gradients_match(op_model("Expand", {"x": x}, data={"s": np.array([2, 3, 4], I64)}))


@FEW
@given(shape=shapes(1, 3), data=st.data())
def test_concat_and_split(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(3)
    pieces = {f"x{i}": rng.normal(size=[s if j != axis % len(shape) else s + i for j, s in enumerate(shape)])
              for i in range(3)}
    assert_gradients_match(op_model("Concat", pieces, attrs={"axis": axis}))
    sizes = np.array([1, shape[axis] + 1], I64)
    x = rng.normal(size=[s if j != axis % len(shape) else s + 2 for j, s in enumerate(shape)])
    for used in [(0, 1), (1,)]:  # an output without gradient contributes zeros
        assert_gradients_match(op_model("Split", {"x": x}, data={"split": sizes}, attrs={"axis": axis},
                                        outputs=2, used_outputs=used))


@FEW
@given(data=st.data())
def test_slice(data):
    shape = data.draw(shapes(1, 3, 5))
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True))
    starts = [data.draw(st.integers(-shape[a] - 1, shape[a])) for a in axes]
    ends = [data.draw(st.integers(-shape[a] - 1, shape[a] + 1)) for a in axes]
    steps = [data.draw(st.sampled_from([1, 1, 2, -1])) for _ in axes]
    x = np.random.default_rng(4).normal(size=shape)
    arrays = {"starts": np.array(starts, I64), "ends": np.array(ends, I64), "axes": np.array(axes, I64),
              "steps": np.array(steps, I64)}
    assert_gradients_match(op_model("Slice", {"x": x}, data=arrays))


@FEW
@given(data=st.data())
def test_gather_with_repeated_and_negative_indices(data):
    shape = data.draw(shapes(1, 3))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    size = shape[axis]
    index_shape = data.draw(shapes(0, 2))
    indices = np.array(data.draw(st.lists(st.integers(-size, size - 1), min_size=int(np.prod(index_shape)),
                                          max_size=int(np.prod(index_shape)))), I64).reshape(index_shape)
    x = np.random.default_rng(5).normal(size=shape)
    assert_gradients_match(op_model("Gather", {"x": x}, data={"i": indices}, attrs={"axis": axis}))


def test_gather_needs_opset_16():
    from onnxsmith.errors import UnsupportedError

    model = op_model("Gather", {"x": np.ones((3, 2))}, data={"i": np.array([0], I64)}, opset=15)
    with pytest.raises(UnsupportedError, match="opset 16"):
        assert_gradients_match(model)
