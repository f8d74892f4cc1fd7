"""ep_check: node placement from onnxruntime's profile, optimized-graph histogram, unavailable providers."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

from onnxsmith.codegen import EpReport, NodePlacement, ep_check, get_target
from onnxsmith.ir import GraphBuilder


def _conv_model() -> ir.Model:
    rng = np.random.default_rng(0)
    b = GraphBuilder(opset=17, opsets={"com.microsoft": 1})
    x = b.input("x", shape=["N", 3, 8, 8])
    y = b.Conv(x, b.const(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)), _name="conv")
    y = b.op("Gelu", y, _domain="com.microsoft", _name="gelu")
    b.output(b.HardSwish(y, _name="hardswish"), "y")
    return b.build()


def _quantized_conv_model() -> ir.Model:
    """x -> Q/DQ (u8) -> Conv with DQ'd int8 per-channel weights -> Q/DQ (u8): onnxruntime fuses it to QLinearConv."""
    rng = np.random.default_rng(0)
    b = GraphBuilder(opset=17)
    x = b.input("x", shape=[1, 3, 8, 8])
    scale, zero = b.const(np.float32(0.05)), b.const(np.uint8(128))
    xq = b.DequantizeLinear(b.QuantizeLinear(x, scale, zero), scale, zero)
    w = b.const(rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8))
    wq = b.DequantizeLinear(w, b.const(np.full(4, 0.01, np.float32)), b.const(np.zeros(4, np.int8)), axis=0)
    y = b.Conv(xq, wq)
    b.output(b.DequantizeLinear(b.QuantizeLinear(y, scale, zero), scale, zero), "y")
    return b.build()


def test_cpu_runs_every_node_of_a_small_model_on_cpu():
    report = ep_check(_conv_model(), get_target("cpu"))
    assert report.ok, report.format()
    assert report.placements and {p.provider for p in report.placements} == {"CPUExecutionProvider"}
    assert report.fallbacks == [] and report.unsupported == []
    assert report.optimized_ops.get("com.microsoft::Gelu") == 1
    assert "HardSwish" not in report.optimized_ops  # a function op: onnxruntime inlined it
    assert report.format().startswith("ep-check cpu (CPUExecutionProvider): ok: all")
    assert json.loads(json.dumps(report.to_dict()))["status"] == "ok"


@pytest.mark.parametrize("target", ["cpu", "generic"])  # generic is checked on the CPU provider too
def test_quantized_conv_is_counted_as_an_integer_kernel(target):
    report = ep_check(_quantized_conv_model(), get_target(target))
    assert report.ok, report.format()
    assert sum(n for op, n in report.integer_ops.items() if op.endswith("QLinearConv")) == 1, report.optimized_ops
    assert report.qdq_left == {"QuantizeLinear": 1, "DequantizeLinear": 1}  # at the graph input and output
    assert "Q/DQ left unfused: DequantizeLinear 1, QuantizeLinear 1" in report.format()


def test_an_op_without_a_cpu_kernel_is_reported():
    b = GraphBuilder(opset=17, opsets={"com.microsoft": 1})
    x = b.input("x", shape=[2, 4])
    b.output(b.op("BiasSoftmax", x, x, _domain="com.microsoft", _name="softmax", is_inner_broadcast=0), "y")
    report = ep_check(b.build(infer_types=False), get_target("cpu"))
    assert report.status == "load-failed"
    assert "BiasSoftmax" in report.error and "/tmp" not in report.error
    [node] = report.unsupported
    assert (node.node, node.op) == ("softmax", "com.microsoft::BiasSoftmax")


def test_a_custom_domain_op_is_reported():
    b = GraphBuilder(opset=17, opsets={"my.ops": 1})
    b.output(b.op("Frobnicate", b.input("x", shape=[2]), _domain="my.ops", _name="frob"), "y", dtype="float32")
    report = ep_check(b.build(infer_types=False), get_target("cpu"))
    assert report.status == "load-failed"
    assert [u.op for u in report.unsupported] == ["my.ops::Frobnicate"]


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="needs a CPU-only onnxruntime")
def test_an_absent_provider_falls_back_to_the_static_check():
    b = GraphBuilder(opset=17)
    x = b.input("x", dtype="uint8", shape=[1, 1, 4, 4])
    s, z = b.const(np.float32(0.1)), b.const(np.uint8(0))
    w = b.const(np.ones((1, 1, 1, 1), np.uint8))
    b.output(b.op("QLinearConv", x, s, z, w, s, z, s, z, _name="qconv"), "y")
    report = ep_check(b.build(), get_target("cuda"))
    assert report.status == "provider-unavailable" and not report.ok
    assert [u.node for u in report.unsupported] == ["qconv"]
    assert "CUDAExecutionProvider is not in this onnxruntime build" in report.notes[0]
    assert "static check only" in report.format()


def test_report_lists_fallbacks():
    placements = [NodePlacement(f"n{i}", "Shape", "CPUExecutionProvider") for i in range(12)]
    placements.append(NodePlacement("mm", "MatMul", "CUDAExecutionProvider"))
    report = EpReport("cuda", "CUDAExecutionProvider", "fallback", placements=placements)
    assert [p.node for p in report.fallbacks] == [f"n{i}" for i in range(12)]
    text = report.format()
    assert "FALLBACK: 12 of 13 executed nodes on another provider" in text
    assert "... and 2 more" in text
