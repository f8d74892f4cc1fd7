"""The registry of gradient rules, keyed by operator type.

A gradient rule is the vector-Jacobian product of one operator: given the node and the gradients
of the loss with respect to its outputs, it appends the nodes that compute the gradients with
respect to its inputs and returns them::

    @gradient("Mul")
    def mul(ctx: GradContext, node: ir.Node, output_grads: list[ir.Value | None]) -> list[ir.Value | None]:
        a, b = node.inputs
        dy = output_grads[0]
        return [ctx.unbroadcast(ctx.op("Mul", dy, b), a), ctx.unbroadcast(ctx.op("Mul", dy, a), b)]

``output_grads`` holds one entry per output, None where no gradient flows into that output. The
rule returns one entry per input, None for inputs that get no gradient. ``nondifferentiable``
lists input positions that never carry a gradient (shapes, indices, axes, running statistics):
the reverse sweep stops there, so no parameter is reached through them and no rule is asked.
Integer and boolean values carry no gradient, with one exception: a rule may declare, with
``integer_outputs``, which of its integer outputs carry a real-valued gradient to their readers
(QuantizeLinear's codes read only by DequantizeLinear, the fake-quantization pair).

A rule that reads optional outputs of its forward node (LayerNormalization's Mean and InvStdDev,
MaxPool's Indices) declares how many outputs it wants with ``forward_outputs``: before the sweep,
a forward node with fewer is replaced by the same node with all of them, so the backward reads
what the forward computed anyway instead of recomputing it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import onnx_ir as ir

from onnxsmith.errors import UnsupportedError

if TYPE_CHECKING:
    from onnxsmith.passes.train.context import GradContext

__all__ = ["GradientFunction", "GradientRule", "IntegerOutputs", "find_rule", "get_rule", "gradient", "registered_ops"]

GradientFunction = Callable[["GradContext", ir.Node, Sequence["ir.Value | None"]], Sequence["ir.Value | None"]]

#: Says whether an integer output of a node carries a gradient (see ``gradient(integer_outputs=...)``).
IntegerOutputs = Callable[[ir.Value], bool]


@dataclass(frozen=True)
class GradientRule:
    """One operator's gradient: the function, the inputs it never differentiates, which integer
    outputs carry a gradient (none when ``integer_outputs`` is None), and how many outputs the
    forward node should have (``forward_outputs``; 0: as the model has it)."""

    domain: str
    op_type: str
    function: GradientFunction
    nondifferentiable: frozenset[int]
    integer_outputs: IntegerOutputs | None = None
    forward_outputs: int = 0

    def differentiable(self, index: int) -> bool:
        """Whether input ``index`` can carry a gradient at all."""
        return index not in self.nondifferentiable


_RULES: dict[tuple[str, str], GradientRule] = {}

MS_DOMAIN = "com.microsoft"  # onnxruntime's contrib ops: what the fuse pass writes


def gradient(op_type: str, *, domain: str = "", nondifferentiable: Iterable[int] = (),
             integer_outputs: IntegerOutputs | None = None, forward_outputs: int = 0
             ) -> Callable[[GradientFunction], GradientFunction]:
    """Registers the decorated function as the gradient rule of ``(domain, op_type)``.

    Args:
        op_type: The operator type, e.g. ``"MatMul"``.
        domain: Its domain; ``""`` is the default ONNX domain.
        nondifferentiable: Input positions that never carry a gradient.
        integer_outputs: Whether an integer output of the operator carries a real-valued gradient
            (its readers' rules must understand it); integer outputs carry none by default.
        forward_outputs: The number of outputs the rule reads from the forward node; optional
            outputs the model lacks are added to it before the sweep.
    """

    def register(function: GradientFunction) -> GradientFunction:
        _load_builtin_rules()  # first, so that a rule registered twice is reported whoever registers first
        key = (_domain(domain), op_type)
        if key in _RULES:
            raise ValueError(f"a gradient rule for {op_type} is already registered")
        _RULES[key] = GradientRule(key[0], op_type, function, frozenset(nondifferentiable), integer_outputs,
                                   forward_outputs)
        return function

    return register


def get_rule(node: ir.Node) -> GradientRule:
    """The rule of ``node``'s operator.

    Raises:
        UnsupportedError: No rule is registered for the operator; the message names the node.
    """
    _load_builtin_rules()
    rule = _RULES.get((_domain(node.domain), node.op_type))
    if rule is None:
        where = f"'{node.name}'" if node.name else "without a name"
        domain = f" (domain '{node.domain}')" if _domain(node.domain) else ""
        fused = ("train the model before 'fuse'; else " if _domain(node.domain) == MS_DOMAIN
                 else "")
        raise UnsupportedError(
            f"no gradient rule for {node.op_type}{domain}: node {where} lies between a parameter and the loss",
            f"{fused}freeze the parameters that reach it (build-gradients{{freeze=...}}) or register a rule with "
            "onnxsmith.passes.train.gradient")
    return rule


def find_rule(node: ir.Node) -> GradientRule | None:
    """The rule of ``node``'s operator, or None."""
    _load_builtin_rules()
    return _RULES.get((_domain(node.domain), node.op_type))


def registered_ops() -> list[str]:
    """Operator types with a gradient rule (``domain::op`` outside the default domain), sorted."""
    _load_builtin_rules()
    return sorted(op if not domain else f"{domain}::{op}" for domain, op in _RULES)


def _load_builtin_rules() -> None:
    """Imports the built-in rules (``gradients/``, which register themselves) on first use of the registry.

    Not at start-up: a run that builds no gradients skips their nine modules (about 6 ms). While the
    package is being imported, its own registrations find it in ``sys.modules`` and go on.
    """
    if "onnxsmith.passes.train.gradients" not in sys.modules:
        import onnxsmith.passes.train.gradients  # noqa: F401


def _domain(domain: str) -> str:
    return "" if domain == "ai.onnx" else domain
