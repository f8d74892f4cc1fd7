"""The build-gradients pass and the reverse sweep: interface, options, errors, whole models."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from gradient_models import assert_gradients_match
from onnxsmith.errors import PassOptionError, UnsupportedError
from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes import PassManager
from onnxsmith.passes.train import BuildGradients
from onnxsmith.verify._session import run_model

F64, F32 = "float64", "float32"


def mlp(rng: np.random.Generator):
    """x[N,4] -> MatMul+Add -> Relu -> Gemm(transB) -> LogSoftmax -> mean cross-entropy with labels[N,3]."""
    b = GraphBuilder(opset=18)
    x, labels = b.input("x", F64, ["N", 4]), b.input("labels", F64, ["N", 3])
    w1, b1 = b.initializer("w1", rng.normal(size=(4, 5))), b.initializer("b1", rng.normal(size=5))
    w2, b2 = b.initializer("w2", rng.normal(size=(3, 5))), b.initializer("b2", rng.normal(size=3))
    h = b.Relu(b.Add(b.MatMul(x, w1), b1))
    logp = b.LogSoftmax(b.Gemm(h, w2, b2, transB=1), axis=-1)
    b.output(b.Neg(b.ReduceMean(b.ReduceSum(b.Mul(logp, labels), b.const(np.array([1], np.int64)), keepdims=0),
                                keepdims=0)), "loss")
    return b.build()


def mlp_reference(params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Hand-written backward pass of :func:`mlp` in numpy."""
    pre = x @ params["w1"] + params["b1"]
    h = np.maximum(pre, 0)
    logits = h @ params["w2"].T + params["b2"]
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    dlogits = (p * labels.sum(-1, keepdims=True) - labels) / len(x)
    dh = dlogits @ params["w2"] * (pre > 0)
    return {"w2": dlogits.T @ h, "b2": dlogits.sum(0), "w1": x.T @ dh, "b1": dh.sum(0)}


def test_mlp_gradients_match_numpy_reference():
    rng = np.random.default_rng(0)
    model = mlp(rng)
    params = {name: v.const_value.numpy() for name, v in model.graph.initializers.items() if name[0] in "wb"}
    x, labels = rng.normal(size=(6, 4)), np.eye(3)[rng.integers(0, 3, 6)]
    report = PassManager("build-gradients").run(model)
    assert report.records[0].stats["parameters"] == 4
    outputs = dict(zip([v.name for v in model.graph.outputs], run_model(model, {"x": x, "labels": labels})))
    for name, expected in mlp_reference(params, x, labels).items():
        np.testing.assert_allclose(outputs[f"{name}_grad"], expected, rtol=1e-10, atol=1e-12)


def test_training_graph_interface():
    model = mlp(np.random.default_rng(1))
    BuildGradients(freeze="^b").run(model, None)
    graph = model.graph
    assert [v.name for v in graph.inputs] == ["x", "labels", "w1", "w2"]
    assert [v.name for v in graph.outputs] == ["loss", "w1_grad", "w2_grad"]
    assert graph.outputs[1].shape == graph.inputs[2].shape and graph.outputs[1].dtype == graph.inputs[2].dtype
    assert "w1" in graph.initializers  # the initial value stays as the input's default
    assert not any(n.op_type == "Sum" for n in graph)  # nothing is used twice here


def test_wrt_selects_and_prunes():
    model = mlp(np.random.default_rng(2))
    first_layer = [n.name for n in model.graph if n.op_type in ("MatMul", "Add", "Relu")]
    BuildGradients(wrt="2$").run(model, None)
    assert [v.name for v in model.graph.outputs] == ["loss", "w2_grad", "b2_grad"]
    # nothing before the second layer is differentiated
    assert not any(n.name.startswith(f"{name}_grad") for n in model.graph for name in first_layer)
    assert all(n.op_type != "Where" for n in model.graph)  # Relu's mask is not needed


