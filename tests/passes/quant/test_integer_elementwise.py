"""Element-wise ops between integer kernels: a residual Add runs as QLinearAdd only where that removes Q/DQ.

The criterion (:mod:`onnxsmith.passes.quant.integer_elementwise`): every input is integer data and
every reader of the output reads integers. Checked on the plan, on onnxruntime's optimized graph
(``ep_check``: no Q/DQ left between the first and the last Conv), and numerically: the integer
model stays within the error bound implied by the scales of the plan.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from quant_models import mlp_block, residual_net, samples
from quant_models import quantize as quantize_model

from onnxsmith.codegen import ep_check, get_target
from onnxsmith.ir import GraphBuilder
from onnxsmith.passes.quant import QuantPlan
from onnxsmith.passes.quant.planner import PlanSettings, select_nodes
from onnxsmith.passes.quant.qdq_nodes import constant_array, params_for_spec
from onnxsmith.verify._session import make_session, run_model


def _producer(model: ir.Model, node_name: str, index: int) -> ir.Node:
    node = next(n for n in model.graph if n.name == node_name)
    producer = node.inputs[index].producer()
    assert producer is not None
    return producer


def test_residual_add_between_convs_runs_as_qlinearadd_with_no_qdq_between_the_first_and_last_conv():
    model = residual_net()
    data = samples(model)

    _, plan = quantize_model(model, data)
    report = ep_check(model, get_target("cpu"), data[0])

    assert plan.nodes["block1_add"].action == "quantize"
    assert plan.nodes["block1_relu2"].role == "fused-activation"
    assert report.integer_ops == {"com.microsoft::QLinearConv": 4, "com.microsoft::QLinearAdd": 1}
    assert report.qdq_left == {"QuantizeLinear": 1, "DequantizeLinear": 1}  # the input x, the output y


def test_the_add_reads_the_quantized_value_the_next_conv_reads():
    model = residual_net()

    quantize_model(model, samples(model))

    add_dq, conv_dq = _producer(model, "block1_add", 1), _producer(model, "block1_conv1", 0)
    assert add_dq.op_type == conv_dq.op_type == "DequantizeLinear"
    assert add_dq.inputs[0] is conv_dq.inputs[0]  # one QuantizeLinear of the stem's Relu output
    assert add_dq.inputs[0].producer().inputs[0].name == "stem_relu_out"


def test_add_with_a_float_only_reader_stays_float():
    model = residual_net(tail="sigmoid")

    _, plan = quantize_model(model, samples(model))

    assert plan.nodes["block1_add"].action == "skip"
    assert plan.nodes["block1_add"].reason == "not between integer kernels: Sigmoid 'head' reads its output in float"
    assert "block1_relu2" not in plan.nodes and "block1_relu2_out" not in plan.values
    assert next(n for n in model.graph if n.name == "head").inputs[0].producer().op_type == "Relu"


def test_in_a_chain_only_the_add_before_float_ops_stays_float_and_reads_its_neighbour_dequantized():
    model = residual_net(blocks=2, tail="pool")
    data = samples(model)

    _, plan = quantize_model(model, data)
    report = ep_check(model, get_target("cpu"), data[0])

    assert plan.nodes["block1_add"].action == "quantize"
    assert plan.nodes["block2_add"].reason == (
        "not between integer kernels: GlobalAveragePool 'head' reads its output in float")
    assert _producer(model, "block2_add", 1).op_type == "DequantizeLinear"
    assert report.integer_ops == {"com.microsoft::QLinearConv": 5, "com.microsoft::QLinearAdd": 1}
    assert report.qdq_left == {"QuantizeLinear": 1, "DequantizeLinear": 2}  # x; the last Add's two inputs


def test_add_after_a_kernel_writing_floats_is_not_even_calibrated():
    model = mlp_block()  # MatMul -> Add(x): MatMulIntegerToFloat writes floats

    _, plan = quantize_model(model, samples(model), "annotate-quant")

    assert "residual" not in plan.nodes and "add1" not in plan.nodes


def test_element_wise_candidates_need_integer_sources_all_the_way_up():
    b = GraphBuilder(opset=17)
    h = b.Conv(b.input("x", "float32", [1, 2, 4, 4]), b.initializer("w", np.ones((2, 2, 1, 1), np.float32)))
    mean = b.ReduceMean(h, b.const(np.array([1], np.int64)), _name="mean")
    square = b.Mul(mean, mean, _name="square")
    b.output(b.Mul(square, square, _name="fourth"), "y")
    settings = PlanSettings(linear_ops=frozenset({"Conv"}), activation_dtype="uint8", weight_dtype="int8",
                            symmetric_activations=False, elementwise_ops=frozenset({"Mul"}))

    selection = select_nodes(b.build().graph, settings)

    assert selection.elementwise == []  # 'fourth' reads a Mul, but one whose input is a float ReduceMean


def test_generic_target_keeps_the_add_float():
    model = residual_net()

    _, plan = quantize_model(model, samples(model), "annotate-quant", target="generic")

    assert "block1_add" not in plan.nodes  # no QLinearAdd: the runtime decides about QDQ element-wise ops


def _scale(plan: QuantPlan, values: dict[str, ir.Value], name: str) -> np.ndarray:
    return params_for_spec(plan.values[name], values[name]).scale.astype(np.float64)


def _error_bound(model: ir.Model, plan: QuantPlan, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact output of a 1x1-Conv/Relu/Add float model and a bound on the quantized model's error.

    Per value ``v`` with bound ``e_v`` on ``|v' - v|``: a quantized input adds ``s/2``; a 1x1 Conv
    gives ``sum_c (|w| + s_w/2) e_x + (s_w/2) |x|`` plus ``s_x s_w / 2`` for its int32 bias;
    Relu keeps the bound, Add sums them; a quantized output adds ``s_y / 2``.
    """
    values = {v.name: v for v in model.graph.inputs} | dict(model.graph.initializers)
    exact = {"x": x.astype(np.float64)}
    bound = {"x": np.full(x.shape, _scale(plan, values, "x") / 2)}
    for node in model.graph:
        out = node.outputs[0]
        values[out.name] = out
        a = node.inputs[0].name
        if node.op_type == "Conv":
            w_value, b_value = node.inputs[1], node.inputs[2]
            w = constant_array(w_value).astype(np.float64)[:, :, 0, 0]
            s_w = _scale(plan, values, w_value.name).reshape(-1)
            s_x = _scale(plan, values, a)
            exact[out.name] = np.einsum("oc,nchw->nohw", w, exact[a]) + constant_array(b_value)[None, :, None, None]
            bound[out.name] = (np.einsum("oc,nchw->nohw", np.abs(w) + s_w[:, None] / 2, bound[a])
                               + np.einsum("o,nchw->nohw", s_w / 2, np.abs(exact[a]))
                               + (s_x * s_w / 2)[None, :, None, None])
        elif node.op_type == "Relu":
            exact[out.name], bound[out.name] = np.maximum(exact[a], 0), bound[a]
        else:
            assert node.op_type == "Add"
            b = node.inputs[1].name
            exact[out.name], bound[out.name] = exact[a] + exact[b], bound[a] + bound[b]
        if out.name in plan.values:
            bound[out.name] = bound[out.name] + _scale(plan, values, out.name) / 2
    y = model.graph.outputs[0].name
    return exact[y], bound[y]


