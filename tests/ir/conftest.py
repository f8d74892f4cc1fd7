"""Model files for the IR tests: a model using every ONNX feature, and external-data models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh


def _meta(proto, **entries: str) -> None:
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)


def _info(name: str, shape: list[int] | None, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return oh.make_tensor_value_info(name, elem, shape)


def _control_flow_nodes() -> list[onnx.NodeProto]:
    """An If, a Loop and a Scan over the graph input ``x`` ([2] float)."""
    then_branch = oh.make_graph([oh.make_node("Identity", ["x"], ["then_out"], name="then_id")], "then", [],
                                [_info("then_out", [2])])
    else_branch = oh.make_graph([oh.make_node("Neg", ["x"], ["else_out"], name="else_neg")], "else", [],
                                [_info("else_out", [2])])
    _meta(else_branch, branch="else")
    loop_body = oh.make_graph(
        [oh.make_node("Add", ["acc_in", "x"], ["acc_out"]), oh.make_node("Identity", ["cond_in"], ["cond_out"])],
        "loop_body",
        [_info("iter", [], TensorProto.INT64), _info("cond_in", [], TensorProto.BOOL), _info("acc_in", [2])],
        [_info("cond_out", [], TensorProto.BOOL), _info("acc_out", [2])],
    )
    scan_body = oh.make_graph(
        [oh.make_node("Add", ["sum_in", "row"], ["sum_out"]), oh.make_node("Identity", ["sum_out"], ["row_out"])],
        "scan_body", [_info("sum_in", [2]), _info("row", [2])], [_info("sum_out", [2]), _info("row_out", [2])],
    )
    if_node = oh.make_node("If", ["cond"], ["if_out"], name="if_node", doc_string="branch on cond",
                           then_branch=then_branch, else_branch=else_branch)
    _meta(if_node, origin="exporter")
    return [
        if_node,
        oh.make_node("Loop", ["trips", "cond", "x"], ["loop_out"], name="loop_node", body=loop_body),
        oh.make_node("Scan", ["x", "rows"], ["scan_sum", "scan_rows"], name="scan_node", body=scan_body,
                     num_scan_inputs=1),
    ]


def _functions() -> list[onnx.FunctionProto]:
    """``local.Poly`` (with an attribute default and value_info) and its overload ``v2``."""
    poly = oh.make_function(
        "local", "Poly", ["a"], ["b"],
        [oh.make_node("Mul", ["a", "a"], ["sq"]), oh.make_node("Add", ["sq", "a"], ["b"])],
        [oh.make_opsetid("", 17)], attributes=["unused"], doc_string="a*a + a",
    )
    poly.attribute_proto.append(oh.make_attribute("alpha", 1.0))
    poly.value_info.append(_info("sq", [2]))
    _meta(poly, kind="polynomial")
    overload = oh.make_function("local", "Poly", ["a"], ["b"], [oh.make_node("Neg", ["a"], ["b"])],
                                [oh.make_opsetid("", 17)])
    overload.overload = "v2"
    return [poly, overload]


def rich_model() -> onnx.ModelProto:
    """A small valid model that uses every part of the format onnxsmith must carry through a round trip."""
    weight = numpy_helper.from_array(np.arange(2, dtype=np.float32), "w")
    weight.doc_string = "a weight"
    _meta(weight, quantized="no")
    sparse = oh.make_sparse_tensor(numpy_helper.from_array(np.array([1.5, -2.0], np.float32), "sparse_w"),
                                   numpy_helper.from_array(np.array([0, 3], np.int64), "sparse_w_idx"), [4])
    nodes = [
        *_control_flow_nodes(),
        oh.make_node("Poly", ["x"], ["poly_out"], name="poly_call", domain="local", alpha=2.0),
        oh.make_node("Poly", ["x"], ["poly2_out"], name="poly2_call", domain="local", overload="v2"),
        oh.make_node("Add", ["x", "w"], ["mid"], name="add_w"),
        oh.make_node("Mul", ["mid", "mid"], ["sq_out"], name="square"),
        oh.make_node("Identity", ["sparse_w"], ["sparse_out"], name="sparse_id"),
    ]
    mid_info = _info("mid", [2])
    mid_info.doc_string = "x + w"
    _meta(mid_info, note="intermediate")
    outputs = [_info(n, [2]) for n in ("if_out", "loop_out", "scan_sum", "poly_out", "poly2_out", "sq_out")]
    outputs += [_info("scan_rows", [3, 2]), _info("sparse_out", [4])]
    outputs[0].doc_string = "the if result"
    graph = oh.make_graph(
        nodes, "main",
        [_info("x", [2]), _info("cond", [], TensorProto.BOOL), _info("trips", [], TensorProto.INT64),
         _info("rows", [3, 2])],
        outputs, initializer=[weight], sparse_initializer=[sparse], doc_string="main graph",
        value_info=[mid_info],
    )
    _meta(graph, stage="exported")
    annotation = graph.quantization_annotation.add(tensor_name="mid")
    annotation.quant_parameter_tensor_names.add(key="SCALE_TENSOR", value="w")
    model = oh.make_model(
        graph, functions=_functions(), producer_name="unit-test", producer_version="1.2.3", domain="org.example",
        model_version=7, doc_string="every feature at once",
        opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("local", 1), oh.make_opsetid("com.microsoft", 1)],
    )
    model.ir_version = 11  # multi-device configurations need IR 11
    _meta(model, author="tests", license="Apache-2.0")
    model.configuration.add(name="pair", num_devices=2, device=["cuda:0", "cuda:1"])
    next(n for n in model.graph.node if n.name == "square").device_configurations.add(
        configuration_id="pair", pipeline_stage=1)
    training = model.training_info.add()
    training.algorithm.CopyFrom(oh.make_graph([], "algorithm", [], []))
    onnx.checker.check_model(model)
    return model


def write_external_model(folder: Path, n_weights: int, weight_elems: int, *, name: str = "model.onnx",
                         chunk_elems: int = 1 << 20) -> Path:
    """Writes ``y = ((x @ W0) + B0) @ W1 ...`` with square float32 weights stored in ``<name>.data``.

    The data file is streamed chunk by chunk, never held in memory, so this scales to gigabytes.
    Weights are ``W_i = ((i + 1) / side) * I`` on the diagonal plus a small constant elsewhere, so
    outputs stay finite and can be checked.

    Args:
        folder: Where to write the model and its data file.
        n_weights: Number of MatMul weights (one Add bias of ``side`` floats follows each).
        weight_elems: Elements per weight; must be a perfect square ``side * side``.
        name: File name of the model.
        chunk_elems: Elements generated at a time.
    """
    side = math.isqrt(weight_elems)
    assert side * side == weight_elems, "weight_elems must be a perfect square"
    data_name = f"{name}.data"
    initializers, nodes, offset = [], [], 0
    with open(folder / data_name, "wb") as data:
        for i in range(n_weights):
            weight = onnx.TensorProto(name=f"W{i}", data_type=TensorProto.FLOAT, dims=[side, side],
                                      data_location=TensorProto.EXTERNAL)
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(4 * weight_elems))):
                weight.external_data.add(key=key, value=value)
            _stream_weight(data, side, (i + 1) / side, chunk_elems)
            offset += 4 * weight_elems
            initializers.append(weight)
            initializers.append(numpy_helper.from_array(np.full(side, 0.5, np.float32), f"B{i}"))
            prev = "x" if i == 0 else f"h{i - 1}"
            nodes.append(oh.make_node("MatMul", [prev, f"W{i}"], [f"m{i}"], name=f"matmul{i}"))
            nodes.append(oh.make_node("Add", [f"m{i}", f"B{i}"], [f"h{i}"], name=f"add{i}"))
    graph = oh.make_graph(nodes, "chain", [_info("x", [1, side])], [_info(f"h{n_weights - 1}", [1, side])],
                          initializers)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 9
    path = folder / name
    onnx.save_model(model, path)
    return path


def _stream_weight(file, side: int, diagonal: float, chunk_elems: int) -> None:
    rows_per_chunk = max(1, chunk_elems // side)
    for start in range(0, side, rows_per_chunk):
        rows = min(rows_per_chunk, side - start)
        block = np.full((rows, side), 1e-4, np.float32)
        block[np.arange(rows), np.arange(start, start + rows)] = diagonal
        file.write(block.tobytes())


@pytest.fixture
def rich_proto() -> onnx.ModelProto:
    return rich_model()


@pytest.fixture
def tiny_proto() -> onnx.ModelProto:
    """``y = x + w`` with a 4-float initializer."""
    graph = oh.make_graph([oh.make_node("Add", ["x", "w"], ["y"], name="add")], "tiny", [_info("x", [4])],
                          [_info("y", [4])], [numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 9
    return model


@pytest.fixture
def external_model(tmp_path: Path) -> Path:
    """A 3-weight MatMul/Add chain (3 x 64 KiB of external data) in its own folder."""
    folder = tmp_path / "src"
    folder.mkdir()
    return write_external_model(folder, 3, 128 * 128)


@pytest.fixture
def make_external_model():
    """The :func:`write_external_model` generator, for tests that need other sizes."""
    return write_external_model
