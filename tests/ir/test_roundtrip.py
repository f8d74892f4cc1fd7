"""load -> save must reproduce the input file.

Protos are compared after one normalisation: a field explicitly set to its default value (for
example ``domain: ""`` in an opset import) counts as unset. ONNX gives such fields no meaning,
and onnx_ir writes some of them explicitly. Anything else that differs is a loss.
"""

from __future__ import annotations

import difflib
import glob
import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from onnxsmith.ir import load, save


def canonical(message):
    """``message`` with every explicitly-set default scalar cleared (in place), recursively."""
    for field, value in message.ListFields():
        if field.is_repeated:
            if field.type == field.TYPE_MESSAGE:
                for item in value:
                    canonical(item)
        elif field.type == field.TYPE_MESSAGE:
            canonical(value)
        elif value == field.default_value:
            message.ClearField(field.name)
    return message


def assert_same_proto(expected: onnx.ModelProto, actual: onnx.ModelProto) -> None:
    a = text_format.MessageToString(canonical(expected)).splitlines()
    b = text_format.MessageToString(canonical(actual)).splitlines()
    if a != b:
        diff = "\n".join(difflib.unified_diff(a, b, "expected", "actual", lineterm="", n=2))
        pytest.fail(f"round trip changed the model:\n{diff[:6000]}")


def round_trip(proto: onnx.ModelProto, folder: Path) -> onnx.ModelProto:
    src, dst = folder / "in.onnx", folder / "out.onnx"
    onnx.save_model(proto, src)
    save(load(src), dst)
    return onnx.load_model(dst, load_external_data=False)


def test_every_feature_survives_a_round_trip(rich_proto, tmp_path):
    # metadata of model/graph/node/value/tensor/function, doc strings, producer, domain,
    # model_version, functions with attribute defaults and overloads, If/Loop/Scan bodies,
    # opset imports, value_info, quantization annotations, sparse initializers, training info,
    # multi-device configurations.
    assert_same_proto(rich_proto, round_trip(rich_proto, tmp_path))


def test_round_trip_is_a_fixed_point(rich_proto, tmp_path):
    onnx.save_model(rich_proto, tmp_path / "a.onnx")
    save(load(tmp_path / "a.onnx"), tmp_path / "b.onnx")
    save(load(tmp_path / "b.onnx"), tmp_path / "c.onnx")
    assert (tmp_path / "b.onnx").read_bytes() == (tmp_path / "c.onnx").read_bytes()


def test_model_is_unchanged_by_saving(rich_proto, tmp_path):
    onnx.save_model(rich_proto, tmp_path / "a.onnx")
    model = load(tmp_path / "a.onnx")
    before = ir.to_proto(model).SerializeToString(deterministic=True)
    save(model, tmp_path / "b.onnx", external_data=True, size_threshold_bytes=0)
    assert ir.to_proto(model).SerializeToString(deterministic=True) == before


def test_value_info_naming_nothing_is_dropped(tiny_proto, tmp_path):
    """The one documented loss: a value_info for a name no node, input or initializer defines."""
    tiny_proto.graph.value_info.append(oh.make_tensor_value_info("ghost", TensorProto.FLOAT, [1]))
    out = round_trip(tiny_proto, tmp_path)
    assert [v.name for v in out.graph.value_info] == []
    del tiny_proto.graph.value_info[:]
    assert_same_proto(tiny_proto, out)


def _sparse_model() -> onnx.ModelProto:
    values = numpy_helper.from_array(np.array([1.5, -2.0, 4.0], np.float32), "s")
    indices = numpy_helper.from_array(np.array([[0, 1], [1, 0], [2, 2]], np.int64), "s_idx")
    sparse = oh.make_sparse_tensor(values, indices, [3, 3])
    graph = oh.make_graph([oh.make_node("Add", ["x", "s"], ["y"])], "g",
                          [oh.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
                          [oh.make_tensor_value_info("y", TensorProto.FLOAT, [3, 3])], sparse_initializer=[sparse])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def test_sparse_initializer_is_a_lazy_dense_constant(tmp_path):
    onnx.save_model(_sparse_model(), tmp_path / "s.onnx")
    model = load(tmp_path / "s.onnx")
    tensor = model.graph.initializers["s"].const_value
    assert isinstance(tensor, ir.LazyTensor)
    expected = np.array([[0, 1.5, 0], [-2, 0, 0], [0, 0, 4]], np.float32)
    np.testing.assert_array_equal(tensor.numpy(), expected)
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.ones((3, 3), np.float32)})
    np.testing.assert_array_equal(y, expected + 1)


def test_sparse_initializer_stays_sparse_unless_replaced(tmp_path):
    proto = _sparse_model()
    onnx.save_model(proto, tmp_path / "s.onnx")
    model = load(tmp_path / "s.onnx")
    save(model, tmp_path / "same.onnx")
    assert_same_proto(_sparse_model(), onnx.load_model(tmp_path / "same.onnx"))

    value = model.graph.initializers["s"]
    value.const_value = ir.tensor(value.const_value.numpy() * 2, name="s")
    save(model, tmp_path / "changed.onnx")
    changed = onnx.load_model(tmp_path / "changed.onnx")
    assert not changed.graph.sparse_initializer
    dense = {t.name: numpy_helper.to_array(t) for t in changed.graph.initializer}
    np.testing.assert_array_equal(dense["s"][1], [-4, 0, 0])


