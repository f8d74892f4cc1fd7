"""Running a quantization pass's rule set with its declines sent to the context's trace."""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.passes.base import PassContext, PassResult
from onnxsmith.passes.rewrite import RuleSet, apply_rules

__all__ = ["apply_traced"]


def apply_traced(pass_name: str, model: ir.Model, rules: RuleSet, ctx: PassContext, *, explain: bool,
                 max_rewrites: int | None = None) -> PassResult:
    """Applies ``rules`` to a fixed point; with ``explain`` (or ``ctx.debug``) each decline goes to
    ``ctx.explain(pass_name, ...)``; ``max_rewrites`` caps the driver. Returns the result with the
    driver's statistics."""
    trace = None
    if explain or ctx.debug:
        def trace(message: str) -> None:
            ctx.explain(pass_name, message)
    stats = apply_rules(model, rules, max_rewrites=max_rewrites, explain=trace)
    return PassResult(stats.rewrites > 0, stats.to_dict())
