"""The rewrite engine: declarative patterns, rules, a worklist driver and a tracer.

Fusion and quantization passes are written as rules. A rule is a pattern plus a small function
that builds the replacement or declines with a reason::

    from onnxsmith.passes.rewrite import Const, Decline, Op, RewritePass, RuleSet, ShapePolicy, Var, rule

    # Add(MatMul(x, w), b) -> Gemm(x, w, b)      [x 2-D, w a constant matrix, b a [N] vector]
    @rule("matmul-add-to-gemm",
          Op("Add", Op("MatMul", Var("x"), Const("w", shape=ShapePolicy.ANY), _name="mm"),
             Const("b", shape=ShapePolicy.PER_CHANNEL)))
    def matmul_add_to_gemm(op, m):
        \"\"\"Add(MatMul(x, w), b) -> Gemm(x, w, b)\"\"\"
        if m["x"].shape is None or m["x"].shape.rank() != 2:
            return Decline("x is not 2-D")
        return op.Gemm(m["x"], m["w"], m["b"])

    class FuseGemm(RewritePass):
        \"\"\"Fuse MatMul + Add into Gemm.\"\"\"

        name = "fuse-gemm"
        rules = RuleSet([matmul_add_to_gemm])

The pattern language (``pattern``): ``Var`` (any value, captured by name), ``Const`` (a constant
with an explicit ``ShapePolicy``: ``SCALAR``, ``SCALAR_LIKE`` (scalar or ``[1]``),
``PER_CHANNEL`` / ``per_channel(axis)``, ``ANY``), ``Op`` (op type or a set of them, domain,
attribute values or predicates, ``.output(i)`` for other outputs) and ``Opt`` (an input that may
be absent). Commutative ONNX ops match their inputs in either order. A match is refused when an
intermediate value is used outside it, unless the rule sets ``allow_shared_intermediates``.

The rewrite function gets a ``RewriterContext`` (``op.Gemm(...)``, ``op.initializer(array)``) and
the ``Match`` (``m["x"]``, ``m.node("mm")``, ``m.const("w")``, ``m.attr("mm", "transB")``).
``apply_rules(model, rules)`` runs rules to a fixed point (``driver``); ``explain(rule, model,
node_name)`` says why a rule does not apply at a node (``trace``); ``testing.assert_rewrites`` and
``testing.assert_no_rewrite`` make a rule's golden and negative tests one call each.
"""

from __future__ import annotations

from onnxsmith.passes.rewrite.driver import RewriteStats, apply_rules
from onnxsmith.passes.rewrite.errors import RewriteLimitError, RuleError
from onnxsmith.passes.rewrite.failure import Reason
from onnxsmith.passes.rewrite.match import Match
from onnxsmith.passes.rewrite.pattern import (
    COMMUTATIVE_OPS,
    Const,
    Op,
    Opt,
    OutputOf,
    Var,
)
from onnxsmith.passes.rewrite.rewrite_pass import RewriteOptions, RewritePass
from onnxsmith.passes.rewrite.rewriter import RewriterContext
from onnxsmith.passes.rewrite.rule import Decline, Replacement, Rule, RuleSet, rule
from onnxsmith.passes.rewrite.shape_policy import ShapePolicy
from onnxsmith.passes.rewrite.trace import explain

__all__ = [
    "COMMUTATIVE_OPS",
    "Const",
    "Decline",
    "Match",
    "Op",
    "Opt",
    "OutputOf",
    "Reason",
    "Replacement",
    "RewriteLimitError",
    "RewriteOptions",
    "RewritePass",
    "RewriteStats",
    "RewriterContext",
    "Rule",
    "RuleError",
    "RuleSet",
    "ShapePolicy",
    "Var",
    "apply_rules",
    "explain",
    "rule",
]
