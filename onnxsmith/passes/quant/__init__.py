"""Quantization passes: prepare (prepare-quant) -> plan (annotate-quant) -> QDQ (insert-qdq) -> storage
(fold-scales); dynamic; weight-only.

:mod:`~onnxsmith.passes.quant.scales` holds the arithmetic every pass shares: scale and zero point
from a range, and tensors through QuantizeLinear/DequantizeLinear.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from onnxsmith._lazy_imports import lazy_exports
from onnxsmith.passes.registry import register_pipeline

if TYPE_CHECKING:
    from onnxsmith.passes.quant.annotate import AnnotateOptions, AnnotateQuant
    from onnxsmith.passes.quant.autotune import TuneOptions, TuneQuant
    from onnxsmith.passes.quant.calibration_setup import CalibrationSetup
    from onnxsmith.passes.quant.dynamic import QuantizeDynamic
    from onnxsmith.passes.quant.fold_scales import FoldScales
    from onnxsmith.passes.quant.insert_qdq import QUANT_TOLERANCE, InsertQDQ
    from onnxsmith.passes.quant.plan import NodeDecision, QuantPlan, ValueSpec
    from onnxsmith.passes.quant.prepare import PrepareQuant
    from onnxsmith.passes.quant.qoperator import LowerQOperator
    from onnxsmith.passes.quant.scales import (
        INTEGER_BOUNDS,
        QuantParams,
        dequantize,
        params_for_range,
        quantize,
        quantize_blockwise,
        quantize_weight,
    )
    from onnxsmith.passes.quant.smooth_quant import SmoothOptions, SmoothQuant
    from onnxsmith.passes.quant.weights import QuantizeWeights

#: The names this package re-exports, by submodule. They are imported on first use (PEP 562), so that
#: ``import onnxsmith.passes.quant.dynamic`` does not import every quantization pass and the
#: calibration package (the passes register when the registry first looks them up).
_EXPORTS = {
    "annotate": ("AnnotateOptions", "AnnotateQuant"),
    "autotune": ("TuneOptions", "TuneQuant"),
    "calibration_setup": ("CalibrationSetup",),
    "dynamic": ("QuantizeDynamic",),
    "fold_scales": ("FoldScales",),
    "insert_qdq": ("QUANT_TOLERANCE", "InsertQDQ"),
    "plan": ("NodeDecision", "QuantPlan", "ValueSpec"),
    "prepare": ("PrepareQuant",),
    "qoperator": ("LowerQOperator",),
    "scales": ("INTEGER_BOUNDS", "QuantParams", "dequantize", "params_for_range", "quantize", "quantize_blockwise",
               "quantize_weight"),
    "smooth_quant": ("SmoothOptions", "SmoothQuant"),
    "weights": ("QuantizeWeights",),
}
__getattr__, __dir__ = lazy_exports(
    globals(), {name: f"{__name__}.{module}" for module, names in _EXPORTS.items() for name in names})


#: Embedding tables as 8-bit blocks, weight-only (activations are planned by annotate-quant, tables are not).
_TABLES = "quantize-weights{op-types=Gather,EmbedLayerNormalization;bits=8;block-size=16}"

register_pipeline("qdq", f"prepare-quant,annotate-quant,insert-qdq,fold-scales,{_TABLES}",
                  "static quantization: fold BatchNorm, plan from calibration ranges, insert Q/DQ, store weights "
                  "as integers, embedding tables as int8")
register_pipeline("qdq-smooth", "prepare-quant,smooth-quant{alpha=0.8;insert-mul=true},annotate-quant,insert-qdq,"
                  f"fold-scales,{_TABLES}", "static quantization after SmoothQuant (alpha 0.8; activation outliers migrated "
                  "into the MatMul weights, with a Mul where no producer absorbs 1/s)")
register_pipeline("qdq-auto", f"prepare-quant,annotate-quant,tune-quant,insert-qdq,fold-scales,{_TABLES}",
                  "static quantization that measures output fidelity and keeps in float the tensors that cost it")

__all__ = [
    "INTEGER_BOUNDS",
    "QUANT_TOLERANCE",
    "AnnotateOptions",
    "AnnotateQuant",
    "CalibrationSetup",
    "FoldScales",
    "InsertQDQ",
    "LowerQOperator",
    "NodeDecision",
    "PrepareQuant",
    "QuantParams",
    "QuantPlan",
    "QuantizeDynamic",
    "QuantizeWeights",
    "SmoothOptions",
    "SmoothQuant",
    "TuneOptions",
    "TuneQuant",
    "ValueSpec",
    "dequantize",
    "params_for_range",
    "quantize",
    "quantize_blockwise",
    "quantize_weight",
]
