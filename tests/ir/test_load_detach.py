"""``load`` frees the parsed protobuf of a large inline model: its tensors own their arrays."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.ir import GraphBuilder, load, save, to_text
from onnxsmith.ir import _io


def _model(rows: int):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 64])
    w = b.initializer("w", np.arange(rows * 64, dtype=np.float32).reshape(64, rows) / 7)
    b.output(b.op("Add", b.MatMul(x, w), b.Constant(value=np.ones(rows, np.float32))), "y")
    return b.build()


def test_a_large_file_gets_tensors_of_their_own(tmp_path, monkeypatch):
    save(_model(8), tmp_path / "m.onnx")
    small = load(tmp_path / "m.onnx")
    assert isinstance(small.graph.initializers["w"].const_value, ir.serde.TensorProtoTensor)  # left lazy

    monkeypatch.setattr(_io, "DETACH_MIN_BYTES", 1)
    big = load(tmp_path / "m.onnx")
    weight = big.graph.initializers["w"].const_value
    assert isinstance(weight, ir.Tensor) and weight.name == "w"
    constant = next(n for n in big.graph if n.op_type == "Constant").attributes["value"].as_tensor()
    assert isinstance(constant, ir.Tensor)
    assert to_text(big) == to_text(small)  # same model, same bytes when saved
    save(big, tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == (tmp_path / "m.onnx").read_bytes()
