"""Cross-entropy and kl-div on outputs that are already probabilities read the logits under the softmax."""

from __future__ import annotations

import numpy as np
import pytest

from gradient_models import assert_gradients_match
from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.ir.shapes import infer_shapes
from onnxsmith.passes.train.losses import add_loss
from onnxsmith.passes.train.softmax_logits import softmax_logits
from onnxsmith.verify._session import run_model

F64 = "float64"
CLASSES = 4


def _probabilities(form: str, rng: np.random.Generator, opset: int = 18):
    """``softmax(x @ w)`` written as ``form``; the model's output is ``probs``."""
    b = GraphBuilder(opset=opset)
    x = b.input("x", F64, ["N", 3])
    z = b.MatMul(x, b.initializer("w", rng.normal(size=(3, CLASSES))))
    axes = b.const(np.array([1], np.int64))
    if form.startswith("softmax"):
        y = b.Softmax(z, axis=0) if form == "softmax-axis0" else b.Softmax(z)  # default axis: 1 before opset 13
    else:
        e = b.Exp(b.Sub(z, b.ReduceMax(z, axes, keepdims=1)))
        if form == "exp-reshape-expand":  # the jax2tf / tf2onnx form
            sums = b.Reshape(b.ReduceSum(e, axes, keepdims=0), b.const(np.array([-1, 1], np.int64)))
            y = b.Div(e, b.Expand(sums, b.Shape(z)))
        elif form == "exp-keepdims":
            y = b.Div(e, b.ReduceSum(e, axes, keepdims=1))
        elif form == "exp-column-sums":
            y = b.Div(e, b.ReduceSum(e, b.const(np.array([0], np.int64)), keepdims=1))
        elif form == "exp-rank1-sums":  # [N] divides along the classes when N == C: not row sums
            y = b.Div(e, b.ReduceSum(e, axes, keepdims=0))
        else:
            raise ValueError(form)
    b.output(y, "probs")
    model = b.build()
    infer_shapes(model)
    return model


def _nll(model, x, labels):
    w = model.graph.initializers["w"].const_value.numpy()
    z = x @ w
    shifted = z - z.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def test_a_softmax_before_opset_13_normalises_the_last_axis_of_a_matrix(rng):
    model = _probabilities("softmax", rng, opset=11)
    matmul = next(n for n in model.graph if n.op_type == "MatMul")
    assert softmax_logits(model.graph.outputs[0]) is matmul.outputs[0]


@pytest.mark.parametrize("form", ["softmax", "exp-reshape-expand", "exp-keepdims"])
def test_cross_entropy_of_probabilities_is_the_negative_log_likelihood(form, rng):
    model = _probabilities(form, rng)
    assert softmax_logits(model.graph.outputs[0]) is not None
    add_loss(model, "cross-entropy", output="probs")
    x, labels = rng.normal(size=(5, 3)), rng.integers(0, CLASSES, 5)
    outputs = dict(zip([v.name for v in model.graph.outputs], run_model(model, {"x": x, "labels": labels})))
    assert float(outputs["loss"]) == pytest.approx(_nll(model, x, labels), rel=1e-12)
    assert_gradients_match(model, {"x": x, "labels": labels}, loss="loss")


@pytest.mark.parametrize("form", ["softmax-axis0", "exp-column-sums", "exp-rank1-sums"])
def test_other_normalisations_are_not_taken_for_a_softmax_over_the_classes(form, rng):
    model = _probabilities(form, rng)
    assert softmax_logits(model.graph.outputs[0]) is None


def test_kl_divergence_reads_the_student_logits(rng):
    model = _probabilities("exp-reshape-expand", rng)
    add_loss(model, "kl-div", output="probs", temperature=2.0)
    x, teacher = rng.normal(size=(5, 3)), rng.normal(size=(5, CLASSES))
    outputs = dict(zip([v.name for v in model.graph.outputs], run_model(model, {"x": x, "teacher_logits": teacher})))
    z = x @ model.graph.initializers["w"].const_value.numpy()

    def log_softmax(v):
        v = v - v.max(-1, keepdims=True)
        return v - np.log(np.exp(v).sum(-1, keepdims=True))

    log_q = log_softmax(teacher / 2)
    expected = 4 * (np.exp(log_q) * (log_q - log_softmax(z / 2))).sum(-1).mean()
    assert float(outputs["loss"]) == pytest.approx(expected, rel=1e-12)
