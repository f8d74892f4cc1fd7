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


def _checked(monkeypatch) -> list:
    """Records what the ONNX checker is handed: a path (str) or serialized bytes."""
    seen, check = [], onnx.checker.check_model
    monkeypatch.setattr(onnx.checker, "check_model", lambda m, *a, **k: (seen.append(m), check(m, *a, **k))[1])
    return seen


def test_the_checker_reads_the_skeleton_not_the_whole_file(tmp_path, large, monkeypatch):
    path = tmp_path / "m.onnx"
    save(_model(64), path)
    seen = _checked(monkeypatch)
    load(path)
    assert len(seen) == 1 and isinstance(seen[0], bytes) and len(seen[0]) < path.stat().st_size // 2
    checked = onnx.ModelProto.FromString(seen[0]).graph.initializer[0]
    assert {e.key: e.value for e in checked.external_data}["location"] == "#m.onnx"


def test_an_objection_to_the_skeleton_is_the_files_verdict(tmp_path, large, monkeypatch):
    proto = ir.to_proto(_model(64))
    proto.graph.node[0].op_type = "NoSuchOp"
    path = tmp_path / "bad.onnx"
    onnx.save(proto, path)
    with pytest.raises(onnx.checker.ValidationError) as whole:
        onnx.checker.check_model(str(path))
    seen = _checked(monkeypatch)
    with pytest.raises(ModelInputError, match="fails the ONNX checker: .*NoSuchOp") as ours:
        load(path)
    assert [type(m) for m in seen] == [bytes, str]  # the file itself gives the verdict
    assert str(whole.value).splitlines()[0] in str(ours.value)


def test_a_model_with_external_data_of_its_own_is_checked_from_the_file(tmp_path, large, monkeypatch):
    b = GraphBuilder(opset=21)
    x = b.input("x", "float32", [1, 64])
    w = b.initializer("w", np.ones((64, 64), np.float32))
    far = b.initializer("far", np.ones((64,), np.float32))
    b.output(b.op("Add", b.MatMul(x, w), far), "y")
    proto = ir.to_proto(b.build())
    onnx.external_data_helper.convert_model_to_external_data(proto, location="far.bin", size_threshold=0,
                                                              all_tensors_to_one_file=True)
    proto.graph.initializer[0].ClearField("external_data")  # w back inline (large): the skeleton references it
    proto.graph.initializer[0].data_location = onnx.TensorProto.DEFAULT
    proto.graph.initializer[0].raw_data = np.ones((64, 64), np.float32).tobytes()
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)  # writes far.bin, keeps w inline
    seen = _checked(monkeypatch)
    monkeypatch.chdir(tmp_path.parent)  # a check of the bytes would look for far.bin here
    load(path)
    assert [type(m) for m in seen] == [str]
