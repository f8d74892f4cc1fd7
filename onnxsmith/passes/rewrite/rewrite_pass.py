"""``RewritePass``: a pass made from a rule set in a few lines.

Example::

    @register_pass
    class FuseGemm(RewritePass):
        \"\"\"Fuse MatMul + Add into Gemm.\"\"\"

        name = "fuse-gemm"
        rules = RuleSet([matmul_add_to_gemm])

Options (``fuse-gemm{rules=matmul-add-to-gemm;explain=true}``): ``rules`` selects a subset by name,
``explain`` sends one line per rejected attempt to ``PassContext.explain`` (also on in debug
mode), ``max-rewrites`` overrides the driver's cap. ``PassResult.stats`` holds the driver's
statistics: rewrites, attempts, applied per rule and rejected attempts per rule and reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import onnx_ir as ir

from onnxsmith.passes.base import Pass, PassContext, PassResult
from onnxsmith.passes.rewrite.driver import apply_rules
from onnxsmith.passes.rewrite.rule import RuleSet

__all__ = ["RewriteOptions", "RewritePass"]


@dataclass
class RewriteOptions:
    """Options of every rewrite pass.

    Attributes:
        rules: Apply only these rules (or rule families, for fuse); all if empty.
        explain: Log one line per rejected match attempt, with the reason.
        max_rewrites: Stop with an error after this many rewrites (default: the driver's cap).
    """

    rules: list[str] = field(default_factory=list)
    explain: bool = False
    max_rewrites: int | None = None


class RewritePass(Pass):
    """Base class of passes that apply a rule set to a fixed point (subclass: set name and rules)."""

    Options: ClassVar[type] = RewriteOptions
    rules: ClassVar[RuleSet] = RuleSet(())

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        options: RewriteOptions = self.options
        rules = self.rules.select(options.rules, owner=self.name) if options.rules else self.rules
        explain = None
        if options.explain or ctx.debug:
            def explain(message: str) -> None:
                ctx.explain(self.name, message)
        stats = apply_rules(model, rules, max_rewrites=options.max_rewrites, explain=explain)
        return PassResult(stats.rewrites > 0, stats.to_dict())
