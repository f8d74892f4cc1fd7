"""quantize-dynamic on com.microsoft EmbedLayerNormalization: QEmbedLayerNormalization per tensor, the
un-fused per-row form per channel; goldens, exactness against the dequantized tables, the error
bound implied by the scales, declines, and what onnxruntime runs."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.codegen import ep_check, get_target
from onnxsmith.ir import GraphBuilder, parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.quant.scales import dequantize, quantize_weight
from onnxsmith.passes.rewrite.testing import canonical_text
from onnxsmith.verify._session import run_model

MS = "com.microsoft"
EPSILON = 1e-3
HEADER = '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>'
# Rows k / 16 and k / 4 with max |k| = 127: narrow symmetric int8 scales 1/16 and 1/4, q = k.
K = [127, -127, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]


def _run(model: ir.Model, spec: str, target: str = "cpu"):
    report = PassManager(spec, verify="structural").run(model, PassContext(target=target))
    return model, report.records[0]


def _assert_text(model: ir.Model, expected: str) -> None:
    assert canonical_text(model) == canonical_text(parse_text(expected))


def test_per_tensor_becomes_qembed_layer_norm_with_asymmetric_parameters():
    # Ranges with clean int8 parameters: [-1.28, 1.27] -> scale 0.01, zero point 0; [0, 2.55] -> 0.01, -128;
    # gamma [0, 1] -> 1/255, -128; an all-zero beta -> scale 1, zero point -128.
    model, record = _run(parse_text(HEADER + f"""
g (int32[2,2] ids, int32[2,2] seg) => (float[2,2,2] y)
  <float[3,2] word = {{-1.28, 1.27, 0.5, -0.25, 0.01, 0.0}}, float[2,2] position = {{0.0, 2.55, 1.0, 0.5}},
   float[2,2] segment = {{0.0, -1.28, 1.27, 0.25}}, float[2] gamma = {{1.0, 0.51}}, float[2] beta = {{0.0, 0.0}}> {{
  [embed] y, mask_index = com.microsoft.EmbedLayerNormalization <epsilon: float = {EPSILON}> (
      ids, seg, word, position, segment, gamma, beta)
}}"""), "quantize-dynamic{per-channel=false}")
    _assert_text(model, HEADER + f"""
g (int32[2,2] ids, int32[2,2] seg) => (float[2,2,2] y)
  <int8[3,2] word_quantized = {{-128, 127, 50, -25, 1, 0}}, float word_scale = {{0.01}}, int8 word_zero_point = {{0}},
   int8[2,2] position_quantized = {{-128, 127, -28, -78}}, float position_scale = {{0.01}},
   int8 position_zero_point = {{-128}},
   int8[2,2] segment_quantized = {{0, -128, 127, 25}}, float segment_scale = {{0.01}}, int8 segment_zero_point = {{0}},
   int8[2] gamma_quantized = {{127, 2}}, float gamma_scale = {{0.003921569}}, int8 gamma_zero_point = {{-128}},
   int8[2] beta_quantized = {{-128, -128}}, float beta_scale = {{1}}, int8 beta_zero_point = {{-128}}> {{
  [embed_QEmbedLayerNormalization] y, mask_index = com.microsoft.QEmbedLayerNormalization <epsilon: float = {EPSILON}> (
      ids, seg, word_quantized, position_quantized, segment_quantized, gamma_quantized, beta_quantized, "",
      word_scale, position_scale, segment_scale, gamma_scale, beta_scale,
      word_zero_point, position_zero_point, segment_zero_point, gamma_zero_point, beta_zero_point)
}}""")
    assert record.stats["applied"]["dynamic-embed-layer-norm"] == 1


def test_per_channel_unfuses_into_per_row_lookups_and_skip_layer_norm():
    table = ", ".join(str(v / d) for d in (16, 4) for v in K)
    ones, zeros = ", ".join(["1.0"] * 16), ", ".join(["0.0"] * 16)
    model, _ = _run(parse_text(HEADER + f"""
