"""``load`` parses a large file without its large initializer data, then reads that data from the file."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxsmith.errors import ModelInputError
from onnxsmith.ir import GraphBuilder, load, save, to_text
from onnxsmith.ir import _io
from onnxsmith.ir._skeleton import SKELETON_MIN_RAW_BYTES, read_skeleton


def _model(rows: int, dtype: str = "float32"):
    b = GraphBuilder(opset=21)
    x = b.input("x", dtype, [1, 64])
    w = b.initializer("w", (np.arange(rows * 64).reshape(64, rows) / 7).astype(dtype))
    small = b.initializer("b", np.ones(rows, dtype))
    b.output(b.op("Add", b.MatMul(x, w), small), "y")
    return b.build()


@pytest.fixture
def large(monkeypatch):
    monkeypatch.setattr(_io, "DETACH_MIN_BYTES", 1)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_large_data_is_referenced_in_the_file_and_read_into_arrays_of_their_own(tmp_path, large, dtype):
    path = tmp_path / "m.onnx"
    save(_model(64, dtype), path)
    skeleton = onnx.ModelProto.FromString(read_skeleton(path))
    w, b = skeleton.graph.initializer
    assert w.data_location == onnx.TensorProto.EXTERNAL and not w.HasField("raw_data")
    where = {e.key: e.value for e in w.external_data}
    assert where["location"] == "m.onnx"
    with open(path, "rb") as f:
        f.seek(int(where["offset"]))
        assert f.read(int(where["length"])) == onnx.load(path).graph.initializer[0].raw_data
    assert b.HasField("raw_data") and len(b.raw_data) < SKELETON_MIN_RAW_BYTES  # small data stays inline

    model = load(path)
    weight = model.graph.initializers["w"].const_value
    assert isinstance(weight, ir.Tensor) and weight.name == "w" and weight.numpy().flags.writeable
    np.testing.assert_array_equal(weight.numpy(), onnx.numpy_helper.to_array(onnx.load(path).graph.initializer[0]))
    save(model, tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == path.read_bytes()
    assert not (tmp_path / "again.onnx.data").exists()


def test_the_skeleton_gives_the_model_of_the_whole_file(tmp_path, large, monkeypatch):
    path = tmp_path / "m.onnx"
    save(_model(64), path)
    read = load(path)
    monkeypatch.setattr(_io, "read_skeleton", lambda p: None)
    assert to_text(read) == to_text(load(path))


def test_a_tensor_whose_data_does_not_match_its_header_stays_inline_and_is_refused(tmp_path, large):
    proto = ir.to_proto(_model(64))
    proto.graph.initializer[0].raw_data = proto.graph.initializer[0].raw_data[:-4]
    path = tmp_path / "bad.onnx"
    onnx.save(proto, path)
    assert onnx.ModelProto.FromString(read_skeleton(path)).graph.initializer[0].HasField("raw_data")
    with pytest.raises(ModelInputError, match="holds 16380 bytes"):
        load(path, check=False)


def test_a_hard_linked_or_truncated_file_is_read_whole(tmp_path, large):
    path = tmp_path / "m.onnx"
    save(_model(64), path)
    os.link(path, tmp_path / "link.onnx")
    assert read_skeleton(path) is None
    assert isinstance(load(path).graph.initializers["w"].const_value, ir.Tensor)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[:-100])
    assert read_skeleton(cut) is None
    with pytest.raises(ModelInputError):
        load(cut)
