"""The lean inference proto of ``infer_shapes`` and the one-walk ``census`` of the pass manager
(alone, and taken by the structural verifier in ``verified_census``).

The inference proto leaves out what ONNX shape inference does not read, so inference on it must
give every value the same type as inference on the full serialization of the model.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from hypothesis import HealthCheck, given, settings

from onnxsmith.ir import count_nodes, op_histogram, tensor_bytes
from onnxsmith.ir._proto_extras import deserialize
from onnxsmith.ir.queries import census
from onnxsmith.ir.shapes import _inference_proto
from onnxsmith.verify.strategies import models
from onnxsmith.verify.structural import verified_census


def _inferred_types(proto: onnx.ModelProto) -> dict[str, bytes]:
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    found: dict[str, bytes] = {}

    def collect(graph: onnx.GraphProto, prefix: str) -> None:
        for info in (*graph.value_info, *graph.output):
            found[prefix + info.name] = info.type.SerializeToString(deterministic=True)
        for node in graph.node:
            for attr in node.attribute:
                for sub in (attr.g,) if attr.HasField("g") else attr.graphs:
                    collect(sub, f"{prefix}{sub.name}/")

    collect(inferred.graph, "")
    return found


def _assert_same_inference(model: ir.Model) -> None:
    graph = model.graph
    full = ir.serde.serialize_model(model)
    lean = _inference_proto(model)
    expected = _inferred_types(full)
    actual = _inferred_types(lean)
    assert {k: v for k, v in actual.items() if k in expected} == expected
    assert [n.op_type for n in lean.graph.node] == [n.op_type for n in graph]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models(max_nodes=10))
def test_lean_inference_proto_infers_what_the_full_model_infers(model):
    _assert_same_inference(model)


def test_lean_inference_proto_keeps_functions_subgraphs_and_annotations(rich_proto, tmp_path):
    model = deserialize(rich_proto, tmp_path)
    _assert_same_inference(model)
    lean = _inference_proto(model)
    assert [f.name for f in lean.functions] == [f.name for f in model.functions.values()]
    assert {(o.domain, o.version) for o in lean.opset_import} == set(model.graph.opset_imports.items())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models(max_nodes=10))
def test_census_matches_the_separate_queries(model):
    nodes, size, ops = census(model)
    assert (nodes, size, ops) == (count_nodes(model), tensor_bytes(model), op_histogram(model))


def test_census_counts_subgraphs_and_custom_domains(rich_proto, tmp_path):
    model = deserialize(rich_proto, tmp_path)
    nodes, size, ops = census(model)
    assert (nodes, size, ops) == (count_nodes(model), tensor_bytes(model), op_histogram(model))
    assert nodes > len(model.graph)
    assert verified_census(model) == (nodes, size, ops)  # the verifier's walk counts the same


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models(max_nodes=10))
def test_verified_census_matches_census(model):
    assert verified_census(model) == census(model)


def test_nbytes_matches_the_tensor_and_forgets_tensors_that_die():
    import gc
    import weakref

    import numpy as np

    from onnxsmith.ir import queries

    proto = onnx.numpy_helper.from_array(np.zeros((3, 5), np.float16), "t")
    tensor = ir.serde.TensorProtoTensor(proto)
    assert queries.nbytes(tensor) == queries.nbytes(tensor) == tensor.nbytes == 30
    assert tensor in queries._PROTO_TENSOR_BYTES
    alive = weakref.ref(tensor)
    del tensor
    gc.collect()
    assert alive() is None  # the cache does not keep it alive
    for array in (np.zeros((2, 3), np.float32), np.zeros(0, np.int64), np.array(1.5)):
        assert queries.nbytes(ir.Tensor(array)) == ir.Tensor(array).nbytes == array.nbytes
    packed = ir.Tensor(np.zeros(7, np.uint8), dtype=ir.DataType.INT4)  # unpacked array, packed size
    assert queries.nbytes(packed) == packed.nbytes == 4
