"""``exposed_outputs``: intermediate values are outputs inside the block, and the model is restored."""

from __future__ import annotations

import numpy as np
import pytest

from onnxsmith.ir import GraphBuilder, to_text
from onnxsmith.ir.exposed import exposed_outputs
from onnxsmith.verify._session import run_model


def test_values_are_outputs_inside_the_block_only():
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [2])
    hidden = b.Relu(x)
    y = b.Neg(hidden)
    b.output(y, "y")
    model = b.build()
    before = to_text(model)
    with exposed_outputs(model, [hidden, y]):  # y is already an output: not added twice
        assert [v.name for v in model.graph.outputs] == ["y", hidden.name]
        _, relu = run_model(model, {"x": np.array([-1.0, 2.0], np.float32)})
        np.testing.assert_array_equal(relu, [0.0, 2.0])
    assert to_text(model) == before
    with pytest.raises(RuntimeError), exposed_outputs(model, [hidden]):
        raise RuntimeError
    assert to_text(model) == before