def _layer_norm_with_scalar_constants(rng: np.random.Generator):
    """A decomposed layer normalization as jax2tf writes it: 0-d initializers for 1/N and epsilon."""
    b = GraphBuilder(opset=18)
    x = b.input("x", F64, ["N", 4])
    inv_n, eps = b.initializer("inv_n", np.array(0.25)), b.initializer("eps", np.array(1e-5))
    gamma = b.initializer("gamma", rng.normal(size=4))
    axes = b.Constant(value=np.array([1], np.int64))
    centred = b.Sub(x, b.Mul(b.ReduceSum(x, axes, keepdims=1), inv_n))
    variance = b.Mul(b.ReduceSum(b.Mul(centred, centred), axes, keepdims=1), inv_n)
    y = b.Mul(b.Div(centred, b.Sqrt(b.Add(variance, eps))), gamma)
    b.output(b.ReduceSum(b.Mul(y, b.Constant(value=rng.normal(size=(1, 4)))), keepdims=0), "loss")
    return b.build()


@pytest.mark.parametrize("options, trained", [
    ({}, ["gamma"]),
    ({"wrt": "inv_n|gamma"}, ["inv_n", "gamma"]),
    ({"scalars": True}, ["inv_n", "eps", "gamma"]),
])
def test_scalar_constants_are_parameters_only_when_asked_for(options, trained):
    model = _layer_norm_with_scalar_constants(np.random.default_rng(3))
    BuildGradients(**options).run(model, None)
    assert [v.name for v in model.graph.outputs] == ["loss", *(f"{name}_grad" for name in trained)]


def cnn(rng: np.random.Generator):
    """x[N,1,6,6] -> Conv 3x3 pad 1 (+bias) -> Relu -> MaxPool 3x3/3 -> Flatten -> MatMul -> mean(y^2)."""
    b = GraphBuilder(opset=18)
    x = b.input("x", F32, ["N", 1, 6, 6])
    w = b.initializer("conv_w", (rng.normal(size=(3, 1, 3, 3)) * 0.5).astype(F32))
    c = b.initializer("conv_b", rng.normal(size=3).astype(F32))
    fc = b.initializer("fc_w", rng.normal(size=(12, 2)).astype(F32))
    h = b.MaxPool(b.Relu(b.Conv(x, w, c, pads=[1, 1, 1, 1])), kernel_shape=[3, 3], strides=[3, 3])
    y = b.MatMul(b.Flatten(h), fc)
    b.output(b.ReduceMean(b.Mul(y, y), keepdims=0), "loss")
    return b.build()


def cnn_reference(params: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    """Hand-written backward pass of :func:`cnn` in float64 numpy."""
    w, c, fc = (params[k].astype(np.float64) for k in ("conv_w", "conv_b", "fc_w"))
    n = len(x)
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (1, 1), (1, 1)])
    cols = np.stack([xp[:, :, i:i + 6, j:j + 6] for i in range(3) for j in range(3)], axis=2)  # [n,1,9,6,6]
    conv = np.einsum("nckhw,mck->nmhw", cols, w.reshape(3, 1, 9)) + c[:, None, None]
    act = np.maximum(conv, 0)
    windows = act.reshape(n, 3, 2, 3, 2, 3).transpose(0, 1, 2, 4, 3, 5).reshape(n, 3, 2, 2, 9)
    pooled = windows.max(-1)
    flat = pooled.reshape(n, 12)
    y = flat @ fc
    dy = 2 * y / y.size
    dwindows = np.zeros_like(windows)
    np.put_along_axis(dwindows, windows.argmax(-1)[..., None], (dy @ fc.T).reshape(n, 3, 2, 2, 1), axis=-1)
    dact = dwindows.reshape(n, 3, 2, 2, 3, 3).transpose(0, 1, 2, 4, 3, 5).reshape(n, 3, 6, 6)
    dconv = dact * (conv > 0)
    return {"fc_w": flat.T @ dy, "conv_b": dconv.sum((0, 2, 3)),
            "conv_w": np.einsum("nmhw,nckhw->mck", dconv, cols).reshape(w.shape)}


def test_cnn_gradients_match_numpy_reference():
    rng = np.random.default_rng(3)
    model = cnn(rng)
    params = {name: v.const_value.numpy() for name, v in model.graph.initializers.items()}
    x = rng.normal(size=(4, 1, 6, 6)).astype(F32)
    BuildGradients().run(model, None)
    ops = {n.op_type for n in model.graph}
    assert "MaxUnpool" in ops and "ConvTranspose" not in ops  # disjoint 2x2 windows; no gradient for the data input
    outputs = dict(zip([v.name for v in model.graph.outputs], run_model(model, {"x": x})))
    for name, expected in cnn_reference(params, x).items():
        np.testing.assert_allclose(outputs[f"{name}_grad"], expected, rtol=1e-4, atol=1e-5)


