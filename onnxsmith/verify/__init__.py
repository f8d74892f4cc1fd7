"""Verification: structural invariants, numeric equivalence with onnxruntime, pass contracts.

``check_pass``, ``check_contract``, ``PassContractViolation`` and the ``models`` strategy need
hypothesis (a test dependency), so they are imported on first use.
"""

from __future__ import annotations

from onnxsmith._lazy_imports import lazy_exports
from onnxsmith.verify.compare import OutputDiff, compare_outputs
from onnxsmith.verify.equivalence import EquivalenceReport, NotEquivalentError, assert_equivalent, check_equivalent
from onnxsmith.verify.inputs import generate_inputs
from onnxsmith.verify.structural import structure_problems, verify_structure

_LAZY = {
    "check_pass": "onnxsmith.verify.contract",
    "check_contract": "onnxsmith.verify.contract",
    "PassContractViolation": "onnxsmith.verify.contract",
    "models": "onnxsmith.verify.strategies",
}

__all__ = [
    "EquivalenceReport",
    "NotEquivalentError",
    "OutputDiff",
    "PassContractViolation",
    "assert_equivalent",
    "check_contract",
    "check_equivalent",
    "check_pass",
    "compare_outputs",
    "generate_inputs",
    "models",
    "structure_problems",
    "verify_structure",
]

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
