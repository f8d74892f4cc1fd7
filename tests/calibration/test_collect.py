"""Streaming collection: batch = stream, chunked = unchunked, progress, interrupts, memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import onnx_ir as ir
import pytest
from calib_models import mlp_data

from onnxsmith.calibration import HistogramObserver, MinMaxObserver, calibrate, select_values
from onnxsmith.calibration.batching import rows_for_budget
from onnxsmith.calibration.collect import estimate_bytes, plan_chunks
from onnxsmith.errors import DataInputError, OnnxsmithError
from onnxsmith.ir import GraphBuilder, to_text

CALIBRATORS = ["minmax", "percentile", "entropy", "mse"]


def _plain(ranges) -> dict:
    return {name: (r.min, r.max, r.axis, r.num_samples) for name, r in ranges.items()}


@pytest.mark.parametrize("calibrator", CALIBRATORS)
def test_one_batch_equals_sample_by_sample(mlp_model, calibrator):
    data = mlp_data(12, rows=5)
    stacked = {"x": np.concatenate([d["x"] for d in data])}
    rows = [{"x": row[None]} for row in stacked["x"]]
    batch = calibrate(mlp_model, stacked, calibrator=calibrator)
    assert _plain(calibrate(mlp_model, rows, calibrator=calibrator)) == _plain(batch)
    assert _plain(calibrate(mlp_model, data, calibrator=calibrator)) == _plain(batch)
    assert batch["x"].num_samples == 60


def test_per_channel_stream_equals_batch(mlp_model):
    data = mlp_data(6)
    stacked = {"x": np.concatenate([d["x"] for d in data])}
    a = calibrate(mlp_model, data, per_channel=True, axis=-1)
    assert _plain(a) == _plain(calibrate(mlp_model, stacked, per_channel=True, axis=-1))
    assert len(a["mm1_out"].min) == 32 and a["mm1_out"].axis == 1


@pytest.mark.parametrize("calibrator", ["minmax", "entropy"])
def test_chunked_equals_unchunked(mlp_model, calibrator):
    data = mlp_data(8)
    whole = calibrate(mlp_model, data, calibrator=calibrator, op_types=None)
    one_each = calibrate(mlp_model, data, calibrator=calibrator, op_types=None, max_outputs_per_run=1)
    tiny_budget = calibrate(mlp_model, data, calibrator=calibrator, op_types=None, memory_budget_mb=0.0002)
    assert _plain(one_each) == _plain(whole) == _plain(tiny_budget)


def test_chunk_planning_respects_both_limits(mlp_model):
    graph = mlp_model.graph
    values = [v for n in graph for v in n.outputs]
    dims = {"N": 4}
    assert estimate_bytes(values[0], dims) == 4 * 32 * 4
    assert [len(c) for c in plan_chunks(values, dims, max_outputs_per_run=2)] == [2, 1]
    budget = 700 / 2**20  # bytes: mm1_out and relu_out take 512 each, y 128
    assert [[v.name for v in c] for c in plan_chunks(values, dims, memory_budget_mb=budget)] == [
        ["mm1_out"], ["relu_out", "y"]]
    with pytest.raises(DataInputError, match="max_outputs_per_run must be at least 1"):
        plan_chunks(values, dims, max_outputs_per_run=0)


def test_chunked_mode_needs_data_it_can_read_again(mlp_model):
    with pytest.raises(DataInputError, match=r"chunked calibration reads the data 3 times, but .* can be read only once"):
        calibrate(mlp_model, iter(mlp_data(2)), op_types=None, max_outputs_per_run=1)
    factory = calibrate(mlp_model, lambda: iter(mlp_data(2)), op_types=None, max_outputs_per_run=1)
    assert _plain(factory) == _plain(calibrate(mlp_model, mlp_data(2), op_types=None))


def test_progress_reports_every_run_of_every_chunk(mlp_model):
    events = []
    calibrate(mlp_model, mlp_data(3), op_types=None, max_outputs_per_run=2, progress=events.append)
    assert [(e.chunk, e.runs_done) for e in events] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    assert events[-1].fraction == 1.0 and events[0].num_chunks == 2 and events[0].runs_total == 3
    one_shot = []
    calibrate(mlp_model, iter(mlp_data(2)), progress=one_shot.append)
    assert [e.runs_total for e in one_shot] == [None, None] and one_shot[0].fraction is None


def test_keyboard_interrupt_propagates_and_leaves_the_model_as_it_was(mlp_model):
    before = to_text(mlp_model)

    def interrupt(event):
        if event.runs_done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        calibrate(mlp_model, mlp_data(5), op_types=None, progress=interrupt)
    assert to_text(mlp_model) == before
    assert [v.name for v in mlp_model.graph.outputs] == ["y"]


def test_values_are_chosen_by_op_type_or_by_name(mlp_model):
    assert select_values(mlp_model) == ["x", "mm1_out", "relu_out", "y"]
    assert select_values(mlp_model, ["Relu"]) == ["mm1_out", "relu_out"]
    ranges = calibrate(mlp_model, mlp_data(2), values=["relu_out"])
    assert list(ranges) == ["relu_out"]
    with pytest.raises(OnnxsmithError, match="no value named 'relu' in the main graph .*did you mean 'relu_out'"):
        calibrate(mlp_model, mlp_data(2), values=["relu"])
    with pytest.raises(OnnxsmithError, match="value 'w1' is computed from constants only"):
        calibrate(mlp_model, mlp_data(2), values=["w1"])


def test_per_channel_needs_minmax(mlp_model):
    with pytest.raises(OnnxsmithError, match="per-channel ranges come from the minmax calibrator, not 'entropy'"):
        calibrate(mlp_model, mlp_data(1), calibrator="entropy", per_channel=True)


def _argmax_model(*, typed: bool) -> ir.Model:
    b = GraphBuilder()
    x = b.input("x", "float32", ["N", 4])
    scale = b.Mul(b.const(np.float32(2.0)), b.const(np.float32(3.0)), _name="folded")
    y = b.Mul(x, scale, _name="scale")
    b.output(y, "y")
    b.output(b.ArgMax(y, axis=1, _name="argmax"), "idx")
    model = b.build(infer_types=typed)
    if not typed:
        for value in (v for n in model.graph for v in n.outputs):
            value.type = None
    return model


@pytest.mark.parametrize("typed", [True, False])
def test_non_float_and_constant_values_are_not_calibrated(typed):
    model = _argmax_model(typed=typed)
    ranges = calibrate(model, [{"x": np.ones((2, 4), np.float32)}], op_types=None)
    assert list(ranges) == ["x", "y"]


def test_threads_do_not_change_ranges(mlp_model):
    data = mlp_data(3, rows=512)  # large enough for onnxruntime to split the MatMuls between threads
    single = _plain(calibrate(mlp_model, data, threads=1))
    assert _plain(calibrate(mlp_model, data, threads=2)) == single
    assert _plain(calibrate(mlp_model, data)) == single  # default: one thread per physical core


def _large_model() -> ir.Model:
    b = GraphBuilder()
    x = b.input("x", "float32", ["N", 64, 64])
    y = b.Relu(b.Mul(x, b.const(np.float32(3.0)), _name="scale"), _name="relu")
    b.output(y, "y")
    return b.build()


def _peak_bytes(count: int, step) -> int:
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        for _ in range(count):
            step(rng)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_observer_memory_does_not_grow_with_the_number_of_samples():
    observers = [MinMaxObserver(), MinMaxObserver(axis=1), HistogramObserver()]

    def step(rng):
        array = rng.standard_normal((4, 64, 1024), dtype=np.float32)  # 1 MiB
        for observer in observers:
            observer.update(array)

    few, many = _peak_bytes(3, step), _peak_bytes(30, step)
    assert many < 1.3 * few
    assert many < 12 * 2**20  # a few copies of one 1 MiB activation, not 30


def test_collection_memory_does_not_grow_with_the_number_of_samples():
    model = _large_model()

    def run(count):
        def samples():
            rng = np.random.default_rng(1)
            for _ in range(count):
                yield {"x": rng.standard_normal((16, 64, 64), dtype=np.float32)}  # 256 KiB

        tracemalloc.start()
        try:
            calibrate(model, samples(), calibrator="percentile", op_types=None)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    few, many = run(4), run(40)
    assert many < 1.3 * few


# -- memory-bounded batching ---------------------------------------------------------------------

def test_rows_for_budget():
    assert rows_for_budget(2**20, 64) == 64
    assert rows_for_budget(3 * 2**20, 64) == 21
    assert rows_for_budget(2**30, 64) == 1  # a row over the budget still runs, alone
    assert rows_for_budget(0, 1) == 2**20


@pytest.mark.parametrize("calibrator", ["minmax", "entropy"])
def test_rows_per_run_fit_the_budget_and_do_not_change_ranges(mlp_model, calibrator):
    # op_types=None exposes mm1_out and relu_out [N,32] and y [N,8] float32: 288 bytes per row.
    stacked = {"x": np.concatenate([d["x"] for d in mlp_data(6)])}  # one sample of 24 rows
    events = []
    budget = calibrate(mlp_model, stacked, calibrator=calibrator, op_types=None, memory_budget_mb=5 * 288 / 2**20,
                       progress=events.append)
    assert [e.runs_done for e in events] == [1, 2, 3, 4, 5] and events[-1].runs_total == 5  # 5+5+5+5+4 rows
    whole = calibrate(mlp_model, stacked, calibrator=calibrator, op_types=None, memory_budget_mb=None)
    assert _plain(budget) == _plain(whole)
    assert _plain(calibrate(mlp_model, stacked, calibrator=calibrator, op_types=None, batch_size=7)) == _plain(whole)


def test_one_shot_sources_are_batched_by_the_budget_too(mlp_model):
    stacked = {"x": np.concatenate([d["x"] for d in mlp_data(6)])}
    events = []
    calibrate(mlp_model, iter([stacked]), op_types=None, memory_budget_mb=12 * 288 / 2**20, progress=events.append)
    assert [e.runs_done for e in events] == [1, 2] and events[-1].runs_total is None


def test_a_big_sample_runs_within_the_budget(monkeypatch):
    model = _large_model()  # exposes scale and y: 16 KiB each per row
    sample = {"x": np.random.default_rng(2).standard_normal((256, 64, 64), dtype=np.float32)}  # 4 MiB
    seen = []
    update = MinMaxObserver.update
    monkeypatch.setattr(MinMaxObserver, "update", lambda self, values: (seen.append(len(values)), update(self, values)))
    bounded = calibrate(model, [sample], op_types=None, memory_budget_mb=0.5)
    assert set(seen) == {16}  # 16 rows of 32 KiB
    seen.clear()
    assert _plain(calibrate(model, [sample], op_types=None, memory_budget_mb=None)) == _plain(bounded)
    assert set(seen) == {256}


def test_chunked_passes_take_the_rows_all_values_fit_not_those_of_their_chunk(mlp_model):
    """Each pass runs the whole model: its rows must fit every value's bytes, not only its chunk's."""
    # Per row: mm1_out and relu_out 128 bytes each, y 32; a 150-byte budget makes one chunk of each.
    stacked = {"x": np.concatenate([d["x"] for d in mlp_data(6)])}  # one sample of 24 rows
    events = []
    chunked = calibrate(mlp_model, stacked, op_types=None, memory_budget_mb=150 / 2**20, progress=events.append)
    assert [e.num_chunks for e in events[:1]] == [3]
    assert {e.chunk: e.runs_total for e in events} == {0: 24, 1: 24, 2: 24}  # y alone would have taken 4 rows a run
    assert _plain(chunked) == _plain(calibrate(mlp_model, stacked, op_types=None, memory_budget_mb=None))
    events.clear()
    calibrate(mlp_model, stacked, op_types=None, max_outputs_per_run=2, memory_budget_mb=600 / 2**20,
              progress=events.append)
    assert {e.chunk: e.runs_total for e in events} == {0: 12, 1: 12}  # 2 rows of 288 bytes; y alone: 18 rows
