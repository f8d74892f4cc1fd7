"""Blocked (NCHWc) convolutions in the graphs the Trainer runs: same values, eligible nodes only."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.codegen import nchwc as blocked_conv
from onnxsmith.codegen._table_cache import CACHE_DIR_ENV, NO_CACHE_ENV, cpu_identity
from onnxsmith.codegen.nchwc import (
    NCHWC_DOMAIN,
    block_convolutions,
    constant_convolutions_blocked,
    nchwc_block_size,
    reorder_weight,
)
from onnxsmith.ir import to_text
from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.train import Trainer, TrainConfig, training_graph
from onnxsmith.verify._session import run_model

F32 = "float32"
BLOCK = nchwc_block_size()
needs_blocking = pytest.mark.skipif(BLOCK is None, reason="onnxruntime blocks no convolution on this CPU")


def _conv_model(op: str, channels: int, filters: int, *, relu: bool = False, **attrs) -> tuple[ir.Model, dict]:
    """``op(x, w, b)`` (then Relu) with the weight as an input, as in a training graph."""
    rng = np.random.default_rng(0)
    w_shape = [filters, channels, 3, 3] if op == "Conv" else [channels, filters, 3, 3]
    b = GraphBuilder(opset=17)
    x, w, bias = b.input("x", F32, [2, channels, 7, 6]), b.input("w", F32, w_shape), b.input("b", F32, [filters])
    y = b.op(op, x, w, bias, **attrs)
    b.output(b.Relu(y) if relu else y, "y")
    feeds = {"x": rng.normal(size=[2, channels, 7, 6]).astype(F32), "w": rng.normal(size=w_shape).astype(F32),
             "b": rng.normal(size=[filters]).astype(F32)}
    return b.build(), feeds


def _ops(model: ir.Model) -> list[str]:
    return [f"{n.domain}:{n.op_type}" if n.domain else n.op_type for n in model.graph]


def test_the_probe_finds_the_block_of_onnxruntimes_own_weight_layout():
    assert BLOCK in (None, 4, 8, 16, 32)
    weight = np.arange(2 * 2 * 2 * 2 * 1 * 1, dtype=np.float32).reshape(4, 4, 1, 1)
    # [M/B, C/B, kh, kw, B (c), B (m)] with B = 2: the first block holds m = 0, 1 of c = 0, then of c = 1
    assert reorder_weight(weight, 2).reshape(-1)[:4].tolist() == [0, 4, 1, 5]


@needs_blocking
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("attrs", [{"pads": [1, 1, 1, 1]}, {"pads": [0, 1, 2, 0], "strides": [2, 1]},
                                   {"dilations": [2, 1], "pads": [2, 1, 2, 1]}])
def test_a_conv_becomes_a_blocked_conv_with_the_same_values(relu, attrs):
    model, feeds = _conv_model("Conv", 2 * BLOCK, BLOCK, relu=relu, **attrs)
    expected = run_model(model, feeds)[0]
    assert block_convolutions(model, BLOCK) == 1
    ops = _ops(model)
    assert f"{NCHWC_DOMAIN}:Conv" in ops and "Conv" not in ops and "Relu" not in ops  # folded into the activation
    assert [v.name for v in model.graph.outputs] == ["y"]
    np.testing.assert_allclose(run_model(model, feeds)[0], expected, rtol=1e-4, atol=1e-4)


@needs_blocking
@pytest.mark.parametrize("pads", [[1, 1, 1, 1], [0, 2, 1, 0]])
def test_a_unit_stride_conv_transpose_becomes_a_blocked_conv_of_flipped_weights(pads):
    model, feeds = _conv_model("ConvTranspose", BLOCK, 2 * BLOCK, pads=pads)
    expected = run_model(model, feeds)[0]
    assert block_convolutions(model, BLOCK) == 1
    assert "ConvTranspose" not in _ops(model)
    np.testing.assert_allclose(run_model(model, feeds)[0], expected, rtol=1e-4, atol=1e-4)


@needs_blocking
@pytest.mark.parametrize("op, channels, attrs", [
    ("Conv", 3, {}),  # channels not a multiple of the block
    ("Conv", None, {"group": 2}),
    ("Conv", None, {"auto_pad": "SAME_UPPER"}),
    ("ConvTranspose", None, {"strides": [2, 2]}),
    ("ConvTranspose", None, {"output_padding": [1, 0], "strides": [2, 2]}),
])
def test_other_convolutions_stay_as_they_are(op, channels, attrs):
    model, _ = _conv_model(op, channels or 2 * BLOCK, 2 * BLOCK, **attrs)
    assert block_convolutions(model, BLOCK) == 0
    assert _ops(model) == [op]


def _cnn(channels: int) -> ir.Model:
    """Conv -> Relu -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, 3 classes."""
    rng = np.random.default_rng(1)
    b = GraphBuilder(opset=17)
    x = b.input("x", F32, ["N", channels, 6, 6])
    h = x
    for i in range(2):
        w = b.initializer(f"w{i}", (rng.normal(size=[channels, channels, 3, 3]) * 0.2).astype(F32))
        bias = b.initializer(f"b{i}", (rng.normal(size=[channels]) * 0.1).astype(F32))
        h = b.Relu(b.Conv(h, w, bias, pads=[1, 1, 1, 1]))
    head = b.initializer("head", (rng.normal(size=[3, channels]) * 0.3).astype(F32))
    b.output(b.Gemm(b.Flatten(b.GlobalAveragePool(h)), head, transB=1), "logits")
    return b.build()


@needs_blocking
def test_training_with_blocked_convolutions_takes_the_same_steps():
    rng = np.random.default_rng(2)
    batch = {"x": rng.normal(size=[4, BLOCK, 6, 6]).astype(F32), "labels": np.array([0, 1, 2, 1])}
    graph = training_graph(_cnn(BLOCK), TrainConfig(optimizer="sgd", momentum=0.9, lr=0.05))
    plain, blocked = Trainer(graph, blocked_convs=False), Trainer(graph)
    assert "Conv" in _ops(graph)  # the training graph itself keeps standard Convs
    for _ in range(3):
        assert blocked.train_step(batch, 0.05) == pytest.approx(plain.train_step(batch, 0.05), rel=1e-5)
    for name, value in plain.parameters().items():
        np.testing.assert_allclose(blocked.parameters()[name], value, rtol=1e-4, atol=1e-5)


@needs_blocking
def test_a_relu_that_is_not_the_only_reader_stays_a_node():
    model, feeds = _conv_model("Conv", BLOCK, BLOCK, relu=True, pads=[1, 1, 1, 1])
    conv_output = next(n for n in model.graph if n.op_type == "Conv").outputs[0]
    model.graph.outputs.append(conv_output)  # the pre-activation is read outside the Relu too
    expected = run_model(model, feeds)
    assert block_convolutions(model, BLOCK) == 1
    assert "Relu" in _ops(model)
    for got, want in zip(run_model(model, feeds), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@needs_blocking
def test_a_data_input_without_an_inferred_shape_is_blocked_too():
    """A gradient's shape may not be inferred (MaxUnpool's): the weight's shape decides."""
    model, feeds = _conv_model("ConvTranspose", BLOCK, BLOCK, pads=[1, 1, 1, 1])
    expected = run_model(model, feeds)[0]
    model.graph.inputs[0].shape = None
    assert block_convolutions(model, BLOCK) == 1
    np.testing.assert_allclose(run_model(model, feeds)[0], expected, rtol=1e-4, atol=1e-4)


