"""onnxsmith: a graph compiler for ONNX models.

A model is loaded into an IR (onnx_ir), flows through an ordered pipeline of named passes run by a
pass manager that verifies it after every step, and is written out for a target.
"""

from __future__ import annotations

from onnxsmith._lazy_imports import defer_imports

defer_imports()

# isort: split
from onnxsmith.errors import OnnxsmithError
from onnxsmith.ir import GraphBuilder, load, parse_text, save, to_text
from onnxsmith.passes import (
    Pass,
    PassContext,
    PassManager,
    PassResult,
    Tolerance,
    register_pass,
    register_pipeline,
    run_pipeline,
)

__version__ = "0.1.0"

__all__ = [
    "GraphBuilder",
    "OnnxsmithError",
    "Pass",
    "PassContext",
    "PassManager",
    "PassResult",
    "Tolerance",
    "load",
    "parse_text",
    "register_pass",
    "register_pipeline",
    "run_pipeline",
    "save",
    "to_text",
]
