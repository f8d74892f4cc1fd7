"""The quantization plan as data: what ``annotate-quant`` decided and ``insert-qdq`` materialises.

A :class:`QuantPlan` holds

- one :class:`ValueSpec` per value to quantize (by name): integer type, symmetric or not,
  per-tensor or per-channel (``axis``), where its range comes from, and the range itself:

  - ``"calibrated"``: an activation with a calibrated ``[min, max]``;
  - ``"weight"``: a constant, quantized from its own values (per channel along ``axis``);
  - ``"shared-with:<value>"``: the output of a scale-preserving op (Reshape, Transpose,
    MaxPool...) that takes the scale and zero point of ``<value>``, so that onnxruntime can drop
    the Q/DQ pair around the op and run it on integers;
  - ``"bias"``: a Conv/Gemm bias, stored as int32 with scale ``s_input * s_weight`` by ``fold-scales``;

- one :class:`NodeDecision` per node considered: ``quantize`` or ``skip`` with the reason
  (excluded by the user, absurd input range, inside a decomposed LayerNorm...).

The plan is plain data (``to_dict``/``from_dict`` round-trip through JSON); it travels between
passes in ``PassContext.data["quant-plan"]`` and its :meth:`QuantPlan.stats` go to the report.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from onnxsmith.errors import OnnxsmithError

__all__ = ["CONTEXT_KEY", "NodeDecision", "QuantPlan", "ValueSpec", "is_absurd"]

#: Key in ``PassContext.data`` and name of the property that says a plan is present.
CONTEXT_KEY = "quant-plan"

Granularity = Literal["per-tensor", "per-channel"]


@dataclass
class ValueSpec:
    """How one value is quantized.

    Attributes:
        dtype: Integer type name (``uint8``, ``int8``, ``int16``, ``int32`` for biases).
        symmetric: Zero point at the type's midpoint (0 for signed types).
        axis: Channel axis for per-channel parameters, None per tensor.
        source: ``calibrated``, ``weight``, ``bias`` or ``shared-with:<value>``.
        range: ``[min, max]`` of a calibrated value (None for weights, biases and shared values).
        narrow: Signed weights use ``[-127, 127]`` (what onnxruntime's s8 kernels and TensorRT expect).
    """

    dtype: str
    symmetric: bool = False
    axis: int | None = None
    source: str = "calibrated"
    range: tuple[float, float] | None = None
    narrow: bool = False

    @property
    def granularity(self) -> Granularity:
        return "per-tensor" if self.axis is None else "per-channel"

    @property
    def shared_with(self) -> str | None:
        """The value whose parameters this one takes, if any."""
        return self.source.partition(":")[2] if self.source.startswith("shared-with:") else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dtype": self.dtype, "symmetric": self.symmetric, "granularity": self.granularity,
                               "source": self.source}
        if self.axis is not None:
            out["axis"] = self.axis
        if self.range is not None:
            out["range"] = [float(self.range[0]), float(self.range[1])]
        if self.narrow:
            out["narrow"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValueSpec:
        rng = data.get("range")
        return cls(dtype=data["dtype"], symmetric=bool(data.get("symmetric", False)), axis=data.get("axis"),
                   source=data.get("source", "calibrated"),
                   range=(float(rng[0]), float(rng[1])) if rng is not None else None,
                   narrow=bool(data.get("narrow", False)))


#: How a quantized node runs on integers.
Role = Literal["integer", "shared-scale", "fused-activation", ""]


@dataclass
class NodeDecision:
    """What the plan does with one node: ``quantize`` it, or ``skip`` it and why.

    Attributes:
        op: Op type (``domain::Op`` outside the default domain).
        action: ``quantize`` or ``skip``.
        reason: Why (always given for a skip).
        role: For a quantized node: ``integer`` (its own integer kernel reads quantized inputs),
            ``shared-scale`` (a scale-preserving op between values with one scale), or
            ``fused-activation`` (a Relu/Clip the integer kernel before it absorbs; its output is
            quantized in place of that kernel's).
    """

    op: str
    action: Literal["quantize", "skip"]
    reason: str = ""
    role: Role = ""

    def to_dict(self) -> dict[str, str]:
        out = {"op": self.op, "action": self.action}
        if self.role:
            out["role"] = self.role
        if self.reason:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeDecision:
        return cls(op=data["op"], action=data["action"], reason=data.get("reason", ""), role=data.get("role", ""))


@dataclass
class QuantPlan:
    """Per value a :class:`ValueSpec`, per node a :class:`NodeDecision` (see module docstring).

    Attributes:
        values: Specs by value name.
        nodes: Decisions by node name.
        target: The target the plan was made for.
        qdq_domain: Domain of the QuantizeLinear/DequantizeLinear nodes (``""`` or ``com.microsoft``).
    """

    values: dict[str, ValueSpec] = field(default_factory=dict)
    nodes: dict[str, NodeDecision] = field(default_factory=dict)
    target: str = "generic"
    qdq_domain: str = ""

    def quantized_nodes(self) -> list[str]:
        return [name for name, d in self.nodes.items() if d.action == "quantize"]

    def skipped(self) -> dict[str, str]:
        """Skipped node -> reason."""
        return {name: d.reason for name, d in self.nodes.items() if d.action == "skip"}

    def stats(self) -> dict[str, Any]:
        """Counts for the pass report: quantized nodes by op, skipped nodes by reason, values by source."""
        quantized = Counter(d.op for d in self.nodes.values() if d.action == "quantize")
        reasons = Counter(d.reason.split(":")[0] for d in self.nodes.values() if d.action == "skip")
        sources = Counter(s.source.partition(":")[0] for s in self.values.values())
        return {"quantized": dict(sorted(quantized.items())), "skipped": dict(sorted(reasons.items())),
                "values": dict(sorted(sources.items()))}

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "qdq_domain": self.qdq_domain,
                "values": {name: spec.to_dict() for name, spec in self.values.items()},
                "nodes": {name: d.to_dict() for name, d in self.nodes.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantPlan:
        return cls(values={k: ValueSpec.from_dict(v) for k, v in data.get("values", {}).items()},
                   nodes={k: NodeDecision.from_dict(v) for k, v in data.get("nodes", {}).items()},
                   target=data.get("target", "generic"), qdq_domain=data.get("qdq_domain", ""))

    def store(self, ctx: Any) -> None:
        """Puts the plan into a ``PassContext`` for ``insert-qdq``."""
        ctx.data[CONTEXT_KEY] = self
        ctx.properties.add(CONTEXT_KEY)

    @staticmethod
    def from_context(ctx: Any) -> QuantPlan:
        """The plan stored in a ``PassContext``.

        Raises:
            OnnxsmithError: There is none.
        """
        plan = ctx.data.get(CONTEXT_KEY)
        if not isinstance(plan, QuantPlan):
            raise OnnxsmithError("no quantization plan in the pass context", "run 'annotate-quant' first")
        return plan


def is_absurd(low: float, high: float, limit: float) -> bool:
    """A calibrated range that is no data range: non-finite, or reaching ``limit`` in magnitude."""
    return not (math.isfinite(low) and math.isfinite(high)) or max(abs(low), abs(high)) >= limit