g (int32[1,2] ids) => (float[1,2,16] y)
  <float[2,16] word = {{{table}}}, float[2,16] position = {{{table}}}, float[16] gamma = {{{ones}}},
   float[16] beta = {{{zeros}}}> {{
  [embed] y, mask_index = com.microsoft.EmbedLayerNormalization (ids, , word, position, , gamma, beta)
}}"""), "quantize-dynamic")
    stored = ", ".join(str(k + 128) for k in K * 2)  # int8 shifted to uint8 with the kernel's default zero point
    _assert_text(model, HEADER + f"""
g (int32[1,2] ids) => (float[1,2,16] y)
  <float[16] gamma = {{{ones}}}, float[16] beta = {{{zeros}}}, int64 one = {{1}}, int64 zero = {{0}},
   uint8[2,16] word_q8 = {{{stored}}}, float[2,1] word_scales = {{0.0625, 0.25}},
   uint8[2,16] position_q8 = {{{stored}}}, float[2,1] position_scales = {{0.0625, 0.25}}> {{
  [embed_Shape] embed_Shape_out = Shape(ids)
  [embed_Gather] embed_Gather_out = Gather(embed_Shape_out, one)
  [embed_Range] embed_Range_out = Range(zero, embed_Gather_out, one)
  [embed_GatherBlockQuantized] embed_GatherBlockQuantized_out = com.microsoft.GatherBlockQuantized
      <bits = 8, block_size = 16> (word_q8, ids, word_scales)
  [embed_GatherBlockQuantized_1] embed_GatherBlockQuantized_1_out = com.microsoft.GatherBlockQuantized
      <bits = 8, block_size = 16> (position_q8, embed_Range_out, position_scales)
  [embed_SkipLayerNormalization] y = com.microsoft.SkipLayerNormalization(
      embed_GatherBlockQuantized_out, embed_GatherBlockQuantized_1_out, gamma, beta)
}}""")


# --- numbers -------------------------------------------------------------------------------------

def _tables(seed: int, hidden: int = 32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"word": rng.normal(0, 0.05, (50, hidden)).astype(np.float32),
            "position": rng.normal(0, 0.05, (8, hidden)).astype(np.float32),
            "segment": rng.normal(0, 0.05, (2, hidden)).astype(np.float32),
            "gamma": rng.uniform(0.2, 1.5, hidden).astype(np.float32),
            "beta": rng.normal(0, 0.1, hidden).astype(np.float32)}


def _embed_model(tables: dict[str, np.ndarray], segment: bool = True) -> ir.Model:
    b = GraphBuilder(opset=17, opsets={MS: 1})
    ids = b.input("ids", "int32", ["B", "S"])
    seg = b.input("seg", "int32", ["B", "S"]) if segment else None
    const = {name: b.initializer(name, array) for name, array in tables.items() if segment or name != "segment"}
    y, _mask_index = b.EmbedLayerNormalization(ids, seg, const["word"], const["position"], const.get("segment"),
                                               const["gamma"], const["beta"], _domain=MS, _outputs=2,
                                               epsilon=EPSILON)
    b.output(y, "y", dtype="float32")
    return b.build()


def _normalise(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x_hat, sigma)`` of LayerNormalization over the last axis, in float64."""
    centred = e - e.mean(-1, keepdims=True)
    sigma = np.sqrt((centred ** 2).mean(-1, keepdims=True) + EPSILON)
    return centred / sigma, sigma


