"""The ``cleanup`` pipeline end to end: exporter-like models, Loop bodies, the synthetic generator."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.ir import GraphBuilder, count_nodes, load, op_histogram, parse_text, save
from onnxsmith.passes import PassContext, PassManager, build_pipeline, get_pass, list_pipelines
from onnxsmith.passes.cleanup import CLEANUP_PIPELINE

TOOLS = Path(__file__).resolve().parents[3] / "tools"


def _synthetic():
    spec = importlib.util.spec_from_file_location("synthetic", TOOLS / "synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cleanup_is_a_registered_pipeline_of_registered_passes():
    assert list_pipelines()["cleanup"].spec == CLEANUP_PIPELINE
    passes = build_pipeline("cleanup")
    assert [p.name for p in passes] == CLEANUP_PIPELINE.split(",")
    for p in passes:
        assert get_pass(p.name).summary()


def test_synthetic_model_shrinks_to_its_real_computation_with_identical_outputs(helpers):
    model = _synthetic().make_model(500, seed=3)
    blocks = sum(1 for n in model.graph if n.op_type == "MatMul")
    ctx = PassContext()
    report = PassManager("cleanup", verify="numeric").run(model, ctx)
    assert all(d["max_abs"] == 0.0 for d in report.numeric)
    assert op_histogram(model) == {"MatMul": blocks, "Add": 2 * blocks, "Relu": blocks, "Sigmoid": blocks,
                                   "Mul": 2 * blocks}
    assert len(model.graph.initializers) < 2 * blocks + 4
    assert {"shapes", "topologically-sorted"} <= ctx.properties
    helpers.assert_idempotent("cleanup", model)


def test_exporter_shape_arithmetic_on_static_dims_disappears(golden):
    golden("cleanup", """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 3, 4] x) => (float[2, 12] y) {
            s = Shape(x)
            i0 = Constant <value = int64 {0}> ()
            batch = Gather <axis = 0> (s, i0)
            b1 = Unsqueeze(batch, i0)
            minus_one = Constant <value = int64[1] {-1}> ()
            target = Concat <axis = 0> (b1, minus_one)
            flat = Reshape(x, target)
            same = Reshape(flat, target)
            y = Relu(same)
        }
    """, """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 3, 4] x) => (float[2, 12] y) <int64[2] target = {2, -1}> {
            flat = Reshape(x, target)
            y = Relu(flat)
        }
    """)


def test_loop_bodies_are_cleaned_and_outputs_stay_identical(helpers):
    model = parse_text("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) <int64 trips = {3}, bool go = {1}> {
            y = Loop(trips, go, x) <body = body (int64 i, bool cond, float[2] acc) => (bool cond_out, float[2] acc_out) {
                cond_out = Identity(cond)
                two = Constant <value = float {2}> ()
                half = Constant <value = float {0.5}> ()
                one = Mul(two, half)
                scaled = Mul(acc, one)
                again = Mul(acc, one)
                dead = Exp(acc)
                acc_out = Add(scaled, again)
            }>
        }
    """)
    report = PassManager("cleanup", verify="numeric").run(model)
    assert report.numeric[0]["max_abs"] == 0.0
    body = next(iter(model.graph)).attributes["body"].as_graph()
    assert [n.op_type for n in body] == ["Identity", "Add"]
    helpers.assert_idempotent("cleanup", model)


def test_graph_interface_is_unchanged(helpers):
    model = _synthetic().make_model(3000, seed=1)
    before = [(v.name, v.dtype, str(v.shape)) for v in (*model.graph.inputs, *model.graph.outputs)]
    helpers.run("cleanup", model, verify="structural")
    assert [(v.name, v.dtype, str(v.shape)) for v in (*model.graph.inputs, *model.graph.outputs)] == before


@pytest.mark.parametrize("seed", [0, 7])
def test_generator_is_deterministic_and_its_cli_writes_a_loadable_model(tmp_path, seed):
    synthetic = _synthetic()
    a, b = synthetic.make_model(400, seed), synthetic.make_model(400, seed)
    assert count_nodes(a) == count_nodes(b)
    assert all(np.array_equal(v.const_value.numpy(), b.graph.initializers[k].const_value.numpy())
               for k, v in a.graph.initializers.items())
    out = tmp_path / "m.onnx"
    done = subprocess.run([sys.executable, str(TOOLS / "synthetic.py"), str(out), "--nodes", "400", "--seed", str(seed)],
                          capture_output=True, text=True, check=True)
    assert "nodes" in done.stdout
    assert count_nodes(load(out)) == count_nodes(a)


def test_cleanup_never_maps_external_weights_it_does_not_fold(tmp_path):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 256])
    rng = np.random.default_rng(0)
    h = b.Relu(b.MatMul(x, b.initializer("w1", rng.standard_normal((256, 256)).astype(np.float32))))
    h = b.Identity(b.MatMul(h, b.initializer("w2", rng.standard_normal((256, 256)).astype(np.float32))))
    b.output(h, "y")
    save(b.build(), tmp_path / "m.onnx", external_data=True)
    model = load(tmp_path / "m.onnx")
    weights = [v.const_value for v in model.graph.initializers.values()]
    assert len(weights) == 2 and all(isinstance(t, ir.ExternalTensor) for t in weights)
    PassManager("cleanup").run(model)
    assert op_histogram(model) == {"MatMul": 2, "Relu": 1}
    assert all(t.raw is None for t in weights)
