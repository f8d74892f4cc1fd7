"""In-graph MinMax reductions and the weight-sharing session give what exposing the values gives."""

from __future__ import annotations

import importlib

import numpy as np
import onnx_ir as ir
import pytest
from calib_models import conv_net, mlp
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxsmith.calibration import calibrate, select_values
from onnxsmith.calibration.observers import HistogramObserver, MinMaxObserver
from onnxsmith.calibration.reductions import plan_reductions, reductions_added
from onnxsmith.calibration.session import SHARED_MIN_BYTES, calibration_session
from onnxsmith.ir import GraphBuilder, to_text
from onnxsmith.verify._session import make_session

COLLECT = importlib.import_module("onnxsmith.calibration.collect")  # the package re-exports a function of that name
_SPECIALS = [np.nan, np.inf, -np.inf, 3e38]


def _records(ranges) -> dict:
    return {name: (r.min, r.max, r.axis, r.observed) for name, r in ranges.items()}


def _exposing_everything(monkeypatch):
    """Makes collection expose every value instead of reducing it in the graph (the reference path)."""
    monkeypatch.setattr(COLLECT, "plan_reductions", lambda values, observers, taken: ([], list(values)))


def _data(shape, seed: int, specials: int, runs: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(runs):
        x = rng.standard_normal(shape).astype(np.float32)
        flat = x.reshape(-1)
        for i in rng.choice(flat.size, size=specials, replace=False):
            flat[i] = rng.choice(_SPECIALS)
        samples.append({"x": x})
    return samples


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), specials=st.integers(0, 3), conv=st.booleans(), per_channel=st.booleans(),
       averaging=st.sampled_from([None, 0.3]))
def test_in_graph_ranges_equal_exposed_ranges(seed, specials, conv, per_channel, averaging):
    model = conv_net() if conv else mlp()
    data = _data((1, 3, 8, 8) if conv else (3, 16), seed, specials, runs=3)
    options = {"per_channel": per_channel, "axis": 1 if conv else -1, "batch_size": 3}
    if averaging is not None:
        options["averaging_constant"] = averaging
    values = [v for n in model.graph for v in n.outputs]
    reduced, _ = plan_reductions(values, {v.name: MinMaxObserver() for v in values}, set())
    assert len(reduced) == len(values)  # every activation takes the in-graph path
    in_graph = calibrate(model, data, op_types=None, **options)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _exposing_everything(monkeypatch)
        exposed = calibrate(model, data, op_types=None, **options)
    assert _records(in_graph) == _records(exposed)


def test_only_float_minmax_values_are_reduced():
    b = GraphBuilder()
    x = b.input("x", "float32", ["N", 4])
    h = b.Cast(b.Relu(x, _name="relu"), to=ir.DataType.FLOAT16, _name="half")
    b.output(b.Cast(h, to=ir.DataType.FLOAT, _name="back"), "y")
    model = b.build()
    values = [v for n in model.graph for v in n.outputs]
    observers = {v.name: MinMaxObserver() for v in values}
    reduced, exposed = plan_reductions(values, observers, set())
    assert [r.value for r in reduced] == [values[0].name, values[2].name]
    assert exposed == [values[1]]  # float16
    observers[values[0].name] = HistogramObserver()
    reduced, exposed = plan_reductions(values, observers, set())
    assert values[0] in exposed


def test_reduction_nodes_are_removed_and_names_are_fresh():
    model = mlp()
    before = to_text(model)
    values = [v for n in model.graph for v in n.outputs]
    taken = {v.name for v in values} | {f"{values[0].name}/calibration_min"}
    observers = {v.name: MinMaxObserver(axis=-1) for v in values}
    reduced, _ = plan_reductions(values, observers, taken)
    assert reduced[0].outputs[0] == f"{values[0].name}/calibration_min_1"
    assert reduced[0].axes == (0,)
    with reductions_added(model, reduced):
        assert len(model.graph.outputs) == 1 + 4 * len(reduced)
    assert to_text(model) == before


def test_reduction_nodes_follow_the_producer_of_their_value():
    model = mlp()
    values = [*model.graph.inputs, *(v for n in model.graph for v in n.outputs)]
    reduced, _ = plan_reductions(values[:3], {v.name: MinMaxObserver() for v in values}, set())
    with reductions_added(model, reduced):
        order = [n.name for n in model.graph]
    steps = ["min", "max", "sum", "size"]
    x, h, r = (v.name for v in values[:3])
    assert order == [*(f"{x}/calibration_{s}" for s in steps), "mm1", *(f"{h}/calibration_{s}" for s in steps),
                     "relu", *(f"{r}/calibration_{s}" for s in steps), "mm2"]


@pytest.mark.parametrize("model", [mlp, lambda: _wide_mlp()], ids=["inline", "shared-weights"])
def test_the_session_reduces_each_value_before_the_model_goes_on(model, profiled_sessions):
    """onnxruntime's default order would run the reductions (output-only branches) after the whole model,
    keeping every calibrated value alive to the end of the run."""
    model = model()
    values = [v for n in model.graph for v in n.outputs]
    reduced, _ = plan_reductions(values, {v.name: MinMaxObserver() for v in values}, set())
    model_nodes = [n.name for n in model.graph]
    with reductions_added(model, reduced):
        session = calibration_session(model)
    width = model.graph.inputs[0].shape[1]
    session.run(None, {"x": np.ones((2, width), np.float32)})
    position = {name: start for name, (_, start) in profiled_sessions(session).items()}
    for r, value in zip(reduced, values[:-1]):  # the last value has no node after it
        following = model_nodes[model_nodes.index(value.producer().name) + 1]
        assert max(position[name] for name in r.outputs) < position[following], r.value


