"""Small float models for the static quantization tests, and a helper to run the qdq passes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.ir import GraphBuilder
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.quant import CalibrationSetup, QuantPlan


def conv_net(seed: int = 0) -> ir.Model:
    """Conv -> Relu -> MaxPool -> Conv -> Flatten, with biases."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 3, 8, 8])
    w1 = b.initializer("w1", rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3)
    b1 = b.initializer("b1", rng.standard_normal(8).astype(np.float32) * 0.1)
    h = b.MaxPool(b.Relu(b.Conv(x, w1, b1, pads=[1, 1, 1, 1], _name="conv1"), _name="relu1"),
                  kernel_shape=[2, 2], strides=[2, 2], _name="pool")
    w2 = b.initializer("w2", rng.standard_normal((4, 8, 3, 3)).astype(np.float32) * 0.3)
    b2 = b.initializer("b2", rng.standard_normal(4).astype(np.float32) * 0.1)
    b.output(b.Flatten(b.Conv(h, w2, b2, pads=[1, 1, 1, 1], _name="conv2"), _name="flatten"), "y")
    return b.build()


def mlp_block(seed: int = 0, *, mask_add: bool = False) -> ir.Model:
    """x @ W1 + b1 -> Relu -> @ W2, plus the residual x (and optionally an attention-style mask Add)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 4, 16])
    w1 = b.initializer("w1", rng.standard_normal((16, 32)).astype(np.float32) * 0.3)
    bias = b.initializer("b1", rng.standard_normal(32).astype(np.float32) * 0.1)
    h = b.Relu(b.Add(b.MatMul(x, w1, _name="mm1"), bias, _name="add1"), _name="relu")
    if mask_add:
        h = b.Add(h, b.const(np.array([0.0, -3.4e38] * 16, np.float32)), _name="mask")
    w2 = b.initializer("w2", rng.standard_normal((32, 16)).astype(np.float32) * 0.3)
    b.output(b.Add(b.MatMul(h, w2, _name="mm2"), x, _name="residual"), "y")
    return b.build()


def samples(model: ir.Model, count: int = 4, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """Standard-normal feeds for the single float input of ``model`` (batch 2)."""
    rng = np.random.default_rng(seed)
    value = model.graph.inputs[0]
    shape = [2 if not isinstance(d, int) else d for d in value.shape]
    return [{value.name: rng.standard_normal(shape).astype(np.float32)} for _ in range(count)]


def quantize(model: ir.Model, data: list[dict[str, np.ndarray]], passes: str = "qdq", *,
             target: str = "cpu") -> tuple[PassContext, QuantPlan]:
    """Runs ``passes`` on ``model`` in place with ``data`` as calibration data."""
    ctx = PassContext(target=target)
    CalibrationSetup(data).store(ctx)
    PassManager(passes).run(model, ctx)
    return ctx, QuantPlan.from_context(ctx)


def ops(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def conv_bn_net(seed: int = 0, *, last: str = "Sigmoid") -> ir.Model:
    """Conv -> BN -> Relu -> Conv -> BN -> Clip(0, 6) -> Conv -> ``last``: an exporter's CNN before folding."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=17)
    h = b.input("x", "float32", ["N", 3, 8, 8])
    channels = 3
    for i, act in enumerate(("Relu", "Clip", last), start=1):
        w = b.initializer(f"w{i}", rng.standard_normal((8, channels, 3, 3)).astype(np.float32) * 0.3)
        h = b.Conv(h, w, pads=[1, 1, 1, 1], _name=f"conv{i}")
        if i < 3:
            params = [rng.uniform(0.5, 1.5, 8), rng.standard_normal(8) * 0.1, rng.standard_normal(8) * 0.1,
                      rng.uniform(0.5, 2.0, 8)]
            h = b.BatchNormalization(h, *(b.initializer(f"bn{i}_{k}", p.astype(np.float32))
                                          for k, p in enumerate(params)), _name=f"bn{i}")
        bounds = (b.const(np.float32(0.0)), b.const(np.float32(6.0))) if act == "Clip" else ()
        h = getattr(b, act)(h, *bounds, _name=f"act{i}")
        channels = 8
    b.output(h, "y")
    return b.build()


def gemm_net(seed: int = 0, *, alpha: float = 1.0) -> ir.Model:
    """Gemm with a ``[1, N]`` bias, as ``fuse`` writes a MatMul + Add (``alpha`` scales the product)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 16])
    w = b.initializer("w", rng.standard_normal((16, 8)).astype(np.float32) * 0.3)
    c = b.initializer("c", rng.standard_normal((1, 8)).astype(np.float32) * 0.1)
    b.output(b.Gemm(x, w, c, alpha=alpha, _name="gemm"), "y")
    return b.build()


def attention_block(seed: int = 0, hidden: int = 16) -> ir.Model:
    """x @ W_in -> com.microsoft Attention (2 heads, key mask) -> @ W_out: a fused encoder layer in small."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(17, opsets={"com.microsoft": 1})
    x = b.input("x", "float32", [2, 5, hidden])
    mask = b.input("mask", "int32", [2, 5])
    w_in = b.initializer("w_in", rng.standard_normal((hidden, hidden)).astype(np.float32) * 0.3)
    qkv = b.initializer("qkv", rng.standard_normal((hidden, 3 * hidden)).astype(np.float32) * 0.3)
    qkv_bias = b.initializer("qkv_b", rng.standard_normal(3 * hidden).astype(np.float32) * 0.1)
    w_out = b.initializer("w_out", rng.standard_normal((hidden, hidden)).astype(np.float32) * 0.3)
    h = b.MatMul(x, w_in, _name="mm_in")
    h = b.op("Attention", h, qkv, qkv_bias, mask, _domain="com.microsoft", _name="attention", num_heads=2)
    h.dtype = ir.DataType.FLOAT  # as shape inference with onnxruntime's contrib schemas types it
    b.output(b.MatMul(h, w_out, _name="mm_out"), "y", "float32", [2, 5, hidden])
    return b.build()


def residual_net(seed: int = 0, *, blocks: int = 1, tail: str = "conv") -> ir.Model:
    """A ResNet in small, with 1x1 Convs: stem Conv -> Relu, ``blocks`` basic blocks
    ``Relu(conv2(Relu(conv1(h))) + h)``, then ``tail``: ``conv`` (a last Conv), ``sigmoid`` or ``pool``
    (GlobalAveragePool). Nodes are named ``stem``, ``block<i>_conv1``, ``block<i>_add``... and ``head``."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=17)

    def conv(h: ir.Value, cin: int, cout: int, name: str) -> ir.Value:
        w = b.initializer(f"{name}_w", (rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float32))
        bias = b.initializer(f"{name}_b", (rng.standard_normal(cout) * 0.1).astype(np.float32))
        return b.Conv(h, w, bias, _name=name)

    h = b.Relu(conv(b.input("x", "float32", ["N", 4, 5, 5]), 4, 8, "stem"), _name="stem_relu")
    for i in range(1, blocks + 1):
        inner = b.Relu(conv(h, 8, 8, f"block{i}_conv1"), _name=f"block{i}_relu1")
        h = b.Relu(b.Add(conv(inner, 8, 8, f"block{i}_conv2"), h, _name=f"block{i}_add"), _name=f"block{i}_relu2")
    tails = {"conv": lambda: conv(h, 8, 4, "head"), "sigmoid": lambda: b.Sigmoid(h, _name="head"),
             "pool": lambda: b.GlobalAveragePool(h, _name="head")}
    b.output(tails[tail](), "y")
    return b.build()
