"""QAT: the fake-quantized form computes what the QDQ model does, folds back to it, and training helps int4."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.errors import ModelInputError, UnsupportedError
from onnxsmith.train import TrainConfig
from onnxsmith.train.qat import fake_quant_form, fold_fake_quant, qat
from onnxsmith.verify._session import make_session


def logits(model: ir.Model, x: np.ndarray) -> np.ndarray:
    return make_session(model).run(None, {"x": x})[0]


def integer_types(model: ir.Model) -> list[ir.DataType]:
    types = {v.dtype for v in model.graph.initializers.values() if not v.dtype.is_floating_point()}
    return sorted(types, key=lambda t: t.value)


def test_the_fake_quantized_form_computes_the_qdq_model_and_folds_back_to_it(qdq, blobs):
    trainable = fake_quant_form(qdq)
    floats = {v.name for v in trainable.graph.initializers.values() if v.dtype == ir.DataType.FLOAT}
    assert {"w1", "b1", "w2", "b2"} <= {name.split("_")[0] for name in floats}
    assert ir.DataType.INT32 not in integer_types(trainable)  # biases are float again
    np.testing.assert_allclose(logits(trainable, blobs["x"]), logits(qdq, blobs["x"]), rtol=1e-5, atol=1e-5)
    folded = fold_fake_quant(trainable)
    assert integer_types(folded) == integer_types(qdq)
    assert sorted(n.op_type for n in folded.graph) == sorted(n.op_type for n in qdq.graph)
    np.testing.assert_allclose(logits(folded, blobs["x"]), logits(qdq, blobs["x"]), rtol=1e-5, atol=1e-5)


def test_int4_weights_have_codes_within_seven(qdq):
    folded = fold_fake_quant(fake_quant_form(qdq, weight_bits=4))
    codes = [v for v in folded.graph.initializers.values() if v.dtype == ir.DataType.INT4]
    assert len(codes) >= 4  # two weights, with their zero points
    for value in codes:
        assert np.abs(value.const_value.numpy().astype(np.int8)).max() <= 7


def test_qat_trains_through_int4_fake_quantization_and_keeps_int4_codes(qdq, blobs):
    """The gradient flows through Q/DQ (STE) and folding keeps the trained weights; tools/qat_digits.py shows
    the recovery of accuracy on a real model."""
    ptq = fold_fake_quant(fake_quant_form(qdq, weight_bits=4))
    config = TrainConfig(lr=0.01, epochs=5, batch_size=16, schedule="cosine")
    outcome = qat(qdq, blobs, config, weight_bits=4)
    losses = outcome.result.losses

    def loss(model: ir.Model) -> float:
        z = logits(model, blobs["x"]).astype(np.float64)
        z -= z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(z)), blobs["labels"]]))

    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert loss(outcome.model) < 0.8 * loss(ptq)
    assert ir.DataType.INT4 in integer_types(outcome.model)


def test_qat_needs_a_qdq_model_and_opset_21_for_int4(blobs, gemm_mlp, quantized):
    with pytest.raises(ModelInputError, match="no quantized weight"):
        fake_quant_form(gemm_mlp())
    with pytest.raises(UnsupportedError, match="int4 weights need opset 21"):
        fake_quant_form(quantized(gemm_mlp(opset=18), blobs), weight_bits=4)
    with pytest.raises(UnsupportedError, match="not 2"):
        fake_quant_form(quantized(gemm_mlp(), blobs), weight_bits=2)
