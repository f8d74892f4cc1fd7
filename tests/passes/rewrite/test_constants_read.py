"""Reading a constant in a rule leaves the graph exactly as it was."""

from __future__ import annotations

import numpy as np

from onnxsmith.ir import parse_text, to_text
from onnxsmith.passes.rewrite.constants import constant_array


def test_reading_a_constant_node_does_not_rename_its_tensor():
    model = parse_text("""
        <ir_version: 9, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) {
            c = Constant <value = float[2] {1.0, 2.0}> ()
            y = Add(x, c)
        }
    """)
    before = to_text(model)
    value = next(iter(model.graph)).outputs[0]
    np.testing.assert_array_equal(constant_array(value), [1.0, 2.0])
    assert to_text(model) == before
    assert next(iter(model.graph)).attributes["value"].as_tensor().name != "c"
