"""Optimizer steps in the training graph against numpy implementations of the same updates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxsmith.errors import PassOptionError
from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes.train import BuildGradients
from onnxsmith.passes.train.build_gradients import METADATA_KEY
from onnxsmith.verify._session import make_session


def regression(rng: np.random.Generator, dtype: str = "float64"):
    """``y = x[N,3] @ w[3,2] + b[2]``; the loss (mse against ``target``) is added by the pass."""
    b = GraphBuilder(opset=18)
    x = b.input("x", dtype, ["N", 3])
    w = b.initializer("w", rng.normal(size=(3, 2)).astype(dtype))
    bias = b.initializer("b", rng.normal(size=2).astype(dtype))
    b.output(b.Add(b.MatMul(x, w), bias), "y")
    return b.build()


def regression_gradients(params: dict[str, np.ndarray], x: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    dy = 2 * (x @ params["w"] + params["b"] - target) / target.size
    return {"w": x.T @ dy, "b": dy.sum(0)}


def sgd_step(p, g, buf, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD (dampening 0) for one tensor."""
    g = g + weight_decay * p
    if momentum:
        buf = momentum * buf + g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


def adamw_step(p, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """torch.optim.AdamW for one tensor; ``step`` updates were applied before."""
    t = step + 1
    p = p * (1 - lr * weight_decay)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return p - lr / (1 - beta1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - beta2 ** t) + eps), m, v


CASES = [
    {"optimizer": "sgd"},
    {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.05},
    {"optimizer": "sgd", "momentum": 0.8, "nesterov": True},
    {"optimizer": "adamw"},
    {"optimizer": "adamw", "beta1": 0.5, "beta2": 0.9, "eps": 1e-6, "weight_decay": 0.0},
]


@pytest.mark.parametrize("options", CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_steps_match_numpy(options):
    rng = np.random.default_rng(0)
    model = regression(rng)
    params = {k: model.graph.initializers[k].const_value.numpy().copy() for k in ("w", "b")}
    BuildGradients(loss_fn="mse", **options).run(model, None)
    session = make_session(model)
    names = [v.name for v in model.graph.outputs]
    info = json.loads(model.metadata_props[METADATA_KEY])
    adam = options["optimizer"] == "adamw"
    hyper = {k: v for k, v in options.items() if k != "optimizer"}
    state = {name: np.zeros_like(params[parameter]) for name, parameter in info["state"].items()}
    assert len(state) == 2 * len(params) if adam else len(state) == len(params) * ("momentum" in hyper)
    feeds = {**params, **state}
    expected = {**params, **state}
    for step, lr in enumerate([0.1, 0.05, 0.02]):  # a schedule: lr is an input
        x, target = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
        step_feeds = {"x": x, "target": target, "lr": np.array(lr), **({"step": np.array(step)} if adam else {})}
        outputs = dict(zip(names, session.run(None, {**feeds, **step_feeds})))
        grads = regression_gradients({k: expected[k] for k in params}, x, target)
        for p in params:
            if adam:
                expected[p], expected[f"{p}_m"], expected[f"{p}_v"] = adamw_step(
                    expected[p], grads[p], expected[f"{p}_m"], expected[f"{p}_v"], lr, step, **hyper)
            else:
                expected[p], buffer = sgd_step(expected[p], grads[p], expected.get(f"{p}_momentum"), lr, **hyper)
                if f"{p}_momentum" in expected:
                    expected[f"{p}_momentum"] = buffer
        for name in feeds:
            np.testing.assert_allclose(outputs[info["updates"][name]], expected[name], rtol=1e-12, atol=1e-14)
        feeds = {name: outputs[info["updates"][name]] for name in feeds}
    assert not np.allclose(feeds["w"], params["w"])


def test_training_graph_interface_with_adamw():
    model = regression(np.random.default_rng(1), "float32")
    result = BuildGradients(loss_fn="mse", optimizer="adamw").run(model, None)
    graph = model.graph
    assert [v.name for v in graph.inputs] == ["x", "target", "w", "b", "w_m", "w_v", "b_m", "b_v", "lr", "step"]
    assert [v.name for v in graph.outputs] == ["loss", "w_new", "b_new", "w_m_new", "w_v_new", "b_m_new", "b_v_new"]
    inputs = {v.name: v for v in graph.inputs}
    for out in graph.outputs[1:]:
        source = inputs[out.name[: -len("_new")]]
        assert out.dtype == source.dtype and out.shape == source.shape
    assert inputs["lr"].dtype.name == "FLOAT" and list(inputs["lr"].shape.dims) == []
    assert inputs["step"].dtype.name == "INT64"
    assert "w_m" not in graph.initializers and "w" in graph.initializers
    assert result.stats["optimizer"] == "adamw"
    info = json.loads(model.metadata_props[METADATA_KEY])
    assert info == {"loss": "loss", "parameters": ["w", "b"], "optimizer": "adamw",
                    "state": {"w_m": "w", "w_v": "w", "b_m": "b", "b_v": "b"}, "lr": "lr", "step": "step",
                    "updates": {"w": "w_new", "w_m": "w_m_new", "w_v": "w_v_new",
                                "b": "b_new", "b_m": "b_m_new", "b_v": "b_v_new"}}


def test_sgd_without_momentum_has_no_state_and_no_step():
    model = regression(np.random.default_rng(2))
    BuildGradients(loss_fn="mse", optimizer="sgd").run(model, None)
    assert [v.name for v in model.graph.inputs] == ["x", "target", "w", "b", "lr"]
    assert [v.name for v in model.graph.outputs] == ["loss", "w_new", "b_new"]


def test_gradients_only_is_the_default_without_an_optimizer():
    explicit, default = (regression(np.random.default_rng(3)) for _ in range(2))
    BuildGradients(loss_fn="mse", gradients_only=True).run(explicit, None)
    BuildGradients(loss_fn="mse").run(default, None)
    for model in (explicit, default):
        assert [v.name for v in model.graph.outputs] == ["loss", "w_grad", "b_grad"]
    assert json.loads(default.metadata_props[METADATA_KEY])["gradients"] == {"w": "w_grad", "b": "b_grad"}


@pytest.mark.parametrize("options, message", [
    ({"optimizer": "adamw", "gradients_only": True}, "contradict"),
    ({"optimizer": "adamw", "momentum": 0.9}, "'momentum' needs optimizer=sgd"),
    ({"optimizer": "sgd", "beta1": 0.8}, "'beta1' needs optimizer=adamw"),
    ({"weight_decay": 0.1}, "'weight-decay' needs an optimizer"),
    ({"optimizer": "sgd", "nesterov": True}, "Nesterov momentum needs momentum > 0"),
    ({"optimizer": "adamw", "beta2": 1.0}, r"betas must lie in \[0, 1\)"),
    ({"optimizer": "adam"}, r"must be one of '' \(empty\), sgd, adamw, got 'adam'"),
    ({"optimizer": "sgd", "lr": 0.1}, "has no option 'lr'"),
])
def test_option_errors(options, message):
    with pytest.raises(PassOptionError, match=message):
        BuildGradients(**options)
