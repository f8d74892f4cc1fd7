"""Generated inputs: integer inputs that index a table stay inside it."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.ir import GraphBuilder
from onnxsmith.verify import generate_inputs
from onnxsmith.verify._session import run_model
from onnxsmith.verify.inputs import index_bound


def _bert_like_embeddings() -> ir.Model:
    """token_type_ids -> Cast -> Gather of a 2-row table; input_ids -> Gather of a 30-row table."""
    b = GraphBuilder(opset=17)
    ids = b.input("input_ids", "int64", ["batch", "seq"])
    types = b.input("token_type_ids", "int64", ["batch", "seq"])
    words = b.Gather(b.const(np.ones((30, 4), np.float32)), ids)
    segments = b.Gather(b.const(np.ones((2, 4), np.float32)), b.Cast(b.Unsqueeze(types, b.const(np.array([0]))), to=7))
    b.output(b.Add(words, b.Squeeze(segments, b.const(np.array([0])))), "y", dtype="float32",
             shape=["batch", "seq", 4])
    return b.build()


def test_an_input_that_indexes_a_two_row_table_is_drawn_below_two():
    model = _bert_like_embeddings()
    assert index_bound(model.graph.inputs[1]) == 2
    assert index_bound(model.graph.inputs[0]) == 30
    for seed in range(5):
        feeds = generate_inputs(model, seed=seed, dims={"batch": 4, "seq": 16})
        assert feeds["token_type_ids"].max() <= 1 and feeds["input_ids"].max() <= 3  # int_high still caps
        run_model(model, feeds)  # onnxruntime accepts the indices


def test_gather_on_another_axis_and_unrelated_integers():
    b = GraphBuilder(opset=17)
    x = b.input("x", "int64", [5])
    n = b.input("n", "int64", [1])
    picked = b.Gather(b.const(np.ones((8, 3), np.float32)), x, axis=1)
    b.output(picked, "y", dtype="float32", shape=[8, 5])
    b.output(b.Add(n, n), "m", dtype="int64", shape=[1])
    model = b.build()
    assert index_bound(model.graph.inputs[0]) == 3
    assert index_bound(model.graph.inputs[1]) is None


def test_the_ids_of_a_fused_embedding_layer_normalization():
    b = GraphBuilder(opset=17)
    ids = b.input("ids", "int32", [1, 6])
    segments = b.input("segments", "int32", [1, 6])
    tables = [b.const(np.ones(shape, np.float32)) for shape in ((50, 4), (6, 4), (3, 4))]
    gamma, beta = b.const(np.ones(4, np.float32)), b.const(np.zeros(4, np.float32))
    ir.Node("com.microsoft", "EmbedLayerNormalization", [ids, segments, *tables, gamma, beta], num_outputs=2)
    assert index_bound(ids) == 50 and index_bound(segments) == 3