def _wide_mlp() -> ir.Model:
    rng = np.random.default_rng(5)
    b = GraphBuilder()
    x = b.input("x", "float32", ["N", 256])
    w = b.initializer("w", rng.standard_normal((256, 128)).astype(np.float32))  # 128 KiB: shared
    b.output(b.Relu(b.MatMul(x, w, _name="mm"), _name="relu"), "y")
    return b.build()


def test_the_session_shares_large_weights_and_leaves_the_model_as_it_was():
    model = _wide_mlp()
    tensor = model.graph.initializers["w"].const_value
    assert tensor.nbytes >= SHARED_MIN_BYTES
    before = to_text(model)
    session = calibration_session(model)
    arrays, _ = session.onnxsmith_shared
    assert list(arrays) == ["w"]
    assert model.graph.initializers["w"].const_value is tensor and to_text(model) == before
    x = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
    expected = make_session(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)
    arrays["w"][:] = 0  # onnxruntime reads the shared array itself, no copy
    assert not session.run(None, {"x": x})[0].any()


def test_calibration_with_shared_weights_matches_the_reference_session(monkeypatch):
    model = _wide_mlp()
    data = [{"x": np.random.default_rng(i).standard_normal((2, 256)).astype(np.float32)} for i in range(3)]
    names = select_values(model, None)
    shared = calibrate(model, data, values=names)
    monkeypatch.setattr(COLLECT, "calibration_session", lambda m, threads=1: make_session(m, threads=threads))
    reference = calibrate(model, data, values=names)
    for name in names:
        np.testing.assert_allclose([shared[name].min, shared[name].max], [reference[name].min, reference[name].max],
                                   rtol=1e-5)


def _casts() -> ir.Model:
    """Casts to float of int64 ids, of a bool mask and of a float16 value, each feeding a MatMul."""
    b = GraphBuilder()
    ids = b.input("ids", "int64", ["N", 4])
    half = b.input("half", "float16", ["N", 4])
    w = b.initializer("w", np.arange(8, dtype=np.float32).reshape(4, 2))
    from_ids = b.Cast(ids, to=ir.DataType.FLOAT, _name="from_ids")
    from_mask = b.Cast(b.Greater(ids, b.initializer("zero", np.array(0, np.int64)), _name="mask"),
                       to=ir.DataType.FLOAT, _name="from_mask")
    from_half = b.Cast(half, to=ir.DataType.FLOAT, _name="from_half")
    b.output(b.MatMul(from_ids, w, _name="mm_ids"), "a")
    b.output(b.MatMul(from_mask, w, _name="mm_mask"), "b")
    b.output(b.MatMul(from_half, w, _name="mm_half"), "c")
    return b.build()


def test_casts_of_integers_and_booleans_are_reduced_without_a_sum():
    model = _casts()
    values = {n.name: n.outputs[0] for n in model.graph if n.op_type == "Cast"}
    reduced, _ = plan_reductions(list(values.values()), {v.name: MinMaxObserver() for v in values.values()}, set())
    by_value = {r.value: r for r in reduced}
    for cast in ("from_ids", "from_mask"):
        r = by_value[values[cast].name]
        assert r.total is None and [name.rsplit("_", 1)[-1] for name in r.outputs] == ["min", "max", "size"]
    half = by_value[values["from_half"].name]  # float16 may hold NaN or infinity: the sum stays
    assert half.total is not None and len(half.outputs) == 4
    with reductions_added(model, reduced):
        summed = [n.inputs[0].name for n in model.graph if n.op_type == "ReduceSum"]
    assert summed == [values["from_half"].name]


@pytest.mark.parametrize("rows", [0, 3], ids=["empty", "rows"])
def test_casts_without_a_sum_calibrate_as_the_exposed_values_do(rows, monkeypatch):
    """Including the non-finite float16 elements (the sum flags them) and empty values (their
    infinite extremes flag them)."""
    model = _casts()
    rng = np.random.default_rng(11)
    data = []
    for i in range(3):
        half = rng.standard_normal((rows, 4)).astype(np.float16)
        if rows and i == 1:
            half[0, 0] = np.inf
        if rows and i == 2:  # not first: onnxruntime's ReduceMin/ReduceMax skip such a NaN, only the sum sees it
            half[1, 2] = np.nan
        data.append({"ids": rng.integers(-2**40, 2**40, (rows, 4)), "half": half})
    names = [n.outputs[0].name for n in model.graph if n.op_type == "Cast"]
    in_graph = calibrate(model, data, values=names, batch_size=2)
    _exposing_everything(monkeypatch)
    exposed = calibrate(model, data, values=names, batch_size=2)
    assert _records(in_graph) == _records(exposed)
