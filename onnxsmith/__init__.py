"""onnxsmith: a graph compiler for ONNX models.

A model is loaded into an IR (onnx_ir), flows through an ordered pipeline of named passes run by a
pass manager that verifies it after every step, and is written out for a target.
"""

from __future__ import annotations

import gc

from onnxsmith._lazy_imports import defer_imports

defer_imports()

# Importing onnxsmith (numpy, onnx, onnx_ir and our modules: ~150k objects that live as long as the
# process) triggers dozens of collections that find nothing: 15 ms of a 140 ms import. They are
# paused, and what the import made joins the oldest generation unscanned (freeze, unfreeze), unless
# the process froze objects itself (unfreezing would release its freeze).
_collecting = gc.isenabled()
gc.disable()
try:
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
finally:
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
    if _collecting:
        gc.enable()
    del _collecting

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
