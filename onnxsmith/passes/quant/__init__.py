"""Quantization passes: plan (annotate-quant) -> QDQ (insert-qdq) -> storage (fold-scales); dynamic; weight-only.

:mod:`~onnxsmith.passes.quant.scales` holds the arithmetic every pass shares: scale and zero point
from a range, and tensors through QuantizeLinear/DequantizeLinear.
"""

from __future__ import annotations

from onnxsmith.passes.quant.dynamic import QuantizeDynamic
from onnxsmith.passes.quant.scales import (
    INTEGER_BOUNDS,
    QuantParams,
    dequantize,
    params_for_range,
    quantize,
    quantize_blockwise,
    quantize_weight,
)
from onnxsmith.passes.quant.weights import QuantizeWeights

__all__ = [
    "INTEGER_BOUNDS",
    "QuantParams",
    "QuantizeDynamic",
    "QuantizeWeights",
    "dequantize",
    "params_for_range",
    "quantize",
    "quantize_blockwise",
    "quantize_weight",
]
