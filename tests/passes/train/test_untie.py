"""build-gradients unties parameters that an exporter merged through Identity nodes."""

from __future__ import annotations

import json

import numpy as np

from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes.train import BuildGradients
from onnxsmith.passes.train.build_gradients import METADATA_KEY
from onnxsmith.verify._session import make_session


def merged_biases():
    """``y = (x + b1) * 2 + b2`` where the exporter kept ``b1`` and made ``b2 = Identity(b1)`` (both zeros)."""
    b = GraphBuilder(opset=18)
    x = b.input("x", "float64", ["N", 3])
    kept = b.initializer("b1", np.zeros(3))
    alias = b.op("Identity", kept, _name="b2_identity")
    alias.name = "b2"
    two = b.Constant(value=np.array(2.0))
    b.output(b.Add(b.Mul(b.Add(x, kept), two), alias), "y")
    return b.build()


def gradients(model) -> dict[str, np.ndarray]:
    info = json.loads(model.metadata_props[METADATA_KEY])
    session = make_session(model)
    x = np.arange(6.0).reshape(2, 3)
    outputs = session.run(list(info["gradients"].values()), {"x": x})
    return dict(zip(info["gradients"], outputs))


def test_identity_of_an_initializer_becomes_its_own_parameter():
    model = merged_biases()
    result = BuildGradients(seed="ones").run(model, None)
    assert result.stats["untied"] == 1
    assert {"b1", "b2"} <= set(model.graph.initializers)
    assert not any(n.op_type == "Identity" and n.inputs[0].name == "b1" for n in model.graph)
    grads = gradients(model)
    np.testing.assert_allclose(grads["b1"], np.full(3, 4.0))  # d/db1 of sum((x + b1) * 2 + b2), 2 rows
    np.testing.assert_allclose(grads["b2"], np.full(3, 2.0))


def test_untie_false_keeps_one_parameter_with_the_summed_gradient():
    model = merged_biases()
    result = BuildGradients(seed="ones", untie=False).run(model, None)
    assert "untied" not in result.stats
    grads = gradients(model)
    assert list(grads) == ["b1"]
    np.testing.assert_allclose(grads["b1"], np.full(3, 6.0))


def test_a_parameter_read_directly_by_several_nodes_stays_shared():
    b = GraphBuilder(opset=18)
    x = b.input("x", "float64", ["N", 3])
    w = b.initializer("w", np.ones(3))
    b.output(b.Mul(b.Add(x, w), w), "y")
    model = b.build()
    result = BuildGradients(seed="ones").run(model, None)
    assert "untied" not in result.stats and result.stats["parameters"] == 1
