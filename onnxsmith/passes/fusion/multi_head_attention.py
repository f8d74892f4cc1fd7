"""Family ``multi-head-attention``: self/cross attention on computed projections as com.microsoft MultiHeadAttention.

The same block as family ``attention`` (see :mod:`onnxsmith.passes.fusion.attention` for the
algebra, the mask and the tolerance), where the projections before the bias Adds are not constant
MatMuls of one shared input (cross attention, or projections computed by other nodes)::

    Reshape(Transpose(Softmax((q @ k) * s + A) @ v))
        -> MultiHeadAttention(q', k', v', [bq | bk | bv], int32(m), num_heads=N, scale=s, mask_filter_value=c)

with ``q, k, v`` the heads of ``q' + bq``, ``k' + bk``, ``v' + bv``. ``fuse`` tries family
``attention`` first, so a block that packs into Attention never reaches these rules.
"""

from __future__ import annotations

from onnxsmith.passes.fusion.attention import attention_rules

__all__ = ["FAMILY", "RULES"]

FAMILY = "multi-head-attention"

# Reshape(Transpose(Softmax((q @ k) * s + A) @ v)) -> com.microsoft.MultiHeadAttention(q', k', v', b_qkv, int32(m))
#   [q, k, v: heads of q' + bq, k' + bk, v' + bv; variants: without A, with q and k scaled separately]
RULES = attention_rules(packed=False)