def test_integer_residual_blocks_compute_the_qdq_graph_and_stay_within_the_bound_implied_by_the_scales():
    model = residual_net(blocks=2)
    data = samples(model, count=2)
    float_model = ir.from_proto(ir.to_proto(model))

    _, plan = quantize_model(model, data)  # calibrated on the samples checked: nothing saturates

    assert [name for name, d in plan.nodes.items() if d.op == "Add" and d.action == "quantize"] == [
        "block1_add", "block2_add"]
    step = _scale(plan, {"y": model.graph.outputs[0]}, "y")
    integer = make_session(model, optimize=True)  # QLinearConv and QLinearAdd
    for feed in data:
        actual = integer.run(None, feed)[0]
        qdq_semantics = run_model(model, feed)[0]  # the same graph with its Q/DQ computed one by one
        assert np.all(np.abs(actual - qdq_semantics) <= step * (1 + 1e-3))  # at most a rounding apart
        expected, bound = _error_bound(float_model, plan, feed["x"])
        np.testing.assert_allclose(run_model(float_model, feed)[0], expected, rtol=1e-4, atol=1e-5)
        assert np.all(np.abs(actual - expected) <= bound * (1 + 1e-3) + 1e-5)


def test_fold_scales_keeps_the_quantizer_of_an_included_add_relu_read_in_float():
    b = GraphBuilder(opset=17)
    x, z = b.input("x", "float32", [2, 8]), b.input("z", "float32", [2, 8])
    b.output(b.Tanh(b.Relu(b.Add(x, z, _name="add"), _name="relu"), _name="tanh"), "y")
    model = b.build()
    data = [{"x": f["x"], "z": f["x"][::-1].copy()} for f in samples(model)]

    _, plan = quantize_model(model, data, "annotate-quant{include=Add},insert-qdq,fold-scales")
    report = ep_check(model, get_target("cpu"), data[0])

    assert plan.nodes["relu"].role == "fused-activation"
    assert report.integer_ops == {"com.microsoft::QLinearAdd": 1}  # the Relu's Q/DQ pair kept: Add -> Relu -> Q
