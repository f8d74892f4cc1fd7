"""``prepare-quant``: put a float graph in the form static quantization plans on; first pass of ``qdq``.

Two rewrites, each exact up to float re-association, applied to a fixed point:

- BatchNormalization after a Conv, ConvTranspose, Gemm or 2-D MatMul is folded into its weights
  and bias -- the rules of the fusion family ``conv-bn``
  (:mod:`onnxsmith.passes.fusion.conv_bn`, where the algebra is written down), reused as they
  are. ``cleanup,qdq`` thus quantizes the folded weights, as ``cleanup,fuse,qdq`` does, instead of
  a Conv whose integer output is dequantized for a float BatchNormalization. A BatchNormalization
  that cannot fold (training mode, non-constant parameters) stays, with the rule's reason.
- A com.microsoft FusedConv whose activation onnxruntime's QDQ Conv absorbs (Relu, Clip) becomes
  Conv + activation again (:mod:`~onnxsmith.passes.quant.split_fused_conv`), so that
  ``cleanup,fuse,qdq`` quantizes the convolutions ``fuse`` wrote on the ``cpu`` target.

Why a pass of its own rather than part of ``annotate-quant``: it changes the model, the plan does
not; as a rewrite pass it reports each rule's applications and, with ``explain=true``, why a
BatchNormalization or FusedConv was left alone. ``annotate-quant`` run without it skips a
FusedConv with a reason naming this pass.
"""

from __future__ import annotations

from onnxsmith.passes.base import Tolerance
from onnxsmith.passes.fusion import conv_bn
from onnxsmith.passes.quant import split_fused_conv
from onnxsmith.passes.registry import register_pass
from onnxsmith.passes.rewrite import RewritePass, RuleSet

__all__ = ["PrepareQuant"]


@register_pass
class PrepareQuant(RewritePass):
    """Fold BatchNormalization into linear ops and split FusedConv(Relu/Clip) before quantization."""

    name = "prepare-quant"
    rules = RuleSet([*conv_bn.RULES, *split_fused_conv.RULES])
    before = ("annotate-quant",)
    preserves = frozenset({"calibration-ranges"})
    tolerance = Tolerance(rtol=1e-4, atol=1e-5)  # the conv-bn folds' re-association (see fuse)
    idempotent = True
