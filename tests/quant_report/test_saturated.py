"""What the quant report counts as clipped: only what the range cut off beyond rounding."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.quant.scales import INTEGER_BOUNDS, QuantParams, dequantize, quantize
from onnxsmith.quant_report.measure import _saturated


def test_within_half_a_step_of_the_ends_is_rounding_not_clipping():
    # uint8 with scale 0.1 and zero point 2: representable [-0.2, 25.3]
    params = QuantParams(np.array(0.1, np.float32), np.array(2, np.uint8), ir.DataType.UINT8)
    x = np.array([-0.24, -0.26, -1.0, 0.0, 25.34, 25.36, 30.0], np.float32)
    codes = quantize(x, params)
    own = dequantize(codes, params)
    clipped = _saturated(x, codes, own, INTEGER_BOUNDS[ir.DataType.UINT8], params)
    assert clipped.tolist() == [False, True, True, False, False, True, True]


def test_per_channel_steps():
    params = QuantParams(np.array([0.1, 1.0], np.float32), np.array([0, 0], np.int8), ir.DataType.INT8, axis=1)
    x = np.array([[12.74, 127.4], [12.76, 127.6]], np.float32)  # ends 12.7 and 127: half steps 0.05 and 0.5
    codes = quantize(x, params)
    own = dequantize(codes, params)
    clipped = _saturated(x, codes, own, INTEGER_BOUNDS[ir.DataType.INT8], params)
    assert clipped.tolist() == [[False, False], [True, True]]
