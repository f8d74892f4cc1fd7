"""Family ``silu``: SiLU (Swish), ``x * Sigmoid(x)``, as one com.microsoft QuickGelu.

onnxruntime's contrib op ``com.microsoft::QuickGelu`` (version 1) computes
``Y = X * Sigmoid(alpha * X)``; with ``alpha = 1`` that is SiLU::

    Mul(x, Sigmoid(x)) -> com.microsoft.QuickGelu(x, alpha=1.0)

The same function of the same values, but the CPU kernel evaluates the logistic function with
MLAS's vectorised approximation in the same pass as the product, so results differ by a few
float32 ulps. One pass over memory instead of two is the gain; onnxruntime's own level-2
optimizer (``QuickGeluFusion``) makes the same rewrite when a session loads the unfused model,
so against onnxruntime's default optimizations the speed is the same, and the gain is for
sessions with fewer optimizations and for the time to load. FusedConv has no SiLU activation, so
a Conv stays a Conv. Only for targets that run contrib ops (``cpu``); float32 only (the CPU
kernel's type). The rule imports ``com.microsoft`` version 1 if the model lacks it.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.passes.rewrite import Match, Op, Replacement, RewriterContext, RuleSet, Var, rule

__all__ = ["FAMILY", "RULES"]

FAMILY = "silu"

MS_DOMAIN = "com.microsoft"


# Mul(x, Sigmoid(x)) -> com.microsoft.QuickGelu(x, alpha=1.0)
@rule("silu-to-quick-gelu", Op("Mul", Var("x", dtype=ir.DataType.FLOAT), Op("Sigmoid", Var("x"))))
def silu_to_quick_gelu(op: RewriterContext, m: Match) -> Replacement:
    """Mul(x, Sigmoid(x)) -> com.microsoft.QuickGelu(x, alpha=1.0)"""
    op.import_opset(MS_DOMAIN, 1)
    return op.QuickGelu(m["x"], _domain=MS_DOMAIN, alpha=1.0)


RULES = RuleSet([silu_to_quick_gelu])