def test_sparse_initializer_follows_a_rename(tmp_path):
    onnx.save_model(_sparse_model(), tmp_path / "s.onnx")
    model = load(tmp_path / "s.onnx")
    model.graph.initializers["s"].name = "renamed"
    save(model, tmp_path / "out.onnx")
    out = onnx.load_model(tmp_path / "out.onnx")
    assert [s.values.name for s in out.graph.sparse_initializer] == ["renamed"]
    assert list(out.graph.node[0].input) == ["x", "renamed"]
    onnx.checker.check_model(out)


def test_sparse_initializer_with_external_values_is_written_self_contained(tmp_path):
    proto = _sparse_model()
    values = proto.graph.sparse_initializer[0].values
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "values.bin").write_bytes(values.raw_data)
    values.ClearField("raw_data")
    values.data_location = TensorProto.EXTERNAL
    values.external_data.add(key="location", value="values.bin")
    onnx.save_model(proto, tmp_path / "src" / "s.onnx")
    model = load(tmp_path / "src" / "s.onnx")
    assert model.graph.initializers["s"].const_value.numpy()[2, 2] == 4.0
    save(model, tmp_path / "out.onnx")
    assert_same_proto(_sparse_model(), onnx.load_model(tmp_path / "out.onnx", load_external_data=False))


_BACKEND_DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
_BACKEND_MODELS = sorted(glob.glob(os.path.join(_BACKEND_DATA, "*", "*", "model.onnx")))


def test_onnx_backend_model_files_round_trip(tmp_path):
    """Every model file shipped in onnx's backend test data (simple, pytorch-*, light, real)."""
    assert len(_BACKEND_MODELS) > 100
    for path in _BACKEND_MODELS:
        save(load(path), tmp_path / "out.onnx")
        expected = onnx.load_model(path, load_external_data=False)
        assert_same_proto(expected, onnx.load_model(tmp_path / "out.onnx", load_external_data=False))


def test_external_data_round_trip_keeps_values(external_model, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    save(load(external_model), out_dir / "copy.onnx")
    assert sorted(os.listdir(out_dir)) == ["copy.onnx", "copy.onnx.data"]
    expected = onnx.load_model(external_model)
    actual = onnx.load_model(out_dir / "copy.onnx")
    for a, b in zip(expected.graph.initializer, actual.graph.initializer, strict=True):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
        assert a.data_location == b.data_location
    for proto in (expected, actual):
        for tensor in proto.graph.initializer:
            tensor.ClearField("raw_data")
            tensor.ClearField("external_data")
            tensor.ClearField("data_location")
    assert_same_proto(expected, actual)


def test_value_info_repeating_an_initializer_header_is_dropped_wherever_it_sits():
    from onnxsmith.ir._proto_extras import _drop_redundant_value_info

    graph = oh.make_graph([], "g", [], [], [numpy_helper.from_array(np.zeros((2, 3), np.float32), "w"),
                                            numpy_helper.from_array(np.zeros(4, np.int64), "k")])
    entries = [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1]),  # not an initializer
               oh.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3]),  # repeats w's header
               oh.make_tensor_value_info("k", TensorProto.INT64, ["n"]),  # says more than k's header
               oh.make_tensor_value_info("k", TensorProto.INT64, [4])]  # repeats k's header
    entries.append(oh.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3]))
    entries[-1].doc_string = ""  # explicitly set: not equal to the header's entry
    graph.value_info.extend(entries)
    expected = [e for e in entries if e.name == "x" or e in entries[2:3] or e.HasField("doc_string")]
    _drop_redundant_value_info(graph)
    assert list(graph.value_info) == expected
    leading = oh.make_graph([], "g", [], [], list(graph.initializer))
    leading.value_info.extend([entries[1], entries[3], entries[0]])
    _drop_redundant_value_info(leading)
    assert list(leading.value_info) == [entries[0]]


def test_a_sparse_initializer_inside_a_subgraph_survives_a_round_trip(tmp_path):
    sparse = oh.make_sparse_tensor(numpy_helper.from_array(np.array([2.0], np.float32), "s"),
                                   numpy_helper.from_array(np.array([1], np.int64), "s_idx"), [3])
    then = oh.make_graph([oh.make_node("Identity", ["s"], ["t"])], "then", [],
                         [oh.make_tensor_value_info("t", TensorProto.FLOAT, [3])], sparse_initializer=[sparse])
    other = oh.make_graph([oh.make_node("Identity", ["x"], ["e"])], "else", [],
                          [oh.make_tensor_value_info("e", TensorProto.FLOAT, [3])])
    graph = oh.make_graph([oh.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)], "g",
                          [oh.make_tensor_value_info("c", TensorProto.BOOL, []),
                           oh.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [oh.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    proto = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    saved = round_trip(proto, tmp_path)
    branches = {attr.name: attr.g for attr in saved.graph.node[0].attribute}
    assert len(branches["then_branch"].sparse_initializer) == 1
    assert_same_proto(proto, saved)