def test_values_used_several_times_accumulate():
    b = GraphBuilder(opset=18)
    w = b.initializer("w", np.array([0.5, -1.5, 2.0]))
    b.output(b.ReduceSum(b.Add(b.Mul(w, w), b.Mul(b.Exp(w), w)), keepdims=0), "loss")
    model = b.build()
    assert_gradients_match(model)
    BuildGradients().run(model, None)
    assert any(n.op_type == "Sum" for n in model.graph)


def test_seed_ones_differentiates_the_sum_of_a_tensor_output():
    b = GraphBuilder(opset=18)
    w = b.initializer("w", np.array([[0.5, -1.5], [2.0, 1.0]]))
    b.output(b.Tanh(w), "y")
    model = b.build()
    with pytest.raises(UnsupportedError, match="not a scalar"):
        BuildGradients().run(model, None)
    assert_gradients_match(model, seed="ones")


def test_op_without_rule_is_named_only_when_on_a_path_to_the_loss():
    b = GraphBuilder(opset=18)
    w = b.initializer("w", np.array([0.5, 1.0]))
    v = b.initializer("v", np.array([0.1, 0.2]))
    unrelated = b.Sin(v)
    b.output(b.ReduceSum(b.Add(b.op("Sin", w, _name="the_sine"), unrelated), keepdims=0), "loss")
    with pytest.raises(UnsupportedError, match="no gradient rule for Sin: node 'the_sine'"):
        BuildGradients().run(b.build(), None)


def test_a_fused_contrib_op_without_rule_suggests_training_before_fuse():
    b = GraphBuilder(opset=18, opsets={"com.microsoft": 1})
    w = b.initializer("w", np.ones((2, 4, 6), np.float32))
    y = b.op("GroupQueryAttention", w, w, w, _domain="com.microsoft", num_heads=1, kv_num_heads=1)
    y.shape, y.type = ir.Shape([2, 4, 6]), ir.TensorType(ir.DataType.FLOAT)
    b.output(b.ReduceSum(y, keepdims=0), "loss")
    with pytest.raises(UnsupportedError, match=r"no gradient rule for GroupQueryAttention .*\(train the model before"):
        BuildGradients().run(b.build(), None)


def test_frozen_path_needs_no_rule():
    b = GraphBuilder(opset=18)
    w = b.initializer("w", np.array([0.5, 1.0]))
    v = b.initializer("frozen_v", np.array([0.1, 0.2]))
    b.output(b.ReduceSum(b.Mul(w, b.Sin(v)), keepdims=0), "loss")
    assert_gradients_match(b.build(), freeze="frozen")


def test_option_errors():
    model = mlp(np.random.default_rng(4))
    with pytest.raises(PassOptionError, match="no output 'los'"):
        BuildGradients(loss="los").run(model, None)
    with pytest.raises(PassOptionError, match="selected no parameter"):
        BuildGradients(wrt="nothing-matches").run(model, None)
    with pytest.raises(PassOptionError, match="not a regular expression"):
        BuildGradients(freeze="(").run(model, None)


def test_old_opsets_are_refused():
    b = GraphBuilder(opset=12)
    w = b.initializer("w", np.array([0.5, 1.0]))
    b.output(b.ReduceSum(b.Mul(w, w), keepdims=0), "loss")
    with pytest.raises(UnsupportedError, match="opset 13"):
        BuildGradients().run(b.build(), None)


@pytest.mark.parametrize("rows", [1, 4])
def test_broadcast_of_symbolic_sizes_is_resolved_at_run_time(rows):
    """``t`` has the symbolic shape [N, 3]; whether N was broadcast against y is only known when run."""
    rng = np.random.default_rng(5)
    b = GraphBuilder(opset=18)
    x, y = b.input("x", F64, ["N", 3]), b.input("y", F64, ["P", "Q", 3])
    w = b.initializer("w", rng.normal(size=3))
    t = b.Mul(x, w)
    b.output(b.ReduceSum(b.Mul(b.Add(t, y), y), keepdims=0), "loss")
    model = b.build()
    feeds = {"x": rng.normal(size=(rows, 3)), "y": rng.normal(size=(2, 4, 3))}
    assert_gradients_match(model, feeds)
    BuildGradients().run(model, None)
    assert any(n.op_type == "NonZero" for n in model.graph)
