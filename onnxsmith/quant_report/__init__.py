"""The quantization report and sensitivity ranking: what quantization did to each tensor.

``quant_report(fp32, quantized, data)`` runs both models side by side on a few samples and
measures every quantized tensor (scale, zero point, representable and observed range, clipping,
SQNR), worst first, each with a suggested remedy; ``format_quant_report`` and
``QuantReport.to_dict`` render it. ``rank_sensitivity`` orders quantized tensors by their effect
on the model output, for automatic exclusion.

Modules, one concept each:

* ``tensors``: finding quantized tensors and the fp32 values they replace.
* ``stats``: online SQNR, magnitude-octave and output-fidelity accumulators.
* ``measure``: the streaming, optionally chunked, side-by-side run.
* ``remedy``: the remedy rules. ``report``: the report as data. ``text``: as text.
* ``sensitivity``: ranking by output effect.
"""

from __future__ import annotations

from onnxsmith.quant_report.measure import Measurement, measure
from onnxsmith.quant_report.remedy import Remedy, RemedyRules, suggest_remedy
from onnxsmith.quant_report.report import OutputReport, QuantReport, TensorReport, build_report, quant_report
from onnxsmith.quant_report.sensitivity import Sensitivity, rank_sensitivity
from onnxsmith.quant_report.stats import sqnr_db
from onnxsmith.quant_report.tensors import FoundTensors, QuantizedTensor, find_quantized_tensors
from onnxsmith.quant_report.text import format_quant_report

__all__ = [
    "FoundTensors",
    "Measurement",
    "OutputReport",
    "QuantReport",
    "QuantizedTensor",
    "Remedy",
    "RemedyRules",
    "Sensitivity",
    "TensorReport",
    "build_report",
    "find_quantized_tensors",
    "format_quant_report",
    "measure",
    "quant_report",
    "rank_sensitivity",
    "sqnr_db",
    "suggest_remedy",
]
