"""Sensitivity ranking: the mask Add hurts the output most, and the fp32 model is restored."""

from __future__ import annotations

import pytest
from qr_models import attention_samples, masked_attention, ort_qdq_models

from onnxsmith.ir import to_text
from onnxsmith.quant_report import rank_sensitivity


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return ort_qdq_models(masked_attention(), attention_samples(4), tmp_path_factory.mktemp("attn"))


def test_proxy_ranking_without_isolation(pair):
    fp32, quantized = pair
    ranking = rank_sensitivity(fp32, quantized, attention_samples(1, seed=2))
    assert all(s.output_sqnr_db is None for s in ranking)
    assert [s.sqnr_db for s in ranking] == sorted(s.sqnr_db for s in ranking)


def test_isolated_output_error_ranks_the_mask_add_first(pair):
    fp32, quantized = pair
    before = to_text(fp32)
    ranking = rank_sensitivity(fp32, quantized, attention_samples(2, seed=2), top_k=4)
    assert to_text(fp32) == before
    measured = [s for s in ranking if s.output_sqnr_db is not None]
    assert len(measured) == 4
    assert [s.output_sqnr_db for s in measured] == sorted(s.output_sqnr_db for s in measured)
    assert ranking[0].name == "mask_add_out" and ranking[0].output_sqnr_db < 10
    assert "mask_add" in ranking[0].nodes
