"""MatMul and Gemm gradient rules against central finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradient_models import assert_gradients_match, op_model


@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_matmul_with_batch_broadcasting_and_vectors(data):
    m, k, n = (data.draw(st.integers(1, 3)) for _ in range(3))
    batch = data.draw(st.lists(st.integers(1, 2), max_size=2))
    a_shape = [k] if data.draw(st.booleans()) else [*[d if data.draw(st.booleans()) else 1 for d in batch], m, k]
    b_rank = data.draw(st.integers(0, len(batch)))
    b_shape = [k] if data.draw(st.booleans()) else [*batch[len(batch) - b_rank:], k, n]
    rng = np.random.default_rng(0)
    assert_gradients_match(op_model("MatMul", {"a": rng.normal(size=a_shape), "b": rng.normal(size=b_shape)}))


def test_linear_layer_uses_gemm_on_flattened_rows():
    from onnxsmith.passes.train import BuildGradients

    rng = np.random.default_rng(1)
    model = op_model("MatMul", {"x": rng.normal(size=(2, 3, 4)), "w": rng.normal(size=(4, 5))})
    assert_gradients_match(model)
    BuildGradients().run(model, None)
    assert {n.op_type for n in model.graph} >= {"Gemm"}
    assert "MatMul" not in {n.op_type for n in model.graph if "grad" in n.name}


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (1,), (4,), (3, 1), (3, 4)])
def test_gemm(trans_a, trans_b, c_shape):
    rng = np.random.default_rng(trans_a * 2 + trans_b)
    a = rng.normal(size=(2, 3) if trans_a else (3, 2))
    b = rng.normal(size=(4, 2) if trans_b else (2, 4))
    params = {"a": a, "b": b} | ({"c": rng.normal(size=c_shape)} if c_shape else {})
    attrs = {"transA": trans_a, "transB": trans_b, "alpha": 0.7, "beta": 1.3}
    assert_gradients_match(op_model("Gemm", params, attrs=attrs))
