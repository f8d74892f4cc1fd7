"""External data: lazy loading, where save puts it, saving over the source, memory, > 2 GB."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

import onnxsmith.ir._io as io_module
from onnxsmith.errors import OutputError
from onnxsmith.ir import load, save
from onnxsmith.passes import PassManager, register_pass
from onnxsmith.passes.registry import get_pipeline


def external_tensors(model: ir.Model) -> list[ir.ExternalTensor]:
    return [v.const_value for v in model.graph.initializers.values() if isinstance(v.const_value, ir.ExternalTensor)]


def initializer_arrays(path: Path) -> dict[str, np.ndarray]:
    proto = onnx.load_model(path)
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def test_load_and_save_never_map_the_weights(external_model, tmp_path):
    model = load(external_model)
    tensors = external_tensors(model)
    assert len(tensors) == 3
    save(model, tmp_path / "out.onnx")
    assert all(t.raw is None for t in tensors), "a tensor was memory-mapped"


def test_data_file_is_named_after_the_output(external_model, tmp_path):
    save(load(external_model), tmp_path / "renamed.onnx")
    assert {p.name for p in tmp_path.iterdir()} >= {"renamed.onnx", "renamed.onnx.data"}
    proto = onnx.load_model(tmp_path / "renamed.onnx", load_external_data=False)
    locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"renamed.onnx.data"}


def test_small_tensors_stay_inline(external_model, tmp_path):
    save(load(external_model), tmp_path / "out.onnx")
    proto = onnx.load_model(tmp_path / "out.onnx", load_external_data=False)
    where = {t.name: t.data_location for t in proto.graph.initializer}
    assert where == {"W0": TensorProto.EXTERNAL, "W1": TensorProto.EXTERNAL, "W2": TensorProto.EXTERNAL,
                     "B0": TensorProto.DEFAULT, "B1": TensorProto.DEFAULT, "B2": TensorProto.DEFAULT}


def test_no_data_file_when_every_tensor_is_small(tiny_proto, tmp_path):
    onnx.save_model(tiny_proto, tmp_path / "in.onnx")
    save(load(tmp_path / "in.onnx"), tmp_path / "out.onnx", external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "out.onnx"]


def test_forbidding_external_data_inlines_without_touching_the_model(external_model, tmp_path):
    model = load(external_model)
    save(model, tmp_path / "inline.onnx", external_data=False)
    assert not (tmp_path / "inline.onnx.data").exists()
    assert len(external_tensors(model)) == 3
    proto = onnx.load_model(tmp_path / "inline.onnx", load_external_data=False)
    assert all(t.data_location == TensorProto.DEFAULT for t in proto.graph.initializer)
    np.testing.assert_array_equal(initializer_arrays(tmp_path / "inline.onnx")["W1"],
                                  initializer_arrays(external_model)["W1"])


def test_large_models_switch_to_external_data(tiny_proto, tmp_path, monkeypatch):
    onnx.save_model(tiny_proto, tmp_path / "in.onnx")
    monkeypatch.setattr(io_module, "AUTO_EXTERNAL_BYTES", 8)
    save(load(tmp_path / "in.onnx"), tmp_path / "out.onnx", size_threshold_bytes=0)
    assert (tmp_path / "out.onnx.data").stat().st_size == 16


def test_too_large_for_protobuf_without_external_data(tiny_proto, tmp_path, monkeypatch):
    onnx.save_model(tiny_proto, tmp_path / "in.onnx")
    monkeypatch.setattr(io_module, "PROTOBUF_LIMIT", 8)
    with pytest.raises(OutputError, match="protobuf limit"):
        save(load(tmp_path / "in.onnx"), tmp_path / "out.onnx", external_data=False)


def test_saving_over_the_source_data_file(external_model):
    """Save onto the file the tensors are read from: the model and the files stay correct."""
    expected = initializer_arrays(external_model)
    model = load(external_model)
    # Move W0 to the end so the new data file has a different layout from the old one.
    w0 = model.graph.initializers.pop("W0")
    model.graph.register_initializer(w0)
    save(model, external_model)
    assert sorted(p.name for p in external_model.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    for name, array in expected.items():
        np.testing.assert_array_equal(model.graph.initializers[name].const_value.numpy(), array)
    actual = initializer_arrays(external_model)
    assert actual.keys() == expected.keys()
    for name, array in expected.items():
        np.testing.assert_array_equal(actual[name], array)
    save(model, external_model.parent / "again.onnx")  # the re-pointed tensors can be saved again
    np.testing.assert_array_equal(initializer_arrays(external_model.parent / "again.onnx")["W0"], expected["W0"])


def test_external_tensor_attributes_are_written_inline(tmp_path):
    """A Constant whose tensor is external data: its location would not hold in a new folder."""
    value = np.arange(1024, dtype=np.float32)
    graph = oh.make_graph([oh.make_node("Constant", [], ["k"], value=numpy_helper.from_array(value, "k")),
                           oh.make_node("Add", ["x", "k"], ["y"])], "g",
                          [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1024])],
                          [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1024])])
    src = tmp_path / "src"
    src.mkdir()
    onnx.save_model(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]), src / "c.onnx",
                    save_as_external_data=True, location="c.bin", size_threshold=0, convert_attribute=True)
    model = load(src / "c.onnx")
    constant = next(iter(model.graph)).attributes["value"]
    assert isinstance(constant.value, ir.ExternalTensor)
    save(model, tmp_path / "out.onnx")
    out = onnx.load_model(tmp_path / "out.onnx", load_external_data=False)
    tensor = out.graph.node[0].attribute[0].t
    assert tensor.data_location == TensorProto.DEFAULT
    np.testing.assert_array_equal(numpy_helper.to_array(tensor), value)
    assert next(iter(model.graph)).attributes["value"] is constant


# ----- memory and size -----

_BENCH = Path(__file__).resolve().parents[2] / "tools" / "bench_memory.py"


def _onnxsmith_memory(tmp_path: Path, size_gb: float) -> dict:
    """Runs tools/bench_memory.py for onnxsmith alone: load -> cleanup -> save in a fresh process."""
    result = subprocess.run([sys.executable, str(_BENCH), "--size-gb", str(size_gb), "--tools", "onnxsmith",
                             "--dir", str(tmp_path), "--json"], capture_output=True, text=True, timeout=900,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    report = json.loads(result.stdout)
    (run,) = report["results"]
    assert run["output_ok"]
    print(f"peak RSS {run['peak_rss'] / 2**20:.0f} MiB, growth {run['growth_rss'] / 2**20:.1f} MiB "
          f"for {report['size_bytes'] / 2**20:.0f} MiB of weights ({run['what']})")
    return {"size": report["size_bytes"], **run}


def test_untouched_weights_are_never_read_into_memory(tmp_path):
    run = _onnxsmith_memory(tmp_path, 0.064)  # one 64 MiB weight
    assert run["growth_rss"] < run["size"] / 4


@pytest.mark.slow
def test_untouched_weights_are_never_read_into_memory_300mb(tmp_path):
    if shutil.disk_usage(tmp_path).free < 1e9:
        pytest.skip("not enough free disk space")
    run = _onnxsmith_memory(tmp_path, 0.34)  # five 64 MiB weights
    assert run["growth_rss"] < run["size"] / 8


def _chain_output(n_weights: int, side: int) -> np.ndarray:
    """What the generated chain computes for an all-ones input (see ``write_external_model``)."""
    h = np.ones(side, np.float64)
    for i in range(n_weights):
        h = (i + 1) / side * h + 1e-4 * (h.sum() - h) + 0.5
    return h.astype(np.float32)


def _pipeline(scratch_registry) -> str:
    """``cleanup`` when registered, else a pass that changes nothing."""
    if get_pipeline("cleanup"):
        return "cleanup"

    def noop(model, ctx):
        """Changes nothing (stands in for cleanup while it is not registered)."""
        return False

    register_pass(scratch_registry("end-to-end-noop"))(noop)
    return "end-to-end-noop"


def _end_to_end(make_external_model, tmp_path: Path, pipeline: str, n_weights: int, side: int) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    model = load(make_external_model(src, n_weights, side * side))
    PassManager(pipeline).run(model)
    save(model, out / "model.onnx")
    del model
    onnx.checker.check_model(str(out / "model.onnx"))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.ones((1, side), np.float32)})
    np.testing.assert_allclose(y[0], _chain_output(n_weights, side), rtol=1e-4)


def test_external_data_model_end_to_end(make_external_model, tmp_path, scratch_registry):
    _end_to_end(make_external_model, tmp_path, _pipeline(scratch_registry), 3, 256)


@pytest.mark.slow
def test_model_over_2gb_end_to_end(make_external_model, tmp_path, scratch_registry):
    n_weights, side = 9, 8192  # 9 x 256 MiB = 2.25 GiB
    if shutil.disk_usage(tmp_path).free < 3 * n_weights * side * side * 4:
        pytest.skip("not enough free disk space")
    _end_to_end(make_external_model, tmp_path, _pipeline(scratch_registry), n_weights, side)