def _reference(t: dict[str, np.ndarray], ids: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(y, x_hat, sigma)`` of the embedding layer for the float64 tables ``t``."""
    e = t["word"][ids] + t["position"][np.arange(ids.shape[1])] + t["segment"][seg]
    x_hat, sigma = _normalise(e)
    return x_hat * t["gamma"] + t["beta"], x_hat, sigma


def _error_bound(t: dict[str, np.ndarray], tq: dict[str, np.ndarray], delta: np.ndarray, ids: np.ndarray,
                 seg: np.ndarray) -> np.ndarray:
    """``|y - y'|`` implied by the scales (``delta``: the bound on the summed embedding's error).

    The centred sum moves by at most ``2 delta`` and its standard deviation by at most ``delta``
    (RMS is 1-Lipschitz), hence ``|x_hat - x_hat'| <= 2 delta / sigma * (1 + |x_hat'|)`` and
    ``|y - y'| <= |gamma| |x_hat - x_hat'| + |gamma - gamma'| |x_hat'| + |beta - beta'|``.
    """
    _, x_hat_q, sigma = _reference(tq, ids, seg)
    _, _, sigma_float = _reference(t, ids, seg)
    normalised = 2 * delta / np.minimum(sigma, sigma_float) * (1 + np.abs(x_hat_q))
    return (np.abs(t["gamma"]) * normalised + np.abs(t["gamma"] - tq["gamma"]) * np.abs(x_hat_q)
            + np.abs(t["beta"] - tq["beta"]))


def _inputs(seed: int, rows: int, batch: int = 3, length: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, rows, (batch, length)).astype(np.int32),
            rng.integers(0, 2, (batch, length)).astype(np.int32))


def _quantized_layer(seed: int, passes: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """The seed's tables and inputs, and the output of the layer quantized by ``passes``."""
    tables = _tables(seed)
    ids, seg = _inputs(seed, 50)
    model, _ = _run(_embed_model(tables), passes)
    (y,) = run_model(model, {"ids": ids, "seg": seg})
    return tables, ids, seg, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_tensor_output_is_the_dequantized_layer_within_the_scale_bound(seed):
    tables, ids, seg, y = _quantized_layer(seed, "quantize-dynamic{per-channel=false}")
    t = {k: v.astype(np.float64) for k, v in tables.items()}
    tq, steps = {}, {}
    for name, array in tables.items():
        q, params = quantize_weight(array, ir.DataType.INT8, symmetric=False)
        tq[name], steps[name] = dequantize(q, params).astype(np.float64), float(params.scale)
    np.testing.assert_allclose(y, _reference(tq, ids, seg)[0], atol=2e-5)  # QEmbedLayerNormalization is exact
    delta = (steps["word"] + steps["position"] + steps["segment"]) / 2
    error = np.abs(y - _reference(t, ids, seg)[0])
    bound = _error_bound(t, tq, np.float64(delta), ids, seg)
    assert np.all(error <= bound + 2e-5)
    assert error.max() > 0  # the tables did change


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_row_output_is_the_dequantized_layer_within_the_scale_bound(seed):
    tables, ids, seg, y = _quantized_layer(seed, "quantize-dynamic")
    t = {k: v.astype(np.float64) for k, v in tables.items()}
    tq, steps = dict(t), {}
    for name in ("word", "position", "segment"):
        q, params = quantize_weight(tables[name], ir.DataType.INT8, axis=0, symmetric=True, narrow=True)
        tq[name], steps[name] = dequantize(q, params).astype(np.float64), params.scale.astype(np.float64)
    np.testing.assert_allclose(y, _reference(tq, ids, seg)[0], atol=2e-5)
    delta = (steps["word"][ids] + steps["position"][np.arange(ids.shape[1])] + steps["segment"][seg])[..., None] / 2
    error = np.abs(y - _reference(t, ids, seg)[0])
    assert np.all(error <= _error_bound(t, tq, delta, ids, seg) + 2e-5)
    assert error.max() > 0


@pytest.mark.parametrize(("spec", "segment", "op_type"), [
    ("quantize-dynamic{per-channel=false}", True, "QEmbedLayerNormalization"),
    ("quantize-dynamic{per-channel=false}", False, "QEmbedLayerNormalization"),
    ("quantize-dynamic{per-channel=false;weight-dtype=uint8}", True, "QEmbedLayerNormalization"),
    ("quantize-dynamic", True, "GatherBlockQuantized"),
    ("quantize-dynamic", False, "GatherBlockQuantized"),
])
def test_onnxruntime_cpu_runs_the_quantized_kernels(spec, segment, op_type):
    tables = _tables(3)
    model, _ = _run(_embed_model(tables, segment), spec)
    ids, seg = _inputs(3, 50)
    report = ep_check(model, get_target("cpu"), {"ids": ids, **({"seg": seg} if segment else {})})
    assert report.ok, report
    assert op_type in {p.op for p in report.placements}
    assert "EmbedLayerNormalization" not in {p.op for p in report.placements}


