"""Every registered pass, built in or plugin, keeps the pass contract on random models.

The list of passes is read from the registry when pytest collects this file, so a new pass is
checked without touching this test. ONNXSMITH_CONTRACT_EXAMPLES sets how many models each pass
sees (default 30).
"""

from __future__ import annotations

import os

import pytest

from onnxsmith.passes import list_passes
from onnxsmith.passes.quant.testing import calibrated_context
from onnxsmith.verify import check_pass

EXAMPLES = int(os.environ.get("ONNXSMITH_CONTRACT_EXAMPLES", "30"))

#: Passes that need calibration data in their context (static quantization).
CALIBRATED = frozenset({"annotate-quant", "insert-qdq"})


@pytest.mark.parametrize("name", sorted(list_passes()))
def test_pass_keeps_its_contract(name: str) -> None:
    check_pass(name, max_examples=EXAMPLES, context=calibrated_context(name) if name in CALIBRATED else None)
