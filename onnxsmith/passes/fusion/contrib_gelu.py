"""Family ``contrib-gelu``: decomposed exact GELU as onnxruntime's ``com.microsoft.Gelu``.

``com.microsoft::Gelu`` (version 1, float32 on CPU) computes ``0.5 * x * (1 + erf(x / sqrt(2)))``
at any ONNX opset, so every exporter form of exact GELU (see
:mod:`onnxsmith.passes.fusion._gelu_forms`) becomes one node::

    (x * (1 + Erf(x / sqrt(2)))) * 0.5   -> com.microsoft.Gelu(x)

For targets that run contrib ops (``cpu``) this family runs before ``gelu``, so onnxruntime gets
its own kernel (which ``bias-gelu`` can then merge with a bias Add) even at opset 20. The kernel
evaluates erf with its own vectorised approximation, a few float32 ulps from the decomposed form.
The rule imports ``com.microsoft`` version 1 if the model lacks it; float32 only.
"""

from __future__ import annotations

from onnxsmith.passes.fusion._gelu_forms import check_constants, check_erf_scale, erf_forms
from onnxsmith.passes.rewrite import Decline, Match, Replacement, RewriterContext, RuleSet, rule

__all__ = ["FAMILY", "RULES"]

FAMILY = "contrib-gelu"

MS_DOMAIN = "com.microsoft"


def _contrib_gelu(op: RewriterContext, m: Match) -> Replacement | Decline:
    """x * 0.5 * (1 + Erf(x / sqrt(2))) -> com.microsoft.Gelu(x)"""
    decline = check_constants(m) or check_erf_scale(m)
    if decline:
        return decline
    op.import_opset(MS_DOMAIN, 1)
    return op.Gelu(m["x"], _domain=MS_DOMAIN)


# x * 0.5 * (1 + Erf(x / sqrt(2))) -> com.microsoft.Gelu(x)      [one rule per exporter placement]
RULES = RuleSet(rule(f"contrib-gelu-erf-{suffix}", pattern)(_contrib_gelu) for suffix, pattern in erf_forms())