# --- declines -------------------------------------------------------------------------------------

def _declined(model: ir.Model, spec: str, target: str = "cpu") -> str:
    model, record = _run(model, spec, target)
    assert any(n.op_type == "EmbedLayerNormalization" for n in model.graph)
    assert record.stats["applied"]["dynamic-embed-layer-norm"] == 0
    return " ".join(record.stats["reasons"].get("dynamic-embed-layer-norm", {}))


def _with_mask_index_output(model: ir.Model) -> ir.Model:
    embed = next(n for n in model.graph if n.op_type == "EmbedLayerNormalization")
    embed.outputs[1].type = ir.TensorType(ir.DataType.INT32)
    model.graph.outputs.append(embed.outputs[1])
    return model


def _with_shared_word_table(model: ir.Model) -> ir.Model:
    word = model.graph.initializers["word"]
    node = ir.Node("", "Identity", [word], num_outputs=1, name="tied")
    node.outputs[0].name, node.outputs[0].type, node.outputs[0].shape = "tied_out", word.type, word.shape
    model.graph.append(node)
    model.graph.outputs.append(node.outputs[0])
    return model


def _with_position_ids(model: ir.Model) -> ir.Model:
    embed = next(n for n in model.graph if n.op_type == "EmbedLayerNormalization")
    positions = ir.Value(name="position_ids", type=ir.TensorType(ir.DataType.INT32), shape=ir.Shape(["B", "S"]))
    model.graph.inputs.append(positions)
    embed.resize_inputs(9)
    embed.replace_input_with(8, positions)
    return model


@pytest.mark.parametrize(("case", "build", "spec", "target", "reason"), [
    ("not selected", lambda: _embed_model(_tables(0)), "quantize-dynamic{op-types=Gather}", "cpu",
     "op type EmbedLayerNormalization is not in op-types"),
    ("excluded", lambda: _embed_model(_tables(0)), "quantize-dynamic{exclude=EmbedLayerNormalization}", "cpu",
     "excluded by"),
    ("mask_index read, per row", lambda: _with_mask_index_output(_embed_model(_tables(0))), "quantize-dynamic",
     "cpu", "mask_index output is used"),
    ("word table shared", lambda: _with_shared_word_table(_embed_model(_tables(0))), "quantize-dynamic", "cpu",
     "also used by tied"),
    ("position ids", lambda: _with_position_ids(_embed_model(_tables(0))), "quantize-dynamic", "cpu",
     "reads position_ids"),
    ("short rows", lambda: _embed_model(_tables(0, hidden=8)), "quantize-dynamic", "cpu", "do not gain"),
    ("no QEmbedLayerNormalization", lambda: _embed_model(_tables(0)), "quantize-dynamic{per-channel=false}",
     "generic", "no com.microsoft::QEmbedLayerNormalization kernel"),
    ("no SkipLayerNormalization", lambda: _embed_model(_tables(0)), "quantize-dynamic", "generic",
     "no com.microsoft::SkipLayerNormalization kernel"),
])
def test_declines_with_reason(case, build, spec, target, reason):
    assert reason in _declined(build(), spec, target), case


def test_mask_index_is_kept_by_qembed_layer_norm():
    model, record = _run(_with_mask_index_output(_embed_model(_tables(0))), "quantize-dynamic{per-channel=false}")
    assert record.stats["applied"]["dynamic-embed-layer-norm"] == 1
    assert [n.op_type for n in model.graph] == ["QEmbedLayerNormalization"]
