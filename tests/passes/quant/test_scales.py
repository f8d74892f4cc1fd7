"""Scales and zero points against onnxruntime's QuantizeLinear/DequantizeLinear and the stated bound."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnxsmith.ir import GraphBuilder
from onnxsmith.passes.quant.scales import (
    INTEGER_BOUNDS,
    block_ranges,
    dequantize,
    params_for_range,
    quantize,
    quantize_blockwise,
    quantize_weight,
)
from onnxsmith.verify._session import run_model

T = ir.DataType
floats = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(lo=floats, hi=floats, dtype=st.sampled_from([T.UINT8, T.INT8, T.INT16, T.UINT16]),
       symmetric=st.booleans())
def test_round_trip_error_is_within_half_a_step(lo, hi, dtype, symmetric):
    lo, hi = min(lo, hi), max(lo, hi)
    params = params_for_range(lo, hi, dtype, symmetric=symmetric)
    x = np.linspace(min(lo, 0.0), max(hi, 0.0), 101, dtype=np.float32)
    err = np.abs(dequantize(quantize(x, params), params) - x)
    ulps = 2 * np.finfo(np.float32).eps * np.abs(x)  # float32 rounding of x / scale and of the product
    assert np.all(err <= params.error_bound() * (1 + 1e-5) + ulps + 1e-6)
    assert dequantize(quantize(np.zeros(1, np.float32), params), params)[0] == 0.0  # zero is exact


def test_symmetric_zero_points_are_midpoints():
    assert params_for_range(-1, 2, T.INT8, symmetric=True).zero_point == 0
    assert params_for_range(-1, 2, T.UINT8, symmetric=True).zero_point == 128
    assert params_for_range(-1, 2, T.UINT8, symmetric=True).symmetric


def test_narrow_int8_stays_in_minus_127():
    q, _ = quantize_weight(np.array([-5.0, 5.0, 1.0], np.float32), T.INT8, narrow=True)
    assert q.min() == -127 and q.max() == 127


def test_zero_width_range_gets_scale_one():
    params = params_for_range(0.0, 0.0, T.UINT8)
    assert params.scale == 1.0 and params.zero_point == 0


def test_infinite_range_is_refused():
    with pytest.raises(ValueError, match="not finite"):
        params_for_range(-np.inf, 1.0, T.UINT8)


def _ort_quantize(x: np.ndarray, params) -> np.ndarray:
    b = GraphBuilder(opset=21)
    inp = b.input("x", T.FLOAT, x.shape)
    scale = b.initializer("s", params.scale)
    zero = b.initializer("z", ir.Tensor(params.zero_point, dtype=params.dtype))
    attrs = {} if params.axis is None else {"axis": params.axis}
    if params.block_size is not None:
        attrs["block_size"] = params.block_size
    b.output(b.op("QuantizeLinear", inp, scale, zero, **attrs), "q")
    return run_model(b.build(), {"x": x})[0]


@settings(max_examples=25, deadline=None)
@given(w=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=5), elements=floats),
       dtype=st.sampled_from([T.INT8, T.UINT8]), symmetric=st.booleans())
def test_per_channel_matches_onnxruntime(w, dtype, symmetric):
    q, params = quantize_weight(w, dtype, axis=1, symmetric=symmetric)
    assert params.scale.shape == (w.shape[1],)
    np.testing.assert_array_equal(q, _ort_quantize(w, params))


@pytest.mark.parametrize("dtype", [T.INT4, T.INT8])
def test_blockwise_matches_onnxruntime_and_bounds(dtype):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(10, 6)).astype(np.float32)
    q, params = quantize_blockwise(w, dtype, axis=0, block_size=4)
    assert params.scale.shape == (3, 6)
    qmin, qmax = INTEGER_BOUNDS[dtype]
    assert q.min() >= qmin and q.max() <= qmax
    if dtype == T.INT8:  # onnxruntime's CPU QuantizeLinear-21 has blockwise int8
        np.testing.assert_array_equal(q, _ort_quantize(w, params))
    back = dequantize(q, params)
    bound = np.repeat(params.error_bound(), 4, axis=0)[:10]
    assert np.all(np.abs(back - w) <= bound * (1 + 1e-5) + 1e-7)


def test_block_ranges_pad_the_last_block_with_its_own_values():
    w = np.arange(5, dtype=np.float32)[:, None]
    low, high = block_ranges(w, 0, 2)
    np.testing.assert_array_equal(low[:, 0], [0, 2, 4])
    np.testing.assert_array_equal(high[:, 0], [1, 3, 4])


def _expanded(array: np.ndarray, axis: int, block_size: int, length: int) -> np.ndarray:
    """Blockwise parameters repeated to the full length of ``axis`` (the plain formula)."""
    return np.repeat(array, block_size, axis=axis).take(np.arange(length), axis=axis)


@settings(max_examples=40, deadline=None)
@given(w=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=7), elements=floats),
       data=st.data(), block_size=st.integers(1, 5), dtype=st.sampled_from([T.INT4, T.INT8, T.UINT8]),
       symmetric=st.booleans())
def test_blockwise_matches_the_expanded_formula_on_odd_shapes(w, data, block_size, dtype, symmetric):
    axis = data.draw(st.integers(-w.ndim, w.ndim - 1))
    q, params = quantize_blockwise(w, dtype, axis=axis, block_size=block_size, symmetric=symmetric)
    length = w.shape[axis]
    scale = _expanded(params.scale, axis, block_size, length)
    zero = _expanded(params.zero_point.astype(np.float32), axis, block_size, length)
    qmin, qmax = INTEGER_BOUNDS[dtype]
    np.testing.assert_array_equal(q, np.clip(np.rint(w / scale) + zero, qmin, qmax))
    assert q.flags.c_contiguous and q.shape == w.shape
    np.testing.assert_array_equal(dequantize(q, params), (q.astype(np.float32) - zero) * scale)
    low, high = block_ranges(w, axis, block_size)
    blocks = np.array_split(w, range(block_size, length, block_size), axis=axis)
    np.testing.assert_array_equal(low, np.concatenate([b.min(axis=axis, keepdims=True) for b in blocks], axis=axis))
    np.testing.assert_array_equal(high, np.concatenate([b.max(axis=axis, keepdims=True) for b in blocks], axis=axis))


def test_quantize_leaves_its_input_alone():
    w = np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5)
    kept = w.copy()
    quantize_blockwise(w, T.INT8, axis=1, block_size=2)
    np.testing.assert_array_equal(w, kept)


@settings(max_examples=60, deadline=None)
@given(w=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9), elements=floats),
       data=st.data(), granularity=st.sampled_from(["tensor", "channel", "block"]),
       dtype=st.sampled_from([T.INT4, T.INT8, T.UINT8, T.INT16]), symmetric=st.booleans())
def test_quantizing_in_slices_gives_the_bytes_of_one_piece(w, data, granularity, dtype, symmetric):
    import onnxsmith.passes.quant.scales as scales

    axis = data.draw(st.integers(-w.ndim, w.ndim - 1))
    if granularity == "tensor":
        q, params = quantize_weight(w, dtype, symmetric=symmetric)
    elif granularity == "channel":
        q, params = quantize_weight(w, dtype, axis=axis, symmetric=symmetric)
    else:
        q, params = quantize_blockwise(w, dtype, axis=axis, block_size=data.draw(st.integers(1, 4)),
                                       symmetric=symmetric)
    assert len(list(scales._row_slices(w, params))) == 1  # small: one piece
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scales, "QUANTIZE_CHUNK_BYTES", 4)  # one index of the cut axis per slice
        sliced = quantize(w, params)
        pieces = len(list(scales._row_slices(w, params)))
    np.testing.assert_array_equal(sliced, q)
    assert sliced.dtype == q.dtype and sliced.flags.c_contiguous
    quant_axis = None if params.axis is None else params.axis % w.ndim
    cuttable = [n for i, n in enumerate(w.shape) if i != quant_axis and n > 1]
    assert pieces == (cuttable[0] if cuttable else 1)
