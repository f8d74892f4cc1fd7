"""Loss builders: values against numpy references, gradients against finite differences, names, errors."""

from __future__ import annotations

import numpy as np
import pytest

from gradient_models import assert_gradients_match
from onnxsmith.errors import PassOptionError, UnsupportedError
from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes.train import BuildGradients
from onnxsmith.passes.train.losses import Loss, add_loss, add_losses
from onnxsmith.verify._session import run_model

F64 = "float64"


def linear(rng: np.random.Generator, rows: list[int | str] = ("N",), features: int = 3, classes: int = 4,
           outputs: tuple[str, ...] = ("logits",)):
    """``x[*rows, features] @ w_k[features, classes]``, one output per name in ``outputs``."""
    b = GraphBuilder(opset=18)
    x = b.input("x", F64, [*rows, features])
    for k, name in enumerate(outputs):
        w = b.initializer(f"w{k}", rng.normal(size=(features, classes)))
        b.output(b.MatMul(x, w), name)
    return b.build()


def log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def cross_entropy(z: np.ndarray, labels: np.ndarray, smoothing: float) -> float:
    classes = z.shape[-1]
    target = (1 - smoothing) * np.eye(classes)[labels] + smoothing / classes
    return float(-(target * log_softmax(z)).sum(-1).mean())


def kl_div(z: np.ndarray, teacher_logits: np.ndarray, temperature: float) -> float:
    log_q = log_softmax(teacher_logits / temperature)
    return float(temperature ** 2 * (np.exp(log_q) * (log_q - log_softmax(z / temperature))).sum(-1).mean())


def cosine(y: np.ndarray, t: np.ndarray) -> float:
    dot = (y * t).sum(-1)
    return float((1 - dot / np.sqrt((y * y).sum(-1) * (t * t).sum(-1) + 1e-16)).mean())


def evaluate(model, feeds: dict[str, np.ndarray], name: str) -> float:
    outputs = dict(zip([v.name for v in model.graph.outputs], run_model(model, feeds)))
    assert outputs[name].shape == ()
    return float(outputs[name])


@pytest.mark.parametrize("rows", [[5], [2, 3]])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_numpy_and_its_gradient(rng, rows, smoothing):
    model = linear(rng, rows=rows)
    assert add_loss(model, "cross-entropy", output="logits", label_smoothing=smoothing) == "loss"
    labels_input = model.graph.inputs[-1]
    assert labels_input.name == "labels" and labels_input.dtype.name == "INT64"
    assert list(labels_input.shape.dims) == rows
    x, labels = rng.normal(size=(*rows, 3)), rng.integers(0, 4, rows)
    w = model.graph.initializers["w0"].const_value.numpy()
    expected = cross_entropy(x @ w, labels, smoothing)
    assert evaluate(model, {"x": x, "labels": labels}, "loss") == pytest.approx(expected, rel=1e-12)
    assert_gradients_match(model, {"x": x, "labels": labels}, loss="loss")


def test_mse_and_cosine_match_numpy_and_their_gradients(rng):
    for kind, reference in (("mse", lambda y, t: float(((y - t) ** 2).mean())), ("cosine", cosine)):
        model = linear(rng)
        add_loss(model, kind)
        assert model.graph.inputs[-1].name == "target"
        x, target = rng.normal(size=(6, 3)), rng.normal(size=(6, 4))
        w = model.graph.initializers["w0"].const_value.numpy()
        feeds = {"x": x, "target": target}
        assert evaluate(model, feeds, "loss") == pytest.approx(reference(x @ w, target), rel=1e-12), kind
        assert_gradients_match(model, feeds, loss="loss")


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_kl_divergence_from_teacher_logits_and_probabilities(rng, temperature):
    x, teacher = rng.normal(size=(5, 3)), rng.normal(size=(5, 4)) * 2
    probabilities = np.exp(log_softmax(teacher))
    for kind, fed in (("logits", teacher), ("probs", probabilities)):
        model = linear(rng)
        add_loss(model, "kl-div", temperature=temperature, teacher=kind)
        name = f"teacher_{kind}"
        assert model.graph.inputs[-1].name == name
        w = model.graph.initializers["w0"].const_value.numpy()
        expected = kl_div(x @ w, teacher, temperature)
        assert evaluate(model, {"x": x, name: fed}, "loss") == pytest.approx(expected, rel=1e-9), kind
        assert_gradients_match(model, {"x": x, name: fed}, loss="loss")


def test_kl_divergence_is_zero_at_the_teacher_and_finite_for_zero_probabilities(rng):
    model = linear(rng)
    add_loss(model, "kl-div", teacher="probs", temperature=2.0)
    x = rng.normal(size=(3, 3))
    w = model.graph.initializers["w0"].const_value.numpy()
    p = np.exp(log_softmax(x @ w))
    assert evaluate(model, {"x": x, "teacher_probs": p}, "loss") == pytest.approx(0.0, abs=1e-12)
    one_hot = np.eye(4)[[0, 2, 3]]
    assert np.isfinite(evaluate(model, {"x": x, "teacher_probs": one_hot}, "loss"))


