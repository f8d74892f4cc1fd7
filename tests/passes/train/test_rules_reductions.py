"""ReduceSum and ReduceMean gradient rules against central finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradient_models import assert_gradients_match, op_model, shapes


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
@pytest.mark.parametrize("opset", [13, 18])
@settings(max_examples=6, deadline=None)
@given(shape=shapes(1, 3), data=st.data())
def test_reductions(op, opset, shape, data):
    axes = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), unique_by=lambda a: a % len(shape)))
    keepdims = data.draw(st.integers(0, 1))
    x = np.random.default_rng(0).normal(size=shape)
    axes_as_input = opset >= 18 or op == "ReduceSum"
    if not axes:
        model = op_model(op, {"x": x}, attrs={"keepdims": keepdims}, opset=opset)
    elif axes_as_input:
        model = op_model(op, {"x": x}, data={"axes": np.array(axes, np.int64)}, attrs={"keepdims": keepdims},
                         opset=opset)
    else:
        model = op_model(op, {"x": x}, attrs={"keepdims": keepdims, "axes": axes}, opset=opset)
    assert_gradients_match(model)


def test_noop_with_empty_axes():
    x = np.random.default_rng(1).normal(size=(2, 3))
    assert_gradients_match(op_model("ReduceMean", {"x": x}, attrs={"noop_with_empty_axes": 1}))
