"""Gradient rules of the com.microsoft ops that ``fuse`` writes, against central finite differences.

onnxruntime runs these contrib ops in float32 only: checked with h = 1e-2 and loose tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import onnx_ir as ir

from gradient_models import assert_gradients_match, op_model
from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes.train.gradcheck import check_gradients

F32 = "float32"
MS = "com.microsoft"
FEW = settings(max_examples=5, deadline=None)


def _f32(rng: np.random.Generator, shape, low: float = -3.0, high: float = 3.0) -> np.ndarray:
    return rng.uniform(low, high, shape).astype(F32)


@pytest.mark.parametrize("op", ["FastGelu", "BiasGelu"])
@FEW
@given(rows=st.integers(1, 3), width=st.integers(1, 4), bias=st.booleans())
def test_gelu_with_bias(op, rows, width, bias):
    rng = np.random.default_rng(rows * 10 + width)
    params = {"x": _f32(rng, (rows, width))}
    if bias or op == "BiasGelu":
        params["bias"] = _f32(rng, (width,), -1, 1)
    assert_gradients_match(op_model(op, params, domain=MS, dtype=F32, output_shapes=[(rows, width)]), dtype=F32)


@FEW
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_quick_gelu(shape):
    x = _f32(np.random.default_rng(len(shape)), shape)
    model = op_model("QuickGelu", {"x": x}, attrs={"alpha": 1.5}, domain=MS, dtype=F32, output_shapes=[shape])
    assert_gradients_match(model, dtype=F32)


ACTIVATIONS = [("Relu", []), ("LeakyRelu", [0.1]), ("Sigmoid", []), ("Tanh", []), ("HardSigmoid", [0.2, 0.5]),
               ("Clip", [-0.5, 0.7])]


def _conv_models(activation: str, params: list[float], with_sum: bool):
    """``sum(weights * act(Conv(x, w, b) + z?))`` as one FusedConv and as the standard ops."""
    rng = np.random.default_rng(3)
    arrays = {"x": _f32(rng, (2, 3, 5, 5), -1, 1), "w": _f32(rng, (4, 3, 3, 3), -0.5, 0.5),
              "b": _f32(rng, (4,), -0.2, 0.2)}
    if with_sum:
        arrays["z"] = _f32(rng, (2, 4, 5, 5), -1, 1)
    weights = _f32(rng, (2, 4, 5, 5), 0.5, 1.5)
    models = []
    for fused in (True, False):
        b = GraphBuilder(opset=18, opsets={MS: 1})
        values = {name: b.initializer(name, array) for name, array in arrays.items()}
        convolved = [values["x"], values["w"], values["b"]]
        if fused:
            extra = {"activation_params": params} if params else {}
            y = b.op("FusedConv", *convolved, values.get("z"), _domain=MS, activation=activation, pads=[1, 1, 1, 1],
                     **extra)
            y.shape, y.type = ir.Shape([2, 4, 5, 5]), ir.TensorType(ir.DataType.FLOAT)
        else:
            pre = b.Conv(*convolved, pads=[1, 1, 1, 1])
            pre = b.Add(pre, values["z"]) if with_sum else pre
            if activation == "Clip":
                y = b.Clip(pre, b.Constant(value=np.array(params[0], F32)), b.Constant(value=np.array(params[1], F32)))
            elif activation in ("LeakyRelu", "HardSigmoid"):
                names = {"LeakyRelu": ["alpha"], "HardSigmoid": ["alpha", "beta"]}[activation]
                y = b.op(activation, pre, **dict(zip(names, params)))
            else:
                y = b.op(activation, pre)
        b.output(b.ReduceSum(b.Mul(y, b.Constant(value=weights)), keepdims=0), "loss")
        models.append(b.build())
    return models


@pytest.mark.parametrize("activation, params", ACTIVATIONS, ids=[a for a, _ in ACTIVATIONS])
@pytest.mark.parametrize("with_sum", [False, True])
def test_fused_conv_takes_the_gradient_of_conv_then_activation(activation, params, with_sum):
    """The same gradients as the unfused Conv (+ Add) + activation, whose rules finite differences prove;
    piecewise activations have kinks a finite difference over hundreds of pre-activations would straddle."""
    fused, unfused = _conv_models(activation, params, with_sum)
    expected = {check.name: check.analytic for check in check_gradients(unfused)}
    got = {check.name: check.analytic for check in check_gradients(fused)}
    assert got.keys() == expected.keys() == ({"x", "w", "b", "z"} if with_sum else {"x", "w", "b"})
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("activation", ["Sigmoid", "Tanh"])
def test_fused_conv_with_a_smooth_activation_against_finite_differences(activation):
    fused, _ = _conv_models(activation, [], with_sum=True)
    assert_gradients_match(fused, dtype=F32)


@pytest.mark.parametrize("bias, beta, summed, skip_shape", [
    (False, False, False, (2, 3, 6)),
    (True, True, False, (2, 3, 6)),
    (True, True, True, (2, 3, 6)),
    (False, True, False, (3, 6)),  # one [S, H] skip for the whole batch (the un-fused embedding's positions)
])
def test_skip_layer_normalization(bias, beta, summed, skip_shape):
    rng = np.random.default_rng(4)
    params = {"x": _f32(rng, (2, 3, 6)), "skip": _f32(rng, skip_shape), "gamma": _f32(rng, (6,), 0.5, 1.5)}
    order = ["x", "skip", "gamma", "beta" if beta else "", "bias" if bias else ""]
    if beta:
        params["beta"] = _f32(rng, (6,), -1, 1)
    if bias:
        params["bias"] = _f32(rng, (6,), -1, 1)
    while order[-1] == "":
        order.pop()
    used = (0, 3) if summed else (0,)
    model = op_model("SkipLayerNormalization", params, order=order, attrs={"epsilon": 1e-5}, domain=MS, dtype=F32,
                     outputs=4 if summed else 1, used_outputs=used, output_shapes=[(2, 3, 6)] * 4)
    assert_gradients_match(model, dtype=F32)


def _embed_model(segments: bool, position_ids: str):
    """``sum(weights * EmbedLayerNormalization(...))`` over a [2, 5] batch of ids (repeats included)."""
    rng = np.random.default_rng(5)
    b = GraphBuilder(opset=18, opsets={MS: 1})
    ids = b.Constant(value=np.array([[1, 3, 3, 0, 6], [6, 2, 1, 1, 4]], np.int32))
    tables = {"word": b.initializer("word", _f32(rng, (7, 4), -1, 1)),
              "position": b.initializer("position", _f32(rng, (8, 4), -1, 1))}
    segment_ids = segment = positions = None
    if segments:
        segment_ids = b.Constant(value=np.array([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]], np.int32))
        segment = tables["segment"] = b.initializer("segment", _f32(rng, (2, 4), -1, 1))
    if position_ids == "batch":
        positions = b.Constant(value=np.array([[4, 3, 2, 1, 0], [0, 0, 1, 1, 7]], np.int32))
    elif position_ids == "shared":
        positions = b.Constant(value=np.array([[2, 3, 4, 5, 6]], np.int32))
    gamma, beta = b.initializer("gamma", _f32(rng, (4,), 0.5, 1.5)), b.initializer("beta", _f32(rng, (4,), -1, 1))
    y, _ = b.op("EmbedLayerNormalization", ids, segment_ids, tables["word"], tables["position"], segment, gamma, beta,
                None, positions, _domain=MS, _outputs=2, epsilon=1e-5)
    y.shape, y.type = ir.Shape([2, 5, 4]), ir.TensorType(ir.DataType.FLOAT)
    b.output(b.ReduceSum(b.Mul(y, b.Constant(value=_f32(rng, (2, 5, 4), 0.5, 1.5))), keepdims=0), "loss")
    return b.build()


@pytest.mark.parametrize("segments, position_ids", [(False, "none"), (True, "none"), (True, "batch"),
                                                    (False, "shared")])
def test_embed_layer_normalization(segments, position_ids):
    model = _embed_model(segments, position_ids)
    assert_gradients_match(model, dtype=F32)
    names = {check.name for check in check_gradients(model)}
    assert names == {"word", "position", "gamma", "beta", *(["segment"] if segments else [])}


def test_an_embedding_quantized_per_row_trains_its_normalization_and_keeps_its_tables():
    """quantize-dynamic un-fuses EmbedLayerNormalization into GatherBlockQuantized lookups and a
    SkipLayerNormalization: gamma and beta train, the integer tables and their scales stay."""
    from onnxsmith.passes import PassContext, PassManager

    rng = np.random.default_rng(6)
    b = GraphBuilder(opset=17, opsets={MS: 1})
    ids = b.Constant(value=np.array([[1, 3, 3, 0, 6], [6, 2, 1, 1, 4]], np.int32))
    tables = [b.initializer(name, _f32(rng, shape, -1, 1))
              for name, shape in (("word", (7, 16)), ("position", (8, 16)))]
    gamma, beta = b.initializer("gamma", _f32(rng, (16,), 0.5, 1.5)), b.initializer("beta", _f32(rng, (16,), -1, 1))
    y, _ = b.op("EmbedLayerNormalization", ids, None, *tables, None, gamma, beta, _domain=MS, _outputs=2, epsilon=1e-5)
    y.shape, y.type = ir.Shape([2, 5, 16]), ir.TensorType(ir.DataType.FLOAT)
    b.output(b.ReduceSum(b.Mul(y, b.Constant(value=_f32(rng, (2, 5, 16), 0.5, 1.5))), keepdims=0), "loss")
    model = b.build()
    PassManager("quantize-dynamic").run(model, PassContext(target="cpu"))
    assert {"GatherBlockQuantized", "SkipLayerNormalization"} <= {n.op_type for n in model.graph}
    assert_gradients_match(model, dtype=F32)
    assert {check.name for check in check_gradients(model)} == {"gamma", "beta"}


_MASK = np.array([[1, 1, 0, 1], [1, 0, 0, 1]], np.int32)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("scale", [None, 0.3])
def test_attention(masked, scale):
    rng = np.random.default_rng(7)
    params = {"x": _f32(rng, (2, 4, 6), -1, 1), "w": _f32(rng, (6, 18), -0.5, 0.5), "b": _f32(rng, (18,), -0.2, 0.2)}
    data = {"mask": _MASK} if masked else {}
    attrs = {"num_heads": 2, **({"scale": scale} if scale else {})}
    model = op_model("Attention", params, data=data, attrs=attrs, domain=MS, dtype=F32, output_shapes=[(2, 4, 6)])
    assert_gradients_match(model, dtype=F32)


@pytest.mark.parametrize("masked, bias", [(False, False), (True, True)])
def test_multi_head_cross_attention(masked, bias):
    rng = np.random.default_rng(8)
    params = {"query": _f32(rng, (2, 3, 6), -1, 1), "key": _f32(rng, (2, 4, 6), -1, 1),
              "value": _f32(rng, (2, 4, 6), -1, 1)}
    if bias:
        params["bias"] = _f32(rng, (18,), -0.2, 0.2)
    data = {"mask": _MASK} if masked else {}
    order = ["query", "key", "value", "bias" if bias else "", "mask" if masked else ""]
    while order[-1] == "":
        order.pop()
    model = op_model("MultiHeadAttention", params, data=data, order=order, attrs={"num_heads": 3}, domain=MS,
                     dtype=F32, output_shapes=[(2, 3, 6)])
    assert_gradients_match(model, dtype=F32)


def test_causal_attention_is_refused_by_name():
    from onnxsmith.errors import UnsupportedError

    rng = np.random.default_rng(9)
    params = {"x": _f32(rng, (1, 2, 6)), "w": _f32(rng, (6, 18)), "b": _f32(rng, (18,))}
    model = op_model("Attention", params, attrs={"num_heads": 2, "unidirectional": 1}, domain=MS, dtype=F32,
                     output_shapes=[(1, 2, 6)])
    with pytest.raises(UnsupportedError, match="Attention node .*unidirectional=1"):
        check_gradients(model)
