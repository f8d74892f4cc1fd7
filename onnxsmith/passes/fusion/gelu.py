"""Family ``gelu``: decomposed GELU as the standard ONNX ``Gelu`` (opset 20).

ONNX ``Gelu`` (since opset 20) computes ``0.5 * x * (1 + erf(x / sqrt(2)))``, and with
``approximate="tanh"`` ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))``. Every
exporter form of either (see :mod:`onnxsmith.passes.fusion._gelu_forms`) becomes one node::

    (x * (1 + Erf(x / sqrt(2)))) * 0.5               -> Gelu(x)
    x * ((1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3))) * 0.5) -> Gelu<approximate="tanh">(x)

The rules decline below ONNX opset 20 (the ``contrib-gelu`` and ``fast-gelu`` families cover
onnxruntime there) and for dtypes other than float32. The result is the same function; kernels
evaluate erf and tanh with their own approximations, a few float32 ulps apart.
"""

from __future__ import annotations

from onnxsmith.passes.fusion._gelu_forms import check_constants, check_erf_scale, erf_forms, tanh_forms
from onnxsmith.passes.rewrite import Decline, Match, Replacement, RewriterContext, Rule, RuleSet, rule

__all__ = ["FAMILY", "RULES"]

FAMILY = "gelu"

_GELU_OPSET = 20


def _opset_decline(m: Match) -> Decline | None:
    opset = m.opset("") or 0
    if opset < _GELU_OPSET:
        return Decline(f"Gelu is ONNX opset {_GELU_OPSET}; the model imports opset {opset}")
    return None


def _erf_gelu(op: RewriterContext, m: Match) -> Replacement | Decline:
    """x * 0.5 * (1 + Erf(x / sqrt(2))) -> Gelu(x)"""
    decline = _opset_decline(m) or check_constants(m) or check_erf_scale(m)
    return decline or op.Gelu(m["x"])


def _tanh_gelu(op: RewriterContext, m: Match) -> Replacement | Decline:
    """x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> Gelu<approximate="tanh">(x)"""
    decline = _opset_decline(m) or check_constants(m)
    return decline or op.Gelu(m["x"], approximate="tanh")


def _rules() -> list[Rule]:
    # x * 0.5 * (1 + Erf(x / sqrt(2))) -> Gelu(x)                         [ONNX opset >= 20]
    erf = [rule(f"gelu-erf-{suffix}", pattern)(_erf_gelu) for suffix, pattern in erf_forms()]
    # x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> Gelu<approximate="tanh">(x)   [opset >= 20]
    tanh = [rule(f"gelu-tanh-{suffix}", pattern)(_tanh_gelu) for suffix, pattern in tanh_forms()]
    return erf + tanh


RULES = RuleSet(_rules())
