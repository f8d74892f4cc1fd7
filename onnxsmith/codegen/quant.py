"""What a target accepts from quantization: formats, integer types, schemes, integer kernels.

Quantization maps a real value ``x`` to ``q = saturate(round(x / scale) + zero_point)``. A target
constrains the integer types of activations and weights, whether zero points must be 0
(symmetric), whether weights may carry one scale per output channel or per block, and in which
graph form the result must be written:

- ``qdq``: QuantizeLinear/DequantizeLinear pairs around float ops; the runtime fuses them into
  integer kernels where it has them.
- ``qoperator``: explicit integer ops (QLinearConv, QLinearMatMul, MatMulInteger...).

``integer_ops`` names the ops (``domain::Op``, default domain bare) that compute in integers on
the target: what a quantized model should end up running, as counted by ``ep_check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import onnx_ir as ir

__all__ = ["FORMATS", "ONNX_QUANT_MIN_OPSET", "QuantConstraints", "dtype_of"]

FORMATS = frozenset({"qdq", "qoperator"})

#: First default-domain opset with each QuantizeLinear/DequantizeLinear feature (ONNX operator spec).
ONNX_QUANT_MIN_OPSET = MappingProxyType({
    "uint8": 10, "int8": 10,
    "per-channel": 13,  # the `axis` attribute
    "uint16": 21, "int16": 21, "uint4": 21, "int4": 21,
    "blockwise": 21,  # the `block_size` attribute
})


def dtype_of(name: str) -> ir.DataType:
    """``"uint8"`` or onnxruntime's ``"tensor(uint8)"`` -> ``ir.DataType.UINT8``."""
    if name.startswith("tensor(") and name.endswith(")"):
        name = name[len("tensor("):-1]
    return ir.DataType[name.upper()]


@dataclass(frozen=True)
class QuantConstraints:
    """Quantization facts of one target.

    Attributes:
        formats: Accepted graph forms, a subset of ``{"qdq", "qoperator"}``.
        activation_dtypes: Integer types activations may be quantized to.
        weight_dtypes: Integer types weights may be stored as.
        preferred_activation / preferred_weight: The pair the target's fastest integer kernels take.
        symmetric_activations / symmetric_weights: Zero points must be 0.
        per_channel_weights: Weights may have one scale per output channel (activations are per-tensor).
        blockwise_weights: Weights may have one scale per block along the reduction axis (int4 weight-only).
        integer_ops: Ops that compute in integers on this target (``domain::Op``, default domain bare).
        min_opset: Default-domain opset needed per feature (dtype name, ``per-channel``, ``blockwise``).
        notes: Facts that do not fit a field, with their source.
    """

    formats: frozenset[str]
    activation_dtypes: frozenset[ir.DataType]
    weight_dtypes: frozenset[ir.DataType]
    preferred_activation: ir.DataType
    preferred_weight: ir.DataType
    symmetric_activations: bool = False
    symmetric_weights: bool = False
    per_channel_weights: bool = True
    blockwise_weights: bool = False
    integer_ops: frozenset[str] = frozenset()
    min_opset: Mapping[str, int] = field(default_factory=lambda: ONNX_QUANT_MIN_OPSET)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.formats <= FORMATS:
            raise ValueError(f"unknown quantization formats: {sorted(self.formats - FORMATS)}")
        if self.preferred_activation not in self.activation_dtypes or self.preferred_weight not in self.weight_dtypes:
            raise ValueError("the preferred types must be among the accepted ones")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (types by lower-case name)."""
        return {
            "formats": sorted(self.formats),
            "activation_dtypes": sorted(t.name.lower() for t in self.activation_dtypes),
            "weight_dtypes": sorted(t.name.lower() for t in self.weight_dtypes),
            "preferred": {"activation": self.preferred_activation.name.lower(),
                          "weight": self.preferred_weight.name.lower()},
            "symmetric_activations": self.symmetric_activations,
            "symmetric_weights": self.symmetric_weights,
            "per_channel_weights": self.per_channel_weights,
            "blockwise_weights": self.blockwise_weights,
            "integer_ops": sorted(self.integer_ops),
            "min_opset": dict(self.min_opset),
            "notes": list(self.notes),
        }
