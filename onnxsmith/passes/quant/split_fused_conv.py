"""Rule ``split-fused-conv``: a com.microsoft FusedConv whose activation onnxruntime's QDQ Conv absorbs, back as Conv + activation.

``fuse`` on the ``cpu`` target writes ``Act(Conv(x, W, b))`` as one float contrib op,
``FusedConv(x, W, b, activation=Act)``. onnxruntime has no QDQ form of FusedConv: its QDQ
transformer turns ``DQ -> Conv -> Q`` into ``QLinearConv``, and drops a Relu or Clip between the
Conv and its QuantizeLinear when the QuantizeLinear's integer range already clips at the same
bounds (its ``ReluQuantFusion`` / ``ClipQuantFusion`` rewrites: with a uint8 output whose zero
point is 0, ``Q(Relu(y)) == Q(y)``). So, before planning::

    FusedConv(x, W, b?, activation="Relu")                          -> Relu(Conv(x, W, b?))
    FusedConv(x, W, b?, activation="Clip", activation_params=[lo, hi]) -> Clip(Conv(x, W, b?), lo, hi)

and ``annotate-quant`` plans the pair like any Conv with a fused activation: only the
activation's output is quantized, and onnxruntime runs ``QLinearConv`` with the activation folded
into its output range. The functions are the same on the same values (exact; onnxruntime's fused
kernel evaluates Relu and Clip exactly too). A pair the plan leaves float costs nothing either:
onnxruntime's own ``ConvActivationFusion`` makes it a FusedConv again when it loads the model.

Declined, with the reason, for the other activations (Sigmoid, Tanh, LeakyRelu, HardSigmoid: no
QDQ Conv absorbs them, so the FusedConv stays float), for a FusedConv with the residual input
``Z`` (QLinearConv has none), and for a Clip without both bounds in ``activation_params``.
"""

from __future__ import annotations

import numpy as np

from onnxsmith.passes.rewrite import Decline, Match, Op, Opt, Replacement, RewriterContext, RuleSet, Var, rule

__all__ = ["ABSORBED_ACTIVATIONS", "RULES", "split_reason"]

MS_DOMAIN = "com.microsoft"

#: FusedConv activations that onnxruntime folds into a quantized Conv's output QuantizeLinear.
ABSORBED_ACTIVATIONS = frozenset({"Relu", "Clip"})

_FUSED_ONLY = ("activation", "activation_params")


def split_reason(activation: str, has_residual: bool) -> str | None:
    """Why a FusedConv with ``activation`` cannot be quantized as Conv + activation, or None if it can."""
    if has_residual:
        return "FusedConv adds a residual input Z, which QLinearConv has not"
    if activation not in ABSORBED_ACTIVATIONS:
        return (f"FusedConv activation {activation} has no QDQ form in onnxruntime (only "
                f"{' and '.join(sorted(ABSORBED_ACTIVATIONS))} fold into QLinearConv): it stays float")
    return None


# FusedConv(x, W, b?, activation=Relu|Clip) -> Relu(Conv(x, W, b?)) | Clip(Conv(x, W, b?), lo, hi)
@rule("split-fused-conv",
      Op("FusedConv", Var("x"), Var("w"), Opt(Var("b")), Opt(Var("z")), _domain=MS_DOMAIN, _name="fused"))
def split_fused_conv(op: RewriterContext, m: Match) -> Replacement | Decline:
    """FusedConv(x, W, b?, activation=Act) -> Act(Conv(x, W, b?))"""
    attributes = m.attributes("fused")
    activation = str(attributes.get("activation", ""))
    reason = split_reason(activation, m["z"] is not None)
    if reason is not None:
        return Decline(reason)
    params = [float(p) for p in attributes.get("activation_params") or ()]
    conv = op.Conv(m["x"], m["w"], m["b"], **{k: v for k, v in attributes.items() if k not in _FUSED_ONLY})
    if activation == "Relu":
        return op.Relu(conv)
    if len(params) != 2:
        return Decline(f"Clip has activation_params {params}, expected [min, max]")
    if (m.opset("") or 0) < 11:
        return op.Clip(conv, min=params[0], max=params[1])
    dtype = np.float32  # FusedConv has only a float32 kernel
    return op.Clip(conv, op.initializer(np.array(params[0], dtype), "clip_min"),
                   op.initializer(np.array(params[1], dtype), "clip_max"))


RULES = RuleSet([split_fused_conv])
