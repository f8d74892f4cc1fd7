"""dedup-initializers: exact byte comparison, interface initializers, lazy and chunked reading."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.ir import GraphBuilder, load, parse_text, save
from onnxsmith.passes.cleanup import DedupInitializers
from onnxsmith.passes.cleanup import dedup_initializers as dedup

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def test_identical_initializers_merge_into_the_first(golden):
    report = golden("dedup-initializers", f"""{HEADER}
        g (float[2] x) => (float[2] y) <float[2] a = {{1, 2}}, float[2] b = {{1, 2}}, float[2] c = {{2, 1}},
                                         float[2] d = {{1, 2}}> {{
            p = Add(x, a)
            q = Mul(p, b)
            r = Sub(q, c)
            y = Div(r, d)
        }}""", f"""{HEADER}
        g (float[2] x) => (float[2] y) <float[2] a = {{1, 2}}, float[2] c = {{2, 1}}> {{
            p = Add(x, a)
            q = Mul(p, a)
            r = Sub(q, c)
            y = Div(r, a)
        }}""")
    assert report.records[0].stats == {"removed_initializers": 2, "saved_bytes": 16}


def test_same_bytes_with_another_dtype_or_shape_and_negative_zero_stay_apart(golden):
    text = f"""{HEADER}
        g (float[2] x) => (float y) <float[2] a = {{0, 0}}, int32[2] b = {{0, 0}}, float[2, 1] c = {{0, 0}},
                                         float[2] d = {{0, -0.0}}> {{
            bf = Cast <to = 1> (b)
            p = Add(x, a)
            q = Add(p, bf)
            r = Add(q, c)
            s = Add(r, d)
            y = ReduceSum <keepdims = 0> (s)
        }}"""
    golden("dedup-initializers", text, text)


def test_graph_inputs_and_outputs_are_left_alone(helpers):
    model = parse_text(f"""{HEADER}
        g (float[2] x, float[2] a) => (float[2] y, float[2] c) <float[2] a = {{1, 2}}, float[2] b = {{1, 2}},
                                                               float[2] c = {{1, 2}}> {{
            p = Add(x, a)
            y = Mul(p, b)
        }}""")
    assert not helpers.run("dedup-initializers", model).modified
    assert set(model.graph.initializers) == {"a", "b", "c"}


def test_subgraph_initializers_are_deduplicated_within_their_graph(helpers):
    model = parse_text(f"""{HEADER}
        g (bool c, float[2] x) => (float[2] y) {{
            y = If(c) <
                then_branch = t () => (float[2] o) <float[2] k1 = {{3, 4}}, float[2] k2 = {{3, 4}}> {{
                    a = Add(x, k1)
                    o = Mul(a, k2)
                }},
                else_branch = e () => (float[2] o2) {{ o2 = Identity(x) }}
            >
        }}""")
    helpers.run("dedup-initializers", model)
    then_branch = next(iter(model.graph)).attributes["then_branch"].as_graph()
    assert list(then_branch.initializers) == ["k1"]


def _large_model(path, *, equal: bool, external: bool):
    """Two 64 KiB initializers (equal, or differing in their last element only)."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [128, 128])
    first = np.arange(128 * 128, dtype=np.float32).reshape(128, 128)
    second = first.copy()
    if not equal:
        second[-1, -1] = -1
    y = b.Add(b.Add(x, b.initializer("first", first)), b.initializer("second", second))
    b.output(y, "y")
    save(b.build(), path, external_data=external)
    return load(path)


def test_large_tensors_compare_by_prefix_digest_then_bytes_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(dedup, "_CHUNK", 1000)
    monkeypatch.setattr(dedup, "_PREFIX", 100)
    for external in (False, True):
        same = _large_model(tmp_path / f"same{external}.onnx", equal=True, external=external)
        assert DedupInitializers()(same).modified
        assert list(same.graph.initializers) == ["first"]
        different = _large_model(tmp_path / f"diff{external}.onnx", equal=False, external=external)
        assert not DedupInitializers()(different).modified


def test_a_digest_collision_does_not_merge_different_bytes(tmp_path, monkeypatch):
    model = _large_model(tmp_path / "m.onnx", equal=False, external=False)
    monkeypatch.setattr(dedup, "_PREFIX", 100)
    monkeypatch.setattr(dedup, "_digest", lambda tensor: b"collision")
    assert not DedupInitializers()(model).modified


