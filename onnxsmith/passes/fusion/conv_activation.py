"""Family ``conv-activation``: a Conv followed by an activation as one com.microsoft FusedConv.

onnxruntime's CPU contrib op ``com.microsoft::FusedConv`` (version 1, float32) computes
``activation(Conv(X, W, B))`` with the Conv attributes of ONNX Conv plus ``activation`` (a string)
and ``activation_params`` (floats); its kernel applies the activation to each output element
after the convolution, so::

    Relu(Conv(x, W, b?))                -> FusedConv(x, W, b?, activation="Relu")
    Sigmoid / Tanh (Conv(...))          -> FusedConv(..., activation="Sigmoid" / "Tanh")
    LeakyRelu<alpha>(Conv(...))         -> FusedConv(..., activation="LeakyRelu", activation_params=[alpha])
    HardSigmoid<alpha, beta>(Conv(...)) -> FusedConv(..., activation="HardSigmoid", activation_params=[alpha, beta])
    Clip(Conv(...), min?, max?)         -> FusedConv(..., activation="Clip", activation_params=[min, max])

An absent Clip bound is the float32 extreme (Clip's own default); bounds are inputs from opset 11
and attributes before. The activation is the same function evaluated on the same values, but
onnxruntime's fused kernels evaluate Sigmoid and Tanh with their own vectorised approximations,
so results differ by a few float32 ulps. The rule imports ``com.microsoft`` version 1 if the model
lacks it. Only for targets that run contrib ops (``cpu``); the ``generic`` target never applies it.

Declined when the dtype is not float32 (the only FusedConv kernel) or a Clip bound is not a
scalar constant; the Conv output used elsewhere is the engine's shared-intermediate check.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Opt, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S

__all__ = ["FAMILY", "RULES"]

FAMILY = "conv-activation"

MS_DOMAIN = "com.microsoft"

_FLOAT32 = frozenset({ir.DataType.FLOAT})

#: Activation -> its attributes that FusedConv takes as ``activation_params``, with their defaults.
_PARAMS: dict[str, tuple[tuple[str, float], ...]] = {
    "Relu": (),
    "Sigmoid": (),
    "Tanh": (),
    "LeakyRelu": (("alpha", 0.01),),
    "HardSigmoid": (("alpha", 0.2), ("beta", 0.5)),
}


def _conv() -> Op:
    return Op("Conv", Var("x", dtype=_FLOAT32), Var("w"), Opt(Var("b")), _name="conv")


def _fused(op: RewriterContext, m: Match, activation: str, params: list[float]) -> ir.Value:
    """FusedConv with the matched Conv's inputs and attributes plus the activation."""
    op.import_opset(MS_DOMAIN, 1)
    return op.FusedConv(m["x"], m["w"], m["b"], _domain=MS_DOMAIN, activation=activation,
                        activation_params=params or None, **m.attributes("conv"))


# Act(Conv(x, W, b?)) -> com.microsoft.FusedConv(x, W, b?, activation=Act, activation_params=[...])
@rule("conv-activation", Op(frozenset(_PARAMS), _conv(), _name="act"))
def conv_activation(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Act(Conv(x, W, b?)) -> FusedConv(x, W, b?, activation=Act)"""
    activation = m.node("act").op_type
    params = [float(m.attr("act", name, default)) for name, default in _PARAMS[activation]]
    return _fused(op, m, activation, params)


# Clip(Conv(x, W, b?), min?, max?) -> com.microsoft.FusedConv(x, W, b?, activation="Clip", activation_params=[min, max])
@rule("conv-clip",
      Op("Clip", _conv(), Opt(Const("min", shape=S.SCALAR)), Opt(Const("max", shape=S.SCALAR)), _name="act"))
def conv_clip(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Clip(Conv(x, W, b?), min?, max?) -> FusedConv(x, W, b?, activation="Clip")"""
    lowest, highest = np.finfo(np.float32).min, np.finfo(np.float32).max
    bounds = []
    for name, default in (("min", lowest), ("max", highest)):
        array = m.const(name)
        bounds.append(float(m.attr("act", name, default)) if array is None else float(array))
    return _fused(op, m, "Clip", bounds)


RULES = RuleSet([conv_activation, conv_clip])
