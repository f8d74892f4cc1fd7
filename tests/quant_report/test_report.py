"""The report on onnxruntime.quantization QDQ models: discovery, ordering, remedies, chunking, JSON."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from qr_models import attention_samples, masked_attention, mlp, mlp_samples, ort_qdq_models

from onnxsmith.ir import to_text
from onnxsmith.quant_report import (
    RemedyRules,
    TensorReport,
    find_quantized_tensors,
    format_quant_report,
    quant_report,
    suggest_remedy,
)
from onnxsmith.report import to_json


@pytest.fixture(scope="module")
def mlp_pair(tmp_path_factory):
    return ort_qdq_models(mlp(), mlp_samples(4), tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="module")
def attention_pair(tmp_path_factory):
    return ort_qdq_models(masked_attention(), attention_samples(4), tmp_path_factory.mktemp("attn"))


def test_finds_and_maps_every_quantized_tensor(mlp_pair):
    fp32, quantized = mlp_pair
    found = find_quantized_tensors(quantized, fp32)
    kinds = {t.name: (t.kind, t.granularity, t.params.dtype.name) for t in found.tensors}
    # onnxruntime names the Gemm output y_QuantizeLinear_Input and folds the Relu: matched by DQ output and producer
    assert kinds == {
        "x": ("activation", "per-tensor", "UINT8"), "mm1_out": ("activation", "per-tensor", "UINT8"),
        "relu_out": ("activation", "per-tensor", "UINT8"), "y": ("activation", "per-tensor", "UINT8"),
        "w1": ("weight", "per-channel(axis=1)", "INT8"), "w2": ("weight", "per-channel(axis=0)", "INT8"),
        "b1": ("weight", "per-tensor", "UINT8"), "b2": ("weight", "per-channel(axis=0)", "INT32")}
    assert found.unmatched == ()


def test_report_is_worst_first_and_models_are_untouched(mlp_pair):
    fp32, quantized = mlp_pair
    before = to_text(fp32), to_text(quantized)
    report = quant_report(fp32, quantized, mlp_samples(3, seed=5))
    keys = [t.effective_sqnr_db for t in report.tensors]
    assert keys == sorted(keys)
    assert report.runs == 8  # 3 samples x 4 rows, one row per run, capped at 8
    assert (to_text(fp32), to_text(quantized)) == before
    weight = next(t for t in report.tensors if t.name == "w1")
    assert weight.representable[0] < weight.observed[0] <= weight.observed[1] < weight.representable[1]
    (output,) = report.outputs
    assert output.top1 is not None and output.cosine_mean > 0.99


def test_int8_weights_match_the_error_bound(mlp_pair):
    fp32, quantized = mlp_pair
    report = quant_report(fp32, quantized, mlp_samples(1))
    w1 = next(t for t in report.tensors if t.name == "w1")
    # uniform rounding error s^2/12 against a +-4 weight: ~40 dB or better for int8
    assert 35 < w1.sqnr_db < 60 and w1.clip_fraction == 0.0


def test_the_attention_mask_add_ranks_worst_with_exclude(attention_pair):
    fp32, quantized = attention_pair
    report = quant_report(fp32, quantized, attention_samples(2, seed=9))
    worst = report.tensors[0]
    assert worst.name == "mask_add_out"
    assert worst.remedy is not None and worst.remedy.action == "exclude"
    assert worst.bulk_sqnr_db < 1.0 and worst.sqnr_db > 100  # energy alone hides it
    text = format_quant_report(report)
    assert "mask_add_out" in text.splitlines()[8] and "exclude" in text


def test_chunked_measurement_matches_one_pass(attention_pair):
    fp32, quantized = attention_pair
    data = attention_samples(2, seed=3)
    one = quant_report(fp32, quantized, data)
    chunked = quant_report(fp32, quantized, data, max_tensors_per_run=1)
    activations = sum(t.kind == "activation" for t in one.tensors)
    assert chunked.passes == activations > 1 and one.passes == 1
    assert [(t.name, t.sqnr_db, t.through_model_sqnr_db) for t in chunked.tensors] == \
           [(t.name, t.sqnr_db, t.through_model_sqnr_db) for t in one.tensors]
    assert chunked.outputs == one.outputs


def test_json_shape(mlp_pair):
    fp32, quantized = mlp_pair
    data = json.loads(to_json(quant_report(fp32, quantized, mlp_samples(1)).to_dict(top=3)))
    assert set(data) == {"runs", "passes", "seconds", "counts", "outputs", "tensors", "unmatched"}
    assert data["counts"] == {"activations": 4, "weights": 4, "with_remedy": 0}
    assert len(data["tensors"]) == 3
    assert set(data["tensors"][0]) >= {"name", "kind", "dtype", "granularity", "scale", "zero_point", "representable",
                                       "observed", "clip_fraction", "sqnr_db", "bulk_sqnr_db",
                                       "through_model_sqnr_db", "remedy"}
    assert set(data["outputs"][0]) == {"name", "sqnr_db", "max_abs", "cosine_mean", "cosine_min", "top1",
                                       "equal_fraction"}


# ---------------------------------------------------------------- remedy rules, one each

_BASE = TensorReport(
    name="t", kind="activation", dtype="uint8", granularity="per-tensor", node="q", fp32_nodes=("n",),
    scale=(0.1, 0.1), zero_point=(128, 128), representable=(-12.8, 12.7), observed=(-3.0, 3.0), elements=1000,
    nonfinite=0, clip_fraction=0.0, sqnr_db=20.0, bulk_sqnr_db=20.0, through_model_sqnr_db=18.0, typical=1.0,
    separated=0, channel_outlier_ratio=None, per_channel_sqnr_db=None)


@pytest.mark.parametrize(("changes", "action"), [
    ({"sqnr_db": 40.0, "bulk_sqnr_db": 40.0}, None),
    ({"representable": (-3.4e38, 0.0)}, "exclude"),
    ({"representable": (-2e4, 0.0)}, "exclude"),
    ({"separated": 10}, "exclude"),
    ({"clip_fraction": 0.02}, "recalibrate"),
    ({"kind": "weight", "per_channel_sqnr_db": 38.0}, "per-channel"),
    ({"channel_outlier_ratio": 30.0}, "smoothquant"),
    ({"channel_outlier_ratio": 30.0, "observed": (-3.0, 40.0)}, "recalibrate"),  # the range cuts them off
    ({"channel_outlier_ratio": 30.0, "observed": (-12.85, 3.0)}, "smoothquant"),  # within a step: not cut
    ({"observed": (-1.0, 80.0)}, "int16"),
    ({}, "exclude"),
])
def test_remedy_rules(changes, action):
    remedy = suggest_remedy(replace(_BASE, **changes), RemedyRules())
    assert (remedy.action if remedy else None) == action
    if remedy is not None:
        assert remedy.reason


def test_rule_order_puts_absurd_ranges_before_clipping():
    row = replace(_BASE, representable=(-3.4e38, 0.0), clip_fraction=0.2, channel_outlier_ratio=50.0)
    assert suggest_remedy(row).action == "exclude"


def test_small_per_channel_gain_is_not_a_remedy():
    row = replace(_BASE, kind="weight", per_channel_sqnr_db=21.0, observed=(-3.0, 3.0))
    assert suggest_remedy(row).action == "exclude"


def test_per_tensor_weights_get_the_per_channel_remedy(tmp_path):
    # one output column 100x larger: a per-tensor scale crushes the others (whose energy is small,
    # so the SQNR stays fair; a strict acceptable level makes the rule speak)
    from onnxsmith.ir import GraphBuilder

    rng = np.random.default_rng(4)
    w = rng.standard_normal((16, 8)).astype(np.float32) * 0.01
    w[:, 0] *= 100
    b = GraphBuilder()
    x = b.input("x", "float32", ["N", 16])
    b.output(b.MatMul(x, b.initializer("w", w), _name="mm"), "y")
    fp32, quantized = ort_qdq_models(b.build(), mlp_samples(2), tmp_path, per_channel=False)
    report = quant_report(fp32, quantized, mlp_samples(1), rules=RemedyRules(acceptable_db=60.0))
    row = next(t for t in report.tensors if t.name == "w")
    assert row.granularity == "per-tensor"
    assert row.remedy is not None and row.remedy.action == "per-channel"
    assert row.per_channel_sqnr_db > row.sqnr_db + 6