def test_external_tensors_are_read_from_their_file_without_mapping(tmp_path):
    model = _large_model(tmp_path / "m.onnx", equal=True, external=True)
    tensors = [v.const_value for v in model.graph.initializers.values()]
    assert all(isinstance(t, ir.ExternalTensor) for t in tensors)
    DedupInitializers()(model)
    assert all(t.raw is None for t in tensors)


def test_tensors_above_max_size_or_without_a_same_shaped_twin_are_never_read(tmp_path, monkeypatch):
    read: list[str] = []
    real_chunks = dedup._chunks
    monkeypatch.setattr(dedup, "_chunks", lambda tensor: (read.append(tensor.name), real_chunks(tensor))[1])
    model = _large_model(tmp_path / "m.onnx", equal=True, external=True)
    assert not DedupInitializers(max_size=1000)(model).modified
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [128, 128])
    b.output(b.Add(b.Add(x, b.const(np.ones((128, 128), np.float32))), b.const(np.ones((1, 128), np.float32))), "y")
    assert not DedupInitializers()(b.build()).modified
    assert read == []


def test_string_initializers_compare_by_their_strings(helpers):
    model = parse_text("""
        <ir_version: 9, opset_import: ["" : 19]>
        g (string[2] x) => (bool[2] y) <string[2] a = {"p", "q"}, string[2] b = {"p", "q"}, string[2] c = {"pq", ""}> {
            e1 = Equal(x, a)
            e2 = Equal(x, b)
            e3 = Equal(x, c)
            o = Or(e1, e2)
            y = Or(o, e3)
        }""")
    helpers.run("dedup-initializers", model)
    assert sorted(model.graph.initializers) == ["a", "c"]


def test_large_tensors_that_differ_early_are_told_apart_by_their_prefix_alone(tmp_path, monkeypatch):
    digested: list[str] = []
    real_digest = dedup._digest
    monkeypatch.setattr(dedup, "_digest", lambda tensor: (digested.append(tensor.name), real_digest(tensor))[1])
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [256, 256])
    first = np.arange(256 * 256, dtype=np.float32).reshape(256, 256)
    y = b.Add(b.Add(x, b.initializer("first", first)), b.initializer("second", first[::-1].copy()))
    b.output(y, "y")
    assert not DedupInitializers()(b.build()).modified
    assert digested == []


def test_raw_data_from_a_file_and_in_memory_arrays_compare_by_the_same_bytes(tmp_path):
    """A loaded initializer is compared by its raw_data, one made by a pass by its array: equal values merge."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [3])
    values = np.array([1.5, -2.0, 0.25], np.float32)
    h = b.Add(x, b.const(values.copy()))
    b.output(b.Mul(h, b.const(np.array([1, 2, 3], np.int8).astype(np.float32))), "y", dtype="float32", shape=[3])
    save(b.build(), tmp_path / "m.onnx")
    model = load(tmp_path / "m.onnx")
    assert all(type(v.const_value) is ir.serde.TensorProtoTensor for v in model.graph.initializers.values())
    twin = ir.Value(name="twin", const_value=ir.Tensor(values.copy(), name="twin"), type=ir.TensorType(ir.DataType.FLOAT),
                    shape=ir.Shape([3]))
    model.graph.register_initializer(twin)
    mul = next(n for n in model.graph if n.op_type == "Mul")
    mul.replace_input_with(0, None)
    add = next(n for n in model.graph if n.op_type == "Add")
    sub = ir.Node("", "Sub", [add.outputs[0], twin])
    model.graph.insert_after(add, sub)
    mul.replace_input_with(0, sub.outputs[0])
    result = DedupInitializers().run(model, None)
    assert result.stats["removed_initializers"] == 1
    assert sub.inputs[1] is add.inputs[1]


def test_packed_4bit_raw_data_is_not_compared_with_unpacked_array_bytes():
    packed = ir.serde.TensorProtoTensor(ir.serde.serialize_tensor(ir.Tensor(np.array([1, 2], np.int8),
                                                                             dtype=ir.DataType.INT4, name="p")))
    assert dedup._small_bytes(packed) == b"".join(dedup._chunks(packed))
