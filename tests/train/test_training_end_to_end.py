"""Training end to end: an MLP on separable blobs, trained by its ONNX training graph in onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxsmith.passes import PassManager
from onnxsmith.passes.train.build_gradients import METADATA_KEY
from onnxsmith.verify._session import make_session

F32 = "float32"


@pytest.mark.parametrize("optimizer, lr", [("optimizer=sgd;momentum=0.9", 0.05),
                                           ("optimizer=adamw;weight-decay=0.001", 0.02)])
def test_fifty_steps_reduce_the_loss_five_times(optimizer, lr, blobs, mlp):
    order = np.random.default_rng(0).permutation(len(blobs["labels"]))  # mixed classes in every batch
    x, labels = blobs["x"][order], blobs["labels"][order]
    PassManager(f"build-gradients{{loss-fn=cross-entropy;{optimizer}}}").run(mlp)
    info = json.loads(mlp.metadata_props[METADATA_KEY])
    session = make_session(mlp)
    outputs = [v.name for v in mlp.graph.outputs]
    carried = {v.name: v.const_value.numpy() for v in mlp.graph.inputs if v.name in info["parameters"]}
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
