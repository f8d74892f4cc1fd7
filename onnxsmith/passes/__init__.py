"""Passes, the pass manager, the registry and named pipelines.

Importing this package registers the cleanup passes and pipeline, and declares the other built-in
passes and pipelines by name: each module is imported when one of its names is first looked up or
the passes are listed (``registry.defer_builtins``). Importing every fusion, quantization and
training module (and the calibration package behind them, OpenSSL included) cost a dynamic
quantization of magika about 25 ms and 7 MiB (of 72) for passes it never ran.
"""

from __future__ import annotations

from onnxsmith.passes.base import ALL, NoOptions, Pass, PassContext, PassResult, Tolerance
from onnxsmith.passes.manager import PassManager, PassRecord, PipelineReport, run_pipeline
from onnxsmith.passes.pipeline import build_pipeline, check_order, parse_pipeline, pipeline_string
from onnxsmith.passes.registry import (
    defer_builtins,
    get_pass,
    list_passes,
    list_pipelines,
    load_plugin,
    register_pass,
    register_pipeline,
)

from onnxsmith.passes import cleanup as _cleanup  # noqa: E402,F401  (registers built-ins)

#: The other built-ins, by the module whose import registers them (tests/passes/test_deferred_builtins.py
#: checks this table against what the modules register).
defer_builtins({
    "fuse": "onnxsmith.passes.fusion",
    "prepare-quant": "onnxsmith.passes.quant.prepare",
    "annotate-quant": "onnxsmith.passes.quant.annotate",
    "tune-quant": "onnxsmith.passes.quant.autotune",
    "insert-qdq": "onnxsmith.passes.quant.insert_qdq",
    "fold-scales": "onnxsmith.passes.quant.fold_scales",
    "smooth-quant": "onnxsmith.passes.quant.smooth_quant",
    "quantize-dynamic": "onnxsmith.passes.quant.dynamic",
    "quantize-weights": "onnxsmith.passes.quant.weights",
    "lower-qoperator": "onnxsmith.passes.quant.qoperator",
    "qdq": "onnxsmith.passes.quant",
    "qdq-smooth": "onnxsmith.passes.quant",
    "qdq-auto": "onnxsmith.passes.quant",
    "build-gradients": "onnxsmith.passes.train.build_gradients",
})

__all__ = [
    "ALL",
    "NoOptions",
    "Pass",
    "PassContext",
    "PassManager",
    "PassRecord",
    "PassResult",
    "PipelineReport",
    "Tolerance",
    "build_pipeline",
    "check_order",
    "get_pass",
    "list_passes",
    "list_pipelines",
    "load_plugin",
    "parse_pipeline",
    "pipeline_string",
    "register_pass",
    "register_pipeline",
    "run_pipeline",
]
