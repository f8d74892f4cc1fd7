"""Conv and pooling gradient rules against central finite differences.

onnxruntime's CPU provider runs Conv, ConvTranspose and the pools in float32 only, so these
models are float32, checked with h = 1e-2 and loose tolerances. Conv is linear in each operand,
so the central difference is exact up to rounding; pooling inputs are pairwise 0.1 apart so that
no max-pooling window has a near tie within the step.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradient_models import assert_gradients_match, distinct, op_model
from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes.train import BuildGradients
from onnxsmith.verify._session import run_model

F32 = "float32"


@st.composite
def windows(draw, max_kernel: int = 3):
    """Spatial rank, kernel, strides, dilations, pads and a spatial input size giving >= 1 output."""
    rank = draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, max_kernel)) for _ in range(rank)]
    strides = [draw(st.integers(1, 2)) for _ in range(rank)]
    dilations = [draw(st.integers(1, 2)) for _ in range(rank)]
    pads = [draw(st.integers(0, k - 1)) for k in kernel * 2]
    size = [draw(st.integers(max(1, d * (k - 1) + 1 - p - q), 6))
            for k, d, p, q in zip(kernel, dilations, pads[:rank], pads[rank:])]
    return rank, kernel, strides, dilations, pads, size


@settings(max_examples=15, deadline=None)
@given(window=windows(), groups=st.sampled_from(["one", "two", "depthwise"]), bias=st.booleans())
def test_conv(window, groups, bias):
    rank, kernel, strides, dilations, pads, size = window
    group = {"one": 1, "two": 2, "depthwise": 4}[groups]
    channels, filters = 4, {"one": 3, "two": 4, "depthwise": 4}[groups]
    rng = np.random.default_rng(0)
    params = {"x": rng.normal(size=[2, channels, *size]).astype(F32),
              "w": rng.normal(size=[filters, channels // group, *kernel]).astype(F32)}
    if bias:
        params["b"] = rng.normal(size=[filters]).astype(F32)
    attrs = {"strides": strides, "dilations": dilations, "pads": pads, "group": group}
    assert_gradients_match(op_model("Conv", params, attrs=attrs, dtype=F32), dtype=F32)


def _direct_weight_gradient(x: np.ndarray, dy: np.ndarray, kernel, strides, dilations, pads, group: int) -> np.ndarray:
    """``dw[m, c, o] = sum_{n, p} dy[n, m, p] * x_pad[n, c, p*s + o*d]`` within each group, in float64."""
    rank = len(kernel)
    x_pad = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(pads[i], pads[i + rank]) for i in range(rank)])
    filters, c_group = dy.shape[1], x.shape[1] // group
    m_group = filters // group
    dw = np.zeros([filters, c_group, *kernel])
    for offset in np.ndindex(*kernel):
        window = tuple(slice(o * d, o * d + s * (size - 1) + 1, s)
                       for o, d, s, size in zip(offset, dilations, strides, dy.shape[2:]))
        patch = x_pad[(slice(None), slice(None), *window)].reshape(len(x), x.shape[1], -1)
        for g in range(group):
            dw[(slice(g * m_group, (g + 1) * m_group), slice(None), *offset)] = np.einsum(
                "nmp,ncp->mc", dy[:, g * m_group:(g + 1) * m_group].reshape(len(x), m_group, -1),
                patch[:, g * c_group:(g + 1) * c_group])
    return dw


@settings(max_examples=15, deadline=None)
@given(window=windows(), groups=st.sampled_from(["one", "two", "depthwise"]))
def test_conv_weight_gradient_equals_direct_correlation(window, groups):
    """The weight gradient, exactly as the definition sums it (tighter than finite differences)."""
    rank, kernel, strides, dilations, pads, size = window
    group = {"one": 1, "two": 2, "depthwise": 4}[groups]
    filters = {"one": 3, "two": 4, "depthwise": 4}[groups]
    rng = np.random.default_rng(6)
    x = rng.normal(size=[3, 4, *size]).astype(F32)
    out = [(n + p + q - d * (k - 1) - 1) // s + 1
           for n, k, s, d, p, q in zip(size, kernel, strides, dilations, pads[:rank], pads[rank:])]
    dy = rng.normal(size=[3, filters, *out]).astype(F32)
    b = GraphBuilder(opset=18)
    w = b.initializer("w", rng.normal(size=[filters, 4 // group, *kernel]).astype(F32))
    y = b.Conv(b.Constant(value=x), w, strides=strides, dilations=dilations, pads=pads, group=group)
    b.output(b.ReduceSum(b.Mul(y, b.Constant(value=dy)), keepdims=0), "loss")
    model = b.build()
    BuildGradients(gradients_only=True).run(model, None)
    _, dw = run_model(model, {})
    expected = _direct_weight_gradient(x, dy, kernel, strides, dilations, pads, group)
    np.testing.assert_allclose(dw, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad(auto_pad):
    rng = np.random.default_rng(1)
    params = {"x": rng.normal(size=[1, 2, 5, 4]).astype(F32), "w": rng.normal(size=[2, 2, 2, 3]).astype(F32)}
    attrs = {"strides": [2, 1], "auto_pad": auto_pad}
    assert_gradients_match(op_model("Conv", params, attrs=attrs, dtype=F32), dtype=F32)


def test_conv_input_gradient_with_dynamic_spatial_sizes():
    """Two stacked convolutions on an input of symbolic size: the inner one needs dx of the outer."""
    rng = np.random.default_rng(2)
    b = GraphBuilder(opset=18)
    x = b.input("x", F32, ["N", 2, "H", "W"])
    w1 = b.initializer("w1", rng.normal(size=[3, 2, 3, 3]).astype(F32))
    w2 = b.initializer("w2", rng.normal(size=[2, 3, 3, 2]).astype(F32))
    h = b.Conv(x, w1, pads=[1, 1, 1, 1])
    y = b.Conv(h, w2, strides=[2, 2], pads=[1, 0, 1, 0], dilations=[1, 2])
    b.output(b.ReduceSum(b.Mul(y, y), keepdims=0), "loss")
    feeds = {"x": rng.normal(size=[2, 2, 7, 6]).astype(F32)}
    assert_gradients_match(b.build(), feeds, dtype=F32)


@settings(max_examples=10, deadline=None)
@given(window=windows(), include_pad=st.booleans())
def test_average_pool(window, include_pad):
    rank, kernel, strides, dilations, pads, size = window
    x = np.random.default_rng(3).normal(size=[2, 3, *size]).astype(F32)
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads, "count_include_pad": int(include_pad)}
    assert_gradients_match(op_model("AveragePool", {"x": x}, attrs=attrs, opset=18, dtype=F32), dtype=F32)


def test_global_average_pool():
    x = np.random.default_rng(4).normal(size=[2, 3, 4, 5]).astype(F32)
    assert_gradients_match(op_model("GlobalAveragePool", {"x": x}, dtype=F32), dtype=F32)


def _window_in_padding_only(window) -> bool:
    """Whether some window (along some axis) reads padding only."""
    _, kernel, strides, dilations, pads, size = window
    for k, s, d, begin, end, n in zip(kernel, strides, dilations, pads, pads[len(kernel):], size):
        for start in range(-begin, n + end - d * (k - 1), s):
            if not any(0 <= start + j * d < n for j in range(k)):
                return True
    return False


@settings(max_examples=10, deadline=None)
@given(window=windows(), with_indices=st.booleans())
def test_max_pool(window, with_indices):
    rank, kernel, strides, dilations, pads, size = window
    assume(not _window_in_padding_only(window))  # its maximum is -FLT_MAX, the loss overflows
    x = distinct(np.random.default_rng(5), [2, 3, *size])
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": dilations}
    model = op_model("MaxPool", {"x": x}, attrs=attrs, outputs=2 if with_indices else 1, dtype=F32)
    assert_gradients_match(model, dtype=F32)


@pytest.mark.parametrize(("channels", "filters", "group", "strides", "columns"), [
    (1, 3, 1, [1, 1], True),    # a stem on a single channel: im2col columns from a one-hot Conv
    (4, 6, 2, [2, 1], True),    # strided: the same
    (4, 6, 2, [1, 1], False),   # unit strides: offset-by-offset Slices
    (4, 4, 4, [2, 2], False),   # depthwise: Mul and ReduceSum per offset
])
def test_conv_weight_gradient_paths(channels, filters, group, strides, columns):
    """Each formulation of ``dw`` is chosen where it is meant to be, and sums the definition exactly."""
    rng = np.random.default_rng(7)
    kernel, dilations, pads = [3, 2], [1, 2], [1, 0, 2, 1]
    x = rng.normal(size=[3, channels, 7, 8]).astype(F32)
    out = [(n + p + q - d * (k - 1) - 1) // s + 1
           for n, k, s, d, p, q in zip([7, 8], kernel, strides, dilations, pads[:2], pads[2:])]
    dy = rng.normal(size=[3, filters, *out]).astype(F32)
    b = GraphBuilder(opset=18)
    w = b.initializer("w", rng.normal(size=[filters, channels // group, *kernel]).astype(F32))
    y = b.Conv(b.Constant(value=x), w, strides=strides, dilations=dilations, pads=pads, group=group)
    b.output(b.ReduceSum(b.Mul(y, b.Constant(value=dy)), keepdims=0), "loss")
    model = b.build()
    BuildGradients(gradients_only=True).run(model, None)
    convs = [node for node in model.graph if node.op_type == "Conv"]
    assert (len(convs) == 2) == columns  # the forward Conv, plus the one-hot Conv on the columns path
    _, dw = run_model(model, {})
    expected = _direct_weight_gradient(x, dy, kernel, strides, dilations, pads, group)
    np.testing.assert_allclose(dw, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize(("attrs", "size", "unpool"), [
    ({"kernel_shape": [2, 2], "strides": [2, 2]}, [6, 8], True),
    ({"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, [5, 7], False),  # partial last windows
    ({"kernel_shape": [2, 3], "strides": [3, 3], "pads": [1, 0, 0, 2]}, [7, 6], True),  # gaps and padding
    ({"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, [5, 5], True),
    ({"kernel_shape": [3, 3], "strides": [2, 2]}, [7, 7], False),  # overlapping windows add up
    ({"kernel_shape": [2, 2], "strides": [2, 2], "dilations": [2, 1]}, [8, 6], False),
])
def test_max_pool_routes_with_max_unpool_where_windows_do_not_overlap(attrs, size, unpool):
    x = distinct(np.random.default_rng(6), [2, 3, *size])
    model = op_model("MaxPool", {"x": x}, attrs=attrs, dtype=F32)
    assert_gradients_match(op_model("MaxPool", {"x": x}, attrs=attrs, dtype=F32), dtype=F32)
    BuildGradients(gradients_only=True).run(model, None)
    ops = [node.op_type for node in model.graph]
    assert ("MaxUnpool" in ops) == unpool and ("ScatterElements" in ops) == (not unpool)


@pytest.mark.parametrize(("dilations", "pads", "slices"), [
    ([1, 1], [1, 1, 1, 1], 8),  # "same": the centre offset multiplies x itself
    ([2, 1], [2, 1, 2, 1], 8),
    ([1, 1], [1, 0, 1, 2], 8),  # offset (1, 0): its window is x too
    ([1, 1], [0, 0, 1, 1], 9),  # smaller output: no offset's window is x
])
def test_the_centre_offset_of_a_same_convolution_reads_x_without_a_slice(dilations, pads, slices):
    rng = np.random.default_rng(8)
    x = rng.normal(size=[2, 3, 6, 5]).astype(F32)
    out = [n + p + q - d * 2 for n, d, p, q in zip([6, 5], dilations, pads[:2], pads[2:])]
    dy = rng.normal(size=[2, 4, *out]).astype(F32)
    b = GraphBuilder(opset=18)
    w = b.initializer("w", rng.normal(size=[4, 3, 3, 3]).astype(F32))
    y = b.Conv(b.Constant(value=x), w, dilations=dilations, pads=pads)
    b.output(b.ReduceSum(b.Mul(y, b.Constant(value=dy)), keepdims=0), "loss")
    model = b.build()
    BuildGradients(gradients_only=True).run(model, None)
    assert sum(node.op_type == "Slice" for node in model.graph) == slices
    _, dw = run_model(model, {})
    expected = _direct_weight_gradient(x, dy, [3, 3], [1, 1], dilations, pads, 1)
    np.testing.assert_allclose(dw, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