def _constant_conv_model(op: str, channels: int, filters: int, *, relu: bool = False, **attrs) -> tuple[ir.Model, dict]:
    """``_conv_model`` with the weight and bias as initializers, as in an inference graph."""
    model, feeds = _conv_model(op, channels, filters, relu=relu, **attrs)
    graph = model.graph
    for name in ("w", "b"):
        value = next(v for v in graph.inputs if v.name == name)
        graph.inputs.remove(value)
        value.const_value = ir.tensor(feeds.pop(name), name=name)
        graph.register_initializer(value)
    return model, feeds


@needs_blocking
@pytest.mark.parametrize("op, relu, attrs", [
    ("Conv", False, {"pads": [1, 1, 1, 1]}),
    ("Conv", True, {"pads": [0, 1, 2, 0], "strides": [2, 1]}),
    ("ConvTranspose", False, {"pads": [0, 2, 1, 0]}),
])
def test_constant_weights_are_reordered_once_and_the_model_is_restored(op, relu, attrs):
    model, feeds = _constant_conv_model(op, 2 * BLOCK, BLOCK, relu=relu, **attrs)
    before, expected = to_text(model), run_model(model, feeds)[0]
    with constant_convolutions_blocked(model, BLOCK) as rewritten:
        assert rewritten == 1
        ops = _ops(model)
        assert ops == [f"{NCHWC_DOMAIN}:ReorderInput", f"{NCHWC_DOMAIN}:Conv", f"{NCHWC_DOMAIN}:ReorderOutput"]
        blocked = next(n for n in model.graph if n.op_type == "Conv")
        weight = blocked.inputs[1]
        assert weight.is_initializer() and weight.name not in ("w", "b")
        source = model.graph.initializers["w"].const_value.numpy()
        if op == "ConvTranspose":
            source = source[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        np.testing.assert_array_equal(weight.const_value.numpy(), reorder_weight(source, BLOCK))
        assert [v.name for v in model.graph.outputs] == ["y"]
        np.testing.assert_allclose(run_model(model, feeds)[0], expected, rtol=1e-4, atol=1e-4)
    assert to_text(model) == before and NCHWC_DOMAIN not in model.opset_imports
    np.testing.assert_array_equal(run_model(model, feeds)[0], expected)


@needs_blocking
def test_a_conv_read_by_other_nodes_and_by_the_graph_is_restored_with_its_readers():
    model, feeds = _constant_conv_model("Conv", BLOCK, BLOCK, relu=True, pads=[1, 1, 1, 1])
    conv = next(n for n in model.graph if n.op_type == "Conv")
    model.graph.outputs.append(conv.outputs[0])
    before = to_text(model)
    with constant_convolutions_blocked(model, BLOCK) as rewritten:
        assert rewritten == 1 and "Relu" in _ops(model)
    assert to_text(model) == before
    assert conv.graph is model.graph and [u.node.op_type for u in conv.outputs[0].uses()] == ["Relu"]


@needs_blocking
def test_only_constant_weights_are_blocked_in_the_constant_form():
    inputs, _ = _conv_model("Conv", 2 * BLOCK, BLOCK, pads=[1, 1, 1, 1])  # the weight is a graph input
    before = to_text(inputs)
    with constant_convolutions_blocked(inputs, BLOCK) as rewritten:
        assert rewritten == 0 and _ops(inputs) == ["Conv"]
    assert to_text(inputs) == before
    overridable, _ = _constant_conv_model("Conv", 2 * BLOCK, BLOCK)
    overridable.graph.inputs.append(overridable.graph.initializers["w"])  # an input may override the initializer
    with constant_convolutions_blocked(overridable, BLOCK) as rewritten:
        assert rewritten == 0


class _CountingProbe:
    """The real probe, counting its runs (defined here so that the cache keys it by this file)."""

    def __init__(self) -> None:
        self.runs = 0
        self._probe = blocked_conv._probe_block_size

    def __call__(self):
        self.runs += 1
        return self._probe()


@pytest.fixture
def probe(tmp_path, monkeypatch) -> _CountingProbe:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    counting = _CountingProbe()
    monkeypatch.setattr(blocked_conv, "_probe_block_size", counting)
    return counting


def test_the_probe_runs_once_per_build_and_cpu_and_its_cached_answer_is_the_same(probe, monkeypatch):
    uncached = blocked_conv.nchwc_block_size.__wrapped__  # without the per-process functools.cache
    assert [uncached(), uncached()] == [BLOCK, BLOCK]
    assert probe.runs == 1
    monkeypatch.setattr(blocked_conv, "cpu_identity", lambda: {"machine": "x86_64", "flags": "another cpu"})
    assert uncached() == BLOCK
    assert probe.runs == 2


def test_a_cached_answer_that_is_not_a_block_size_is_probed_again(probe, tmp_path):
    uncached = blocked_conv.nchwc_block_size.__wrapped__
    uncached()
    (entry,) = (tmp_path / "cache").glob("onnxruntime-nchwc-block-*.json")
    for bad in (7, 16.0, "16", True):
        stored = json.loads(entry.read_text())
        entry.write_text(json.dumps({**stored, "value": bad}))
        assert uncached() == BLOCK
    assert probe.runs == 5


def test_the_cpu_identity_is_stable_and_names_the_architecture():
    assert cpu_identity() == cpu_identity()
    assert set(cpu_identity()) == {"machine", "flags"} and cpu_identity()["machine"]


@needs_blocking
def test_an_error_in_the_middle_of_the_rewrites_leaves_the_model_as_it_was(monkeypatch):
    model = _cnn(BLOCK)
    before, rewrite, calls = to_text(model), blocked_conv._rewrite, []

    def second_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return rewrite(*args, **kwargs)

    monkeypatch.setattr(blocked_conv, "_rewrite", second_fails)
    with pytest.raises(KeyboardInterrupt), constant_convolutions_blocked(model, BLOCK):
        pass
    assert len(calls) == 2 and to_text(model) == before and NCHWC_DOMAIN not in model.opset_imports
