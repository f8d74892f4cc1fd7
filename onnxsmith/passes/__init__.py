"""Passes, the pass manager, the registry and named pipelines.

Importing this package registers the built-in passes and pipelines.
"""

from __future__ import annotations

from onnxsmith.passes.base import ALL, NoOptions, Pass, PassContext, PassResult, Tolerance
from onnxsmith.passes.manager import PassManager, PassRecord, PipelineReport, run_pipeline
from onnxsmith.passes.pipeline import build_pipeline, check_order, parse_pipeline, pipeline_string
from onnxsmith.passes.registry import (
    get_pass,
    list_passes,
    list_pipelines,
    load_plugin,
    register_pass,
    register_pipeline,
)

from onnxsmith.passes import cleanup as _cleanup  # noqa: E402,F401  (registers built-ins)
from onnxsmith.passes import fusion as _fusion  # noqa: E402,F401  (registers fuse)
from onnxsmith.passes import quant as _quant  # noqa: E402,F401  (registers the quantization passes)
from onnxsmith.passes import train as _train  # noqa: E402,F401  (registers build-gradients)

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
