"""Gradient rules, one family of operators per module; importing the package registers them all.

- ``elementwise``: Add, Sub, Mul, Div, Neg, Exp, Log, Sqrt, Pow, Reciprocal, Abs, Sum, Mean, Max, Min,
  Where, Clip, Cast, Identity, Dropout;
- ``activations``: Relu, LeakyRelu, Sigmoid, Tanh, Erf, Gelu, HardSigmoid, HardSwish, Softplus, Softmax,
  LogSoftmax;
- ``linear``: MatMul, Gemm;
- ``reductions``: ReduceSum, ReduceMean, ReduceSumSquare, ReduceL1, ReduceL2, ReduceLogSumExp, ReduceMax,
  ReduceMin, GlobalMaxPool;
- ``shapes``: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Expand, Concat, Split, Slice, Gather;
- ``normalization``: LayerNormalization, BatchNormalization (inference form);
- ``convolution``: Conv, AveragePool, GlobalAveragePool, MaxPool;
- ``quantize``: QuantizeLinear -> DequantizeLinear pairs (straight-through estimator, LSQ scales);
- ``contrib``: the com.microsoft ops that ``fuse`` writes: FastGelu, BiasGelu, QuickGelu, FusedConv,
  SkipLayerNormalization, EmbedLayerNormalization, GatherBlockQuantized (no gradient);
- ``attention``: com.microsoft Attention and MultiHeadAttention.
"""

from __future__ import annotations

from onnxsmith.passes.train.gradients import (  # noqa: F401  (registration)
    activations,
    attention,
    contrib,
    convolution,
    elementwise,
    linear,
    normalization,
    quantize,
    reductions,
    shapes,
)