def test_weighted_sum_over_two_outputs_names_inputs_after_the_outputs(rng):
    model = linear(rng, outputs=("student", "embedding"))
    name = add_losses(model, [Loss("cross-entropy", "student", 0.7, label_smoothing=0.2),
                              Loss("cosine", "embedding", 0.3)], name="total")
    assert name == "total"
    assert [v.name for v in model.graph.inputs] == ["x", "student_labels", "embedding_target"]
    x, labels, target = rng.normal(size=(4, 3)), rng.integers(0, 4, 4), rng.normal(size=(4, 4))
    w0, w1 = (model.graph.initializers[k].const_value.numpy() for k in ("w0", "w1"))
    expected = 0.7 * cross_entropy(x @ w0, labels, 0.2) + 0.3 * cosine(x @ w1, target)
    feeds = {"x": x, "student_labels": labels, "embedding_target": target}
    assert evaluate(model, feeds, "total") == pytest.approx(expected, rel=1e-12)
    assert_gradients_match(model, feeds, loss="total")


def test_an_existing_value_named_as_target_is_used(rng):
    b = GraphBuilder(opset=18)
    x, teacher_in = b.input("x", F64, ["N", 3]), b.input("t_in", F64, ["N", 3])
    w, v = b.initializer("w", rng.normal(size=(3, 4))), b.initializer("teacher_w", rng.normal(size=(3, 4)))
    b.output(b.MatMul(x, w), "logits")
    teacher = b.MatMul(teacher_in, v)  # a teacher in the same graph
    teacher.name = "teacher_out"
    model = b.build()
    add_loss(model, "kl-div", output="logits", target="teacher_out", temperature=2.0)
    assert [v.name for v in model.graph.inputs] == ["x", "t_in"]
    assert_gradients_match(model, {"x": rng.normal(size=(2, 3)), "t_in": rng.normal(size=(2, 3))},
                           loss="loss", freeze="teacher")


def test_pass_option_appends_the_loss_before_differentiating(rng):
    model = linear(rng)
    x, labels = rng.normal(size=(5, 3)), rng.integers(0, 4, 5)
    w = model.graph.initializers["w0"].const_value.numpy()
    BuildGradients(loss_fn="cross-entropy", label_smoothing=0.1).run(model, None)
    assert [v.name for v in model.graph.inputs] == ["x", "labels", "w0"]
    assert [v.name for v in model.graph.outputs] == ["loss", "w0_grad"]
    loss, grad = run_model(model, {"x": x, "labels": labels})
    z = x @ w
    target = 0.9 * np.eye(4)[labels] + 0.1 / 4
    np.testing.assert_allclose(loss, cross_entropy(z, labels, 0.1), rtol=1e-12)
    np.testing.assert_allclose(grad, x.T @ (np.exp(log_softmax(z)) - target) / 5, rtol=1e-10, atol=1e-12)


def test_pass_option_weighted_terms(rng):
    model = linear(rng)
    feeds = {"x": rng.normal(size=(4, 3)), "labels": rng.integers(0, 4, 4), "teacher_logits": rng.normal(size=(4, 4))}
    assert_gradients_match(model, feeds, loss_fn="cross-entropy,kl-div", loss_weights="0.5,2", temperature="4")


def test_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(PassOptionError, match="unknown loss 'cross_entropy'.*cross-entropy"):
        add_loss(linear(rng), "cross_entropy")
    with pytest.raises(PassOptionError, match="label smoothing applies to cross-entropy"):
        add_loss(linear(rng), "mse", label_smoothing=0.1)
    with pytest.raises(PassOptionError, match="no output 'logit'"):
        add_loss(linear(rng), "mse", output="logit")
    with pytest.raises(PassOptionError, match="which one"):
        add_loss(linear(rng, outputs=("a", "b")), "mse")
    model = linear(rng)
    add_loss(model, "mse")
    with pytest.raises(PassOptionError, match="already has a value 'target'"):
        add_loss(model, "mse", output="logits")
    with pytest.raises(UnsupportedError, match="static number of classes"):
        add_loss(_dynamic_classes(), "cross-entropy")
    with pytest.raises(PassOptionError, match="loss-fn"):
        BuildGradients(label_smoothing=0.1)
    with pytest.raises(PassOptionError, match="either loss"):
        BuildGradients(loss_fn="mse", loss="y")
    with pytest.raises(PassOptionError, match="needs loss-fn=kl-div"):
        BuildGradients(loss_fn="mse", temperature=2.0)
    with pytest.raises(PassOptionError, match="2 loss-weights for 1"):
        BuildGradients(loss_fn="mse", loss_weights="1,2")


def _dynamic_classes():
    b = GraphBuilder(opset=18)
    x = b.input("x", F64, ["N", "C"])
    w = b.initializer("w", np.ones(1))
    b.output(b.Mul(x, w), "logits")
    return b.build()
