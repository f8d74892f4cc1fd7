"""Names of the fusion-rule families a target can allow.

A family is a group of rewrite rules that produce one kind of fused node. A target lists the
families whose output it runs well; a fusion pass applies a family only where the target allows it
*and* the target supports the op it would emit at the model's opset (``Target.supports_op``).
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["FUSION_FAMILIES", "STANDARD_FUSIONS"]

#: Family name -> what it produces.
FUSION_FAMILIES = MappingProxyType({
    "conv-bn": "BatchNormalization folded into Conv/ConvTranspose/Gemm weights (standard ops only)",
    "gemm": "MatMul + bias Add as Gemm (standard ops only)",
    "conv-bias": "per-channel constant Add after Conv as the Conv's bias (standard ops only)",
    "scale-into-conv": "per-channel constant Mul after Conv folded into its weights and bias (standard ops only)",
    "transpose": "consecutive Transposes composed, Transposes into Gemm's transA/transB (standard ops only)",
    "layer-norm": "decomposed layer normalization as LayerNormalization",
    "gelu": "decomposed erf or tanh GELU as Gelu (ONNX opset 20; standard ops only)",
    "contrib-gelu": "decomposed erf GELU as com.microsoft Gelu (any opset)",
    "conv-activation": "Conv followed by an activation as com.microsoft FusedConv",
    "fused-conv": "Conv + residual Add (+ activation) as com.microsoft FusedConv with its Z input",
    "fused-matmul": "MatMul with transposed/scaled operands as com.microsoft FusedMatMul",
    "skip-layer-norm": "residual Add + LayerNormalization as com.microsoft SkipLayerNormalization",
    "fast-gelu": "tanh-approximated GELU as com.microsoft FastGelu",
    "bias-gelu": "bias Add + Gelu as com.microsoft BiasGelu",
    "attention": "Q/K/V projections + scaled dot-product attention as com.microsoft Attention",
    "multi-head-attention": "scaled dot-product attention on given Q/K/V as com.microsoft MultiHeadAttention",
    "embed-layer-norm": "word/position/segment Gathers + LayerNormalization as com.microsoft EmbedLayerNormalization",
    "scale-into-gemm": "constant Mul/Add after Gemm, Mul after MatMul, folded into weights and bias (standard ops only)",
    "pad-into-conv": "constant Pad folded into Conv/AveragePool/MaxPool pads (standard ops only)",
    "hard-activation": "decomposed HardSigmoid/HardSwish (Clip or Min/Max forms) as HardSigmoid/HardSwish (standard ops only)",
    "silu": "x * Sigmoid(x) as com.microsoft QuickGelu (alpha = 1)",
    "reshape": "consecutive Reshapes collapsed (standard ops only)",
    "residual-sum": "residual Add before LayerNormalization as Sum (onnxruntime CPU: avoids its slower "
                    "SkipLayerNormalization; standard ops only)",
    "masked-softmax": "Softmax of scores plus an additive mask floored at max - 60 (onnxruntime CPU: keeps "
                      "masked entries off its slow exp path; standard ops only)",
})

#: Families whose output is standard ONNX.
STANDARD_FUSIONS = frozenset({"conv-bn", "conv-bias", "gemm", "scale-into-conv", "transpose", "layer-norm", "gelu",
                              "scale-into-gemm", "pad-into-conv", "hard-activation", "reshape"})
