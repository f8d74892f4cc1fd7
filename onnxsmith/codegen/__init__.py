"""Targets: what each execution provider runs, and checks that a model runs where intended.

``get_target(name)`` returns a ``Target`` (op table, fusion families, quantization constraints);
``Target.unsupported_nodes(model)`` is the static legality check; ``ep_check(model, target)`` asks
onnxruntime itself where every node runs.
"""

from __future__ import annotations

from onnxsmith.codegen.ep_check import EpReport, NodePlacement, ep_check
from onnxsmith.codegen.fusion_families import FUSION_FAMILIES, STANDARD_FUSIONS
from onnxsmith.codegen.optable import Kernel, OpTable
from onnxsmith.codegen.quant import QuantConstraints
from onnxsmith.codegen.target import Target, UnsupportedNode
from onnxsmith.codegen.targets import UnknownTargetError, get_target, list_targets, target_of

__all__ = [
    "FUSION_FAMILIES",
    "STANDARD_FUSIONS",
    "EpReport",
    "Kernel",
    "NodePlacement",
    "OpTable",
    "QuantConstraints",
    "Target",
    "UnknownTargetError",
    "UnsupportedNode",
    "ep_check",
    "get_target",
    "list_targets",
    "target_of",
]
