"""Training end to end: an MLP on separable blobs, trained by its ONNX training graph in onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes import PassManager
from onnxsmith.passes.train.build_gradients import METADATA_KEY
from onnxsmith.verify._session import make_session

F32 = "float32"


def blobs(rng: np.random.Generator, per_class: int = 64, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around well-separated centres in 2-D."""
    centres = np.array([[np.cos(a), np.sin(a)] for a in 2 * np.pi * np.arange(classes) / classes]) * 4
    labels = np.repeat(np.arange(classes), per_class)
    x = centres[labels] + rng.normal(size=(len(labels), 2))
    order = rng.permutation(len(labels))
    return x[order].astype(F32), labels[order].astype(np.int64)


def mlp(rng: np.random.Generator, hidden: int = 16, classes: int = 3):
    b = GraphBuilder(opset=18)
    x = b.input("x", F32, ["N", 2])
    w1 = b.initializer("w1", (rng.normal(size=(2, hidden)) * 0.5).astype(F32))
    b1 = b.initializer("b1", np.zeros(hidden, F32))
    w2 = b.initializer("w2", (rng.normal(size=(hidden, classes)) * 0.5).astype(F32))
    b2 = b.initializer("b2", np.zeros(classes, F32))
    b.output(b.Add(b.MatMul(b.Relu(b.Add(b.MatMul(x, w1), b1)), w2), b2), "logits")
    return b.build()


@pytest.mark.parametrize("optimizer, lr", [("optimizer=sgd;momentum=0.9", 0.05),
                                           ("optimizer=adamw;weight-decay=0.001", 0.02)])
def test_fifty_steps_reduce_the_loss_five_times(optimizer, lr):
    rng = np.random.default_rng(0)
    x, labels = blobs(rng)
    model = mlp(rng)
    PassManager(f"build-gradients{{loss-fn=cross-entropy;{optimizer}}}").run(model)
    info = json.loads(model.metadata_props[METADATA_KEY])
    session = make_session(model)
    outputs = [v.name for v in model.graph.outputs]
    carried = {v.name: v.const_value.numpy() for v in model.graph.inputs if v.name in info["parameters"]}
    carried.update({state: np.zeros_like(carried[parameter]) for state, parameter in info["state"].items()})
    losses = []
    for step in range(50):
        batch = slice(step * 32 % len(x), step * 32 % len(x) + 32)
        feeds = {"x": x[batch], "labels": labels[batch], "lr": np.array(lr, F32), **carried}
        if "step" in info:
            feeds["step"] = np.array(step, np.int64)
        results = dict(zip(outputs, session.run(None, feeds)))
        losses.append(float(results["loss"]))
        carried = {name: results[info["updates"][name]] for name in carried}
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert first > 5 * last, f"loss went from {first:.3f} to {last:.3f}"
