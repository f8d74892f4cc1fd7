"""Verification: structural invariants, numeric equivalence with onnxruntime, pass contracts."""

from __future__ import annotations

from onnxsmith.verify.compare import OutputDiff, compare_outputs
from onnxsmith.verify.inputs import generate_inputs
from onnxsmith.verify.structural import structure_problems, verify_structure

__all__ = ["OutputDiff", "compare_outputs", "generate_inputs", "structure_problems", "verify_structure"]
