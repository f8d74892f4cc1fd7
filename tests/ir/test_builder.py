"""GraphBuilder: ops, attributes, constants and inferred output types."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.ir import GraphBuilder, load, save, tensor_bytes
from onnxsmith.verify._session import run_model


def test_builder_makes_a_runnable_model_with_inferred_types():
    b = GraphBuilder()
    x = b.input("x", "float32", ["N", 4])
    y = b.Relu(b.MatMul(x, b.initializer("w", np.eye(4, 3, dtype=np.float32))))
    b.output(y, "y")
    model = b.build()
    assert model.graph.outputs[0].dtype == ir.DataType.FLOAT
    assert str(model.graph.outputs[0].shape) == "[N,3]"
    data = np.array([[1, -2, 3, 4]], np.float32)
    np.testing.assert_array_equal(run_model(model, {"x": data})[0], [[1, 0, 3]])


def test_numpy_array_attributes_become_tensors():
    b = GraphBuilder()
    x = b.input("x", "float32", [2])
    c = b.op("Constant", value=np.array([1.5, 2.5], np.float32))
    b.output(b.Add(x, c), "y")
    out = run_model(b.build(), {"x": np.zeros(2, np.float32)})[0]
    np.testing.assert_array_equal(out, [1.5, 2.5])


def test_string_initializers_save_and_count(tmp_path):
    b = GraphBuilder()
    x = b.input("x", "float32", [2])
    b.initializer("labels", np.array(["cat", "dog"], dtype=object))
    b.output(b.Identity(x), "y")
    model = b.build()
    assert tensor_bytes(model) == 6
    save(model, tmp_path / "m.onnx")
    reloaded = load(tmp_path / "m.onnx")
    assert tensor_bytes(reloaded) == 6
    assert list(reloaded.graph.initializers["labels"].const_value.numpy()) == [b"cat", b"dog"]


def test_multi_output_ops_return_tuples():
    b = GraphBuilder()
    x = b.input("x", "float32", [4])
    first, second = b.op("Split", x, b.const(np.array([1, 3], np.int64)), _outputs=2)
    b.output(first, "a")
    b.output(second, "b")
    a, c = run_model(b.build(), {"x": np.arange(4, dtype=np.float32)})
    assert a.tolist() == [0.0] and c.tolist() == [1.0, 2.0, 3.0]
