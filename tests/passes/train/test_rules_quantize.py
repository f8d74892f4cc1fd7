"""Fake quantization (QuantizeLinear -> DequantizeLinear): the graph's STE and LSQ gradients
against the analytic formulas in numpy. (Finite differences are meaningless across rounding steps.)"""

from __future__ import annotations

import numpy as np
import pytest

from onnxsmith.errors import UnsupportedError
from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes.train import BuildGradients
from onnxsmith.verify._session import run_model

F32 = "float32"
BOUNDS = {np.int8: (-128, 127), np.uint8: (0, 255)}


def fake_quant_model(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, weights: np.ndarray):
    """``loss = sum(weights * DQ(Q(x)))`` with the parameters ``x`` and ``scale``."""
    b = GraphBuilder(opset=18)
    xv, sv = b.initializer("x", x), b.initializer("scale", scale)
    zv = b.initializer("zero", zero) if zero is not None else None
    params = [xv, sv] + ([zv] if zv is not None else [])
    fake = b.DequantizeLinear(b.QuantizeLinear(*params, axis=axis), *params[1:], axis=axis)
    b.output(b.ReduceSum(b.Mul(fake, b.Constant(value=weights)), keepdims=0), "loss")
    return b.build()


def reference(x, scale, zero, axis, weights, qtype, grad_scale: bool):
    """The STE gradient of ``x`` and the LSQ gradient of ``scale`` (Esser et al. 2020)."""
    qmin, qmax = BOUNDS[qtype]
    per_axis = scale.ndim == 1 and scale.size > 1
    shape = [1] * x.ndim
    if per_axis:
        shape[axis] = -1
    s = scale.reshape(shape)
    z = (zero if zero is not None else np.zeros_like(scale, dtype=np.uint8)).astype(F32).reshape(shape)
    v = x / s  # float32, as the graph computes it
    low, high = qmin - z, qmax - z
    inside = (v >= low) & (v <= high)
    dx = weights * inside
    dscale = weights * np.where(inside, np.rint(v) - v, np.clip(np.rint(v), low, high))
    reduce_axes = tuple(i for i in range(x.ndim) if not (per_axis and i == axis))
    dscale = dscale.sum(reduce_axes, dtype=np.float64).reshape(scale.shape)
    if grad_scale:
        dscale /= np.sqrt(x.size / scale.size * qmax)
    return dx, dscale


CONFIGS = {
    "per-tensor int8": (np.int8, (), 0, lambda rng, n: np.array(0, np.int8)),
    "per-tensor uint8 asymmetric": (np.uint8, (), 0, lambda rng, n: np.array(100, np.uint8)),
    "per-tensor uint8 without zero point": (np.uint8, (1,), 0, lambda rng, n: None),
    "per-axis int8 axis 0": (np.int8, (3,), 0, lambda rng, n: rng.integers(-5, 5, n).astype(np.int8)),
    "per-axis uint8 axis 1": (np.uint8, (4,), 1, lambda rng, n: rng.integers(100, 150, n).astype(np.uint8)),
}


@pytest.mark.parametrize("grad_scale", [False, True])
@pytest.mark.parametrize("config", CONFIGS)
def test_ste_and_lsq_match_the_formulas(config, grad_scale):
    qtype, scale_shape, axis, zero_of = CONFIGS[config]
    rng = np.random.default_rng(len(config))
    scale = rng.uniform(0.01, 0.03, scale_shape).astype(F32)
    zero = zero_of(rng, scale.size)
    # a range of values wide enough that some are clipped at each end
    x = rng.uniform(-4.0, 4.0, (3, 4, 5)).astype(F32)
    weights = rng.uniform(0.5, 1.5, x.shape).astype(F32)
    model = fake_quant_model(x, scale, zero, axis, weights)
    BuildGradients(quant_scales="lsq", lsq_grad_scale=grad_scale).run(model, None)
    outputs = dict(zip([v.name for v in model.graph.outputs], run_model(model, {})))
    dx, dscale = reference(x, scale, zero, axis, weights, qtype, grad_scale)
    assert 0 < dx.astype(bool).sum() < x.size  # some values clipped, some inside
    np.testing.assert_allclose(outputs["x_grad"], dx, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(outputs["scale_grad"], dscale, rtol=1e-4, atol=1e-4)
    assert outputs["scale_grad"].shape == scale.shape


def test_scales_are_frozen_by_default():
    rng = np.random.default_rng(0)
    x, scale = rng.normal(size=(2, 3)).astype(F32), np.array(0.01, F32)
    weights = np.ones_like(x)
    model = fake_quant_model(x, scale, np.array(0, np.int8), 1, weights)
    result = BuildGradients().run(model, None)
    assert [v.name for v in model.graph.outputs] == ["loss", "x_grad"]
    assert result.stats["without_gradient"] == "scale"
    (grad,) = run_model(model, {})[1:]
    np.testing.assert_allclose(grad, reference(x, scale, np.array(0, np.int8), 1, weights, np.int8, False)[0])


def test_lone_dequantize_trains_its_scale_with_lsq():
    q = np.array([[-3, 0, 7], [127, -128, 5]], np.int8)
    weights = np.array([[1.0, 2.0, 3.0], [0.5, 0.25, 1.0]], F32)
    b = GraphBuilder(opset=18)
    deq = b.DequantizeLinear(b.initializer("q", q), b.initializer("scale", np.array([0.1, 0.2], F32)),
                             b.initializer("zero", np.array([1, -2], np.int8)), axis=0)
    b.output(b.ReduceSum(b.Mul(deq, b.Constant(value=weights)), keepdims=0), "loss")
    model = b.build()
    BuildGradients(quant_scales="lsq").run(model, None)
    (grad,) = run_model(model, {})[1:]
    np.testing.assert_allclose(grad, (weights * (q - np.array([[1], [-2]]))).sum(1), rtol=1e-6)


def test_lone_quantize_has_no_gradient():
    """Integer codes read by anything but DequantizeLinear carry no gradient: nothing before them trains."""
    b = GraphBuilder(opset=18)
    w = b.initializer("w", np.array([0.5, -1.0], F32))
    codes = b.QuantizeLinear(w, b.Constant(value=np.array(0.1, F32)), b.Constant(value=np.array(0, np.int8)))
    b.output(b.ReduceSum(b.Cast(codes, to=1), keepdims=0), "loss")
    with pytest.raises(UnsupportedError, match="depends on none"):
        BuildGradients().run(b.build(), None)


def test_blockwise_parameters_are_refused():
    b = GraphBuilder(opset=21)
    w = b.initializer("w", np.ones((2, 4), F32))
    scale, zero = np.full((2, 2), 0.1, F32), np.zeros((2, 2), np.int8)
    params = [b.Constant(value=scale), b.Constant(value=zero)]
    fake = b.DequantizeLinear(b.QuantizeLinear(w, *params, axis=1, block_size=2), *params, axis=1, block_size=2)
    b.output(b.ReduceSum(fake, keepdims=0), "loss")
    with pytest.raises(UnsupportedError, match="blockwise"):
        BuildGradients().run(b.build(), None)
