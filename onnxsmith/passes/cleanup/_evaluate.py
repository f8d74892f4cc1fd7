"""Evaluating one node on constant inputs: exact numpy kernels first, onnxruntime otherwise.

onnxruntime is the runtime the folded model will meet, so anything the numpy kernels do not
cover is computed by a single-node onnxruntime session (graph optimizations off, one thread):
the folded constant is then exactly what onnxruntime would have computed at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxsmith.errors import first_line
from onnxsmith.verify._session import session_options
from onnxsmith.passes.cleanup._constants import is_default_domain
from onnxsmith.passes.cleanup._numpy_kernels import KERNELS, Unsupported
from onnxsmith.passes.cleanup._single_node import input_names, single_node_model

__all__ = ["EvaluationError", "evaluate"]

log = logging.getLogger(__name__)

class EvaluationError(Exception):
    """The node could not be evaluated; it stays in the graph."""


def evaluate(node: ir.Node, inputs: Sequence[np.ndarray | None], opset_imports: Mapping[str, int],
             ir_version: int) -> list[np.ndarray]:
    """The node's outputs for the given input arrays (None for a missing optional input).

    Raises:
        EvaluationError: Neither numpy nor onnxruntime could evaluate the node.
    """
    kernel = KERNELS.get(node.op_type) if is_default_domain(node) else None
    if kernel is not None:
        try:
            outputs = kernel(node, inputs, opset_imports.get("", opset_imports.get("ai.onnx", 1)))
            return [np.asarray(a) for a in outputs]  # some numpy functions return scalars
        except Unsupported as e:
            log.debug("numpy cannot evaluate %s (%s); using onnxruntime", node.op_type, e)
        except (ValueError, IndexError, TypeError) as e:
            raise EvaluationError(f"{node.op_type}: {e}") from e
    return _run_onnxruntime(node, inputs, opset_imports, ir_version)


def _run_onnxruntime(node: ir.Node, inputs: Sequence[np.ndarray | None], opset_imports: Mapping[str, int],
                     ir_version: int) -> list[np.ndarray]:
    import onnxruntime as ort

    feeds = {name: a for name, a in zip(input_names(node), inputs) if a is not None}
    try:
        model = single_node_model(
            node, [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                   for n, a in feeds.items()], opset_imports, ir_version)
        session = ort.InferenceSession(model.SerializeToString(), session_options(),
                                       providers=["CPUExecutionProvider"])
        outputs = session.run(None, feeds)
    except Exception as e:  # onnxruntime raises its own exception types
        raise EvaluationError(f"{node.op_type}: onnxruntime: {first_line(e, 200)}") from e
    if not all(isinstance(a, np.ndarray) for a in outputs):
        raise EvaluationError(f"{node.op_type}: produces a sequence, map or optional, not a tensor")
    return outputs
