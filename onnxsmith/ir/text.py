"""ONNX text format helpers for tests and golden files.

The textual syntax is ONNX's own (``onnx.parser``)::

    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x) => (float[N, 4] y) {
        y = Relu(x)
    }
"""

from __future__ import annotations

import onnx
import onnx.parser
import onnx_ir as ir

from onnxsmith.errors import ModelInputError, first_line

__all__ = ["parse_text", "to_text"]


def parse_text(text: str, *, check: bool = True) -> ir.Model:
    """Parses a model written in ONNX text format into an ``onnx_ir.Model``.

    Args:
        text: Model text (``<header> graph (inputs) => (outputs) { ... }``).
        check: Run the ONNX checker on the parsed model.
    """
    try:
        proto = onnx.parser.parse_model(text)
    except onnx.parser.ParseError as e:
        raise ModelInputError(f"cannot parse ONNX text: {first_line(e)}") from e
    if check:
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as e:
            raise ModelInputError(f"ONNX text fails the checker: {first_line(e)}") from e
    return ir.serde.deserialize_model(proto)


def to_text(model: ir.Model, *, include_initializers: bool = True) -> str:
    """Prints a model in ONNX text format (the inverse of :func:`parse_text`)."""
    return ir.to_onnx_text(model, exclude_initializers=not include_initializers)
