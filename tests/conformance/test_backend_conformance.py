"""Conformance with the onnx package's backend test cases.

For every case: (1) loading and saving through ``onnxsmith.ir`` is lossless, as shipped and with
doc strings, metadata and value_info added (see conformance_lossless); (2) where onnxruntime
reproduces the case's expected outputs, it still does after the ``cleanup`` pipeline. Cases that
onnxruntime itself cannot load, run or reproduce are skipped, with the reason counted in the
summary line printed at the end of the session. See conformance_cases for
ONNXSMITH_CONFORMANCE_LIMIT.
"""

from __future__ import annotations

import onnx_ir as ir
import pytest
from conformance_cases import BackendCase, selected_cases
from conformance_lossless import annotate, round_trip
from conformance_ort import reproduce
from conformance_tally import TALLY

from onnxsmith.errors import OnnxsmithError
from onnxsmith.passes import PassManager
from onnxsmith.passes.registry import get_pipeline

CASES = selected_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_backend_case(case: BackendCase, workdir: str) -> None:
    TALLY.cases += 1
    model, samples = case.load()
    difference, loaded = round_trip(model, workdir)
    assert difference is None, f"round trip through onnxsmith.ir lost information: {difference}"
    difference, _ = round_trip(annotate(model), workdir)
    assert difference is None, f"round trip of the annotated model lost information: {difference}"
    TALLY.round_trip_ok += 1

    original = reproduce(model, samples, case.rtol, case.atol)
    if not original.ok:
        TALLY.skipped[original.kind] += 1
        pytest.skip(f"onnxruntime does not reproduce the original ({original.kind}): {original.detail}")
    TALLY.reproduced_by_ort += 1

    if get_pipeline("cleanup") is None:
        TALLY.skipped["no cleanup pipeline"] += 1
        pytest.skip("the cleanup pipeline is not registered")
    try:
        PassManager("cleanup").run(loaded)
    except OnnxsmithError as e:
        TALLY.broken_by_cleanup.append(f"{case.id} (cleanup raised: {e.message})")
        raise
    after = reproduce(ir.to_proto(loaded), samples, case.rtol, case.atol)
    if not after.ok:
        TALLY.broken_by_cleanup.append(f"{case.id} ({after.kind}: {after.detail})")
    assert after.ok, f"after cleanup onnxruntime no longer reproduces the case ({after.kind}): {after.detail}"
    TALLY.reproduced_after_cleanup += 1
