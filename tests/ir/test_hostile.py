"""Bad and hostile files: each is refused with one ModelInputError line naming the tensor or file.

And bad output paths: each is an OutputError; a save that fails midway leaves the previous
output intact and no temporary files behind.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

import onnxsmith.ir._io as io_module
from onnxsmith.errors import ModelInputError, OutputError
from onnxsmith.ir import load, save


def refused(path: Path, *fragments: str) -> str:
    """Loads ``path``, expecting a one-line ModelInputError that contains every fragment."""
    with pytest.raises(ModelInputError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def write_with(folder: Path, tiny: onnx.ModelProto, weight: onnx.TensorProto, name: str = "m.onnx") -> Path:
    """Writes ``tiny`` with its initializer replaced by ``weight`` (no checks: it may be hostile)."""
    folder.mkdir(parents=True, exist_ok=True)
    del tiny.graph.initializer[:]
    tiny.graph.initializer.append(weight)
    path = folder / name
    path.write_bytes(tiny.SerializeToString())
    return path


def external(location: str, *, dims=(4,), offset: int | str = 0, length: int | str | None = None,
             name: str = "w") -> onnx.TensorProto:
    tensor = onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims),
                              data_location=TensorProto.EXTERNAL)
    tensor.external_data.add(key="location", value=location)
    tensor.external_data.add(key="offset", value=str(offset))
    if length is not None:
        tensor.external_data.add(key="length", value=str(length))
    return tensor


def raw(dims, data: bytes, name: str = "w") -> onnx.TensorProto:
    return onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims), raw_data=data)


# ----- not a model at all -----

def test_missing_file(tmp_path):
    refused(tmp_path / "nope.onnx", "not found", "nope.onnx")


def test_folder_instead_of_file(tmp_path):
    refused(tmp_path, "folder", tmp_path.name)


def test_empty_file(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    refused(tmp_path / "empty.onnx", "empty", "empty.onnx")


def test_random_bytes(tmp_path):
    (tmp_path / "noise.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    refused(tmp_path / "noise.onnx", "not an ONNX model", "noise.onnx")


def test_other_protobuf_message(tmp_path):
    (tmp_path / "tensor.onnx").write_bytes(numpy_helper.from_array(np.ones(3, np.float32), "t").SerializeToString())
    refused(tmp_path / "tensor.onnx", "not an ONNX model", "tensor.onnx")


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9, 0.999])
def test_truncated_protobuf(tmp_path, tiny_proto, keep):
    tiny_proto.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones(2048, np.float32), "w"))
    tiny_proto.graph.input[0].CopyFrom(oh.make_tensor_value_info("x", TensorProto.FLOAT, [2048]))
    tiny_proto.graph.output[0].CopyFrom(oh.make_tensor_value_info("y", TensorProto.FLOAT, [2048]))
    data = tiny_proto.SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(data[: int(len(data) * keep)])
    refused(tmp_path / "cut.onnx", "cut.onnx")


def test_graph_failing_the_checker(tmp_path, tiny_proto):
    tiny_proto.graph.node.append(oh.make_node("Relu", ["undefined_value"], ["z"], name="dangling"))
    (tmp_path / "bad.onnx").write_bytes(tiny_proto.SerializeToString())
    refused(tmp_path / "bad.onnx", "checker", "bad.onnx")


# ----- external data -----

def test_external_data_in_parent_folder(tmp_path, tiny_proto):
    (tmp_path / "x.bin").write_bytes(bytes(16))
    path = write_with(tmp_path / "model", tiny_proto, external("../x.bin"))
    refused(path, "outside the model's folder", "'w'", "../x.bin")


def test_external_data_at_absolute_path(tmp_path, tiny_proto):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(16))
    path = write_with(tmp_path / "model", tiny_proto, external(str(secret)))
    refused(path, "absolute path", "'w'")


def test_symlink_escaping_the_folder(tmp_path, tiny_proto):
    (tmp_path / "outside.bin").write_bytes(bytes(16))
    (tmp_path / "model").mkdir()
    os.symlink(tmp_path / "outside.bin", tmp_path / "model" / "w.bin")
    path = write_with(tmp_path / "model", tiny_proto, external("w.bin"))
    refused(path, "outside the model's folder", "w.bin")


def test_symlink_inside_the_folder(tmp_path, tiny_proto):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "real.bin").write_bytes(bytes(16))
    os.symlink("real.bin", tmp_path / "model" / "w.bin")
    path = write_with(tmp_path / "model", tiny_proto, external("w.bin"))
    refused(path, "symbolic link", "w.bin", "'w'")


def test_missing_data_file(tmp_path, tiny_proto):
    path = write_with(tmp_path, tiny_proto, external("gone.bin"))
    refused(path, "missing", "gone.bin", "'w'")


def test_data_file_shorter_than_declared(tmp_path, tiny_proto):
    (tmp_path / "short.bin").write_bytes(bytes(8))
    path = write_with(tmp_path, tiny_proto, external("short.bin", offset=4))
    refused(path, "truncated", "short.bin", "'w'")


def test_external_length_contradicting_the_shape(tmp_path, tiny_proto):
    (tmp_path / "w.bin").write_bytes(bytes(64))
    path = write_with(tmp_path, tiny_proto, external("w.bin", length=32))
    refused(path, "length is 32", "'w'")


@pytest.mark.parametrize("offset", ["-4", "4.5", "lots"])
def test_bad_external_offset(tmp_path, tiny_proto, offset):
    (tmp_path / "w.bin").write_bytes(bytes(64))
    path = write_with(tmp_path, tiny_proto, external("w.bin", offset=offset))
    refused(path, "offset", "'w'")


def test_hard_linked_data_file(tmp_path, tiny_proto):
    (tmp_path / "w.bin").write_bytes(bytes(16))
    os.link(tmp_path / "w.bin", tmp_path / "alias.bin")
    path = write_with(tmp_path, tiny_proto, external("w.bin"))
    refused(path, "hard links", "w.bin")


# ----- inline data -----

def test_raw_data_size_mismatch(tmp_path, tiny_proto):
    path = write_with(tmp_path, tiny_proto, raw([5], bytes(16)))
    refused(path, "holds 16 bytes", "'w'", "[5]")


def test_huge_declared_shape_fails_fast_without_allocating(tmp_path, tiny_proto):
    path = write_with(tmp_path, tiny_proto, raw([10**12], bytes(4)))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        refused(path, "'w'", "4 bytes")
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 16 * 2**20


def test_shape_whose_size_overflows_int64(tmp_path, tiny_proto):
    path = write_with(tmp_path, tiny_proto, raw([2**62, 2**62], bytes(4)))
    refused(path, "'w'")


def test_negative_dimension(tmp_path, tiny_proto):
    path = write_with(tmp_path, tiny_proto, raw([-1, 4], bytes(16)))
    refused(path, "negative dimension", "'w'")


def test_typed_data_count_mismatch(tmp_path, tiny_proto):
    tensor = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], float_data=[1.0, 2.0, 3.0])
    path = write_with(tmp_path, tiny_proto, tensor)
    refused(path, "holds 3 in float_data", "'w'")


def test_declared_shape_without_data(tmp_path, tiny_proto):
    path = write_with(tmp_path, tiny_proto, onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4]))
    refused(path, "no data", "'w'")


def test_name_with_line_breaks_stays_on_one_line(tmp_path, tiny_proto):
    message = refused(write_with(tmp_path, tiny_proto, raw([5], bytes(4), name="evil\nname\r")), "evil\\nname")
    assert "\n" not in message


def test_bad_tensor_inside_a_subgraph(tmp_path, tiny_proto):
    branch = oh.make_graph([oh.make_node("Identity", ["inner"], ["b_out"])], "branch", [],
                           [oh.make_tensor_value_info("b_out", TensorProto.FLOAT, [4])],
                           [external("../x.bin", name="inner")])
    tiny_proto.graph.node.append(oh.make_node("If", ["c"], ["if_out"], name="branchy", then_branch=branch,
                                              else_branch=branch))
    path = tmp_path / "sub.onnx"
    path.write_bytes(tiny_proto.SerializeToString())
    refused(path, "outside the model's folder", "'branchy'", "'inner'")


def test_bad_tensor_in_a_function_attribute(tmp_path, tiny_proto):
    constant = oh.make_node("Constant", [], ["b"], value=raw([3], bytes(4), name="k"))
    tiny_proto.functions.append(oh.make_function("local", "F", ["a"], ["b"], [constant], [oh.make_opsetid("", 17)]))
    path = tmp_path / "fn.onnx"
    path.write_bytes(tiny_proto.SerializeToString())
    refused(path, "function 'F'", "attribute 'value'")


# ----- bad output paths -----

@pytest.fixture
def model(tiny_proto, tmp_path):
    onnx.save_model(tiny_proto, tmp_path / "in.onnx")
    return load(tmp_path / "in.onnx")


def test_output_folder_missing(model, tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        save(model, tmp_path / "no" / "such" / "out.onnx")


def test_output_path_is_a_folder(model, tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        save(model, tmp_path)


def test_output_under_a_file(model, tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OutputError, match="is a file"):
        save(model, tmp_path / "file" / "out.onnx")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux-only")
def test_output_folder_nobody_can_write(model):
    # Even root cannot create files in /proc.
    with pytest.raises(OutputError, match="/proc"):
        save(model, "/proc/out.onnx")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_output_folder(model, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            save(model, folder / "out.onnx")
    finally:
        folder.chmod(0o700)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_failed_save_keeps_the_previous_output(model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    save(model, out / "m.onnx")
    before = _snapshot(out)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io_module, "finish_proto", disk_full)
    with pytest.raises(OutputError, match="No space left"):
        save(model, out / "m.onnx")
    assert _snapshot(out) == before


def test_failed_external_data_write_keeps_the_previous_output(external_model, tmp_path, monkeypatch):
    model = load(external_model)
    out = tmp_path / "out"
    out.mkdir()
    save(model, out / "m.onnx")
    before = _snapshot(out)
    assert set(before) == {"m.onnx", "m.onnx.data"}
    real_unload = io_module.ir.external_data.unload_from_model

    def write_then_fail(*args, **kwargs):
        real_unload(*args, **kwargs)  # the data file is complete in the staging folder
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(io_module.ir.external_data, "unload_from_model", write_then_fail)
    with pytest.raises(OutputError, match="Input/output error"):
        save(model, out / "m.onnx")
    assert _snapshot(out) == before
    monkeypatch.undo()
    # The model is still intact and usable after the failed attempt.
    save(model, out / "again.onnx")
    again = onnx.load_model(out / "again.onnx", load_external_data=False)
    assert again.graph.initializer[0].data_location == TensorProto.EXTERNAL
