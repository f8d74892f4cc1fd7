"""The fast serializer used by ``save`` writes onnx_ir's very bytes for every onnx backend model.

Each case is compared as shipped, annotated (doc strings, metadata, inferred value_info; see
conformance_lossless) and after ``infer_shapes`` has typed its values in the IR.
"""

from __future__ import annotations

from pathlib import Path

import onnx_ir as ir
import pytest
from conformance_cases import BackendCase, selected_cases
from conformance_lossless import annotate

from onnxsmith.ir import infer_shapes
from onnxsmith.ir._fast_serialize import serialize_model
from onnxsmith.ir._proto_extras import deserialize

CASES = selected_cases()


def _differs(model: ir.Model) -> bool:
    return serialize_model(model).SerializeToString() != ir.serde.serialize_model(model).SerializeToString()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fast_serializer_matches_onnx_ir(case: BackendCase) -> None:
    proto, _ = case.load()
    for label, source in (("shipped", proto), ("annotated", annotate(proto))):
        model = deserialize(source, Path("."))
        assert not _differs(model), f"{label} model serialized differently"
        infer_shapes(model)
        assert not _differs(model), f"{label} model, shapes inferred, serialized differently"
