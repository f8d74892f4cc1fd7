"""Compare build-gradients with torch autograd on a small CNN and a small transformer block.

Dev-only check (torch is not a dependency of onnxsmith). Run with an interpreter that has torch
and onnxsmith importable, e.g.::

    PYTHONPATH=. /work/benchenv/bin/python tools/gradcheck_torch.py

Both models are written twice with the same float32 weights: as ONNX with GraphBuilder and as
torch code. The gradients of every parameter are compared (relative to the largest element, with
an absolute floor for true zeros) and the script exits non-zero if any differ by more than 1e-4.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F

from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes.train import BuildGradients
from onnxsmith.verify._session import run_model

F32 = "float32"


def cnn(rng: np.random.Generator):
    params = {"c1_w": rng.normal(size=(8, 3, 3, 3)) * 0.3, "c1_b": rng.normal(size=8) * 0.1,
              "bn_s": rng.uniform(0.5, 1.5, 8), "bn_b": rng.normal(size=8) * 0.1,
              "bn_m": rng.normal(size=8) * 0.1, "bn_v": rng.uniform(0.5, 1.5, 8),
              "c2_w": rng.normal(size=(8, 1, 3, 3)) * 0.3, "fc_w": rng.normal(size=(4, 8)) * 0.3,
              "fc_b": rng.normal(size=4) * 0.1}
    params = {k: v.astype(F32) for k, v in params.items()}
    x = rng.normal(size=(4, 3, 12, 12)).astype(F32)
    labels = np.eye(4, dtype=F32)[rng.integers(0, 4, 4)]
    b = GraphBuilder(opset=18)
    xi, li = b.input("x", F32, ["N", 3, 12, 12]), b.input("labels", F32, ["N", 4])
    v = {k: b.initializer(k, a) for k, a in params.items()}
    h = b.Conv(xi, v["c1_w"], v["c1_b"], pads=[1, 1, 1, 1], strides=[2, 2])
    h = b.Relu(b.BatchNormalization(h, v["bn_s"], v["bn_b"], v["bn_m"], v["bn_v"]))
    h = b.MaxPool(h, kernel_shape=[2, 2], strides=[2, 2])
    h = b.HardSwish(b.Conv(h, v["c2_w"], group=8, pads=[1, 1, 1, 1]))
    h = b.Flatten(b.GlobalAveragePool(h))
    logp = b.LogSoftmax(b.Gemm(h, v["fc_w"], v["fc_b"], transB=1))
    b.output(b.Neg(b.ReduceMean(b.Mul(logp, li), keepdims=0)), "loss")

    def reference(t):
        h = F.conv2d(torch.tensor(x), t["c1_w"], t["c1_b"], padding=1, stride=2)
        h = F.relu(F.batch_norm(h, t["bn_m"].detach(), t["bn_v"].detach(), t["bn_s"], t["bn_b"], eps=1e-5))
        h = F.max_pool2d(h, 2)
        h = F.hardswish(F.conv2d(h, t["c2_w"], groups=8, padding=1))
        logp = F.log_softmax(F.linear(h.mean((2, 3)), t["fc_w"], t["fc_b"]), -1)
        return -(logp * torch.tensor(labels)).mean()

    return b.build(), params, {"x": x, "labels": labels}, reference


def transformer(rng: np.random.Generator):
    d, heads, tokens, vocab = 16, 4, 6, 20
    params = {"emb": rng.normal(size=(vocab, d)), "ln_s": rng.uniform(0.5, 1.5, d), "ln_b": rng.normal(size=d) * 0.1,
              "qkv": rng.normal(size=(d, 3 * d)) * 0.2, "out": rng.normal(size=(d, d)) * 0.2,
              "ff1": rng.normal(size=(d, 4 * d)) * 0.2, "ff1_b": rng.normal(size=4 * d) * 0.1,
              "ff2": rng.normal(size=(4 * d, d)) * 0.2}
    params = {k: v.astype(F32) for k, v in params.items()}
    ids = rng.integers(0, vocab, (2, tokens)).astype(np.int64)
    b = GraphBuilder(opset=20)
    idi = b.input("ids", "int64", ["B", tokens])
    v = {k: b.initializer(k, a) for k, a in params.items()}
    x = b.Gather(v["emb"], idi)
    n = b.LayerNormalization(x, v["ln_s"], v["ln_b"], axis=-1)
    q, k, val = b.op("Split", b.MatMul(n, v["qkv"]), b.const(np.array([d, d, d], np.int64)), axis=-1, _outputs=3)
    split_heads = b.const(np.array([0, tokens, heads, d // heads], np.int64))
    q, k, val = (b.Transpose(b.Reshape(t, split_heads), perm=[0, 2, 1, 3]) for t in (q, k, val))
    scores = b.Div(b.MatMul(q, b.Transpose(k, perm=[0, 1, 3, 2])), b.const(np.array(np.sqrt(d // heads), F32)))
    att = b.MatMul(b.Softmax(scores, axis=-1), val)
    att = b.Reshape(b.Transpose(att, perm=[0, 2, 1, 3]), b.const(np.array([0, tokens, d], np.int64)))
    x = b.Add(x, b.MatMul(att, v["out"]))
    x = b.Add(x, b.MatMul(b.Gelu(b.Add(b.MatMul(x, v["ff1"]), v["ff1_b"])), v["ff2"]))
    b.output(b.ReduceMean(b.Mul(x, x), keepdims=0), "loss")

    def reference(t):
        x = t["emb"][torch.tensor(ids)]
        n = F.layer_norm(x, (d,), t["ln_s"], t["ln_b"])
        q, k, val = (z.reshape(2, tokens, heads, d // heads).transpose(1, 2) for z in (n @ t["qkv"]).split(d, -1))
        att = torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(d // heads), -1) @ val
        x = x + att.transpose(1, 2).reshape(2, tokens, d) @ t["out"]
        x = x + F.gelu(x @ t["ff1"] + t["ff1_b"]) @ t["ff2"]
        return (x * x).mean()

    return b.build(), params, {"ids": ids}, reference


def compare(name: str, build) -> bool:
    model, params, feeds, reference = build(np.random.default_rng(0))
    BuildGradients(freeze="^bn_[mv]$").run(model, None)
    outputs = dict(zip([v.name for v in model.graph.outputs], run_model(model, feeds)))
    tensors = {k: torch.tensor(a, requires_grad=not k.startswith(("bn_m", "bn_v"))) for k, a in params.items()}
    loss = reference(tensors)
    loss.backward()
    value = loss.item()
    ok = abs(value - float(outputs["loss"])) < 1e-5 * max(1.0, abs(value))
    print(f"{name}: loss onnx {float(outputs['loss']):.6f} torch {value:.6f}")
    for key, t in tensors.items():
        if t.grad is None:
            continue
        expected, actual = t.grad.numpy(), outputs[f"{key}_grad"]
        error = float(np.max(np.abs(expected - actual)) / max(np.max(np.abs(expected)), 1e-6))
        ok &= error < 1e-4
        print(f"  {key:6s} max relative error {error:.2e}")
    return ok


if __name__ == "__main__":
    results = [compare("cnn", cnn), compare("transformer", transformer)]
    sys.exit(0 if all(results) else 1)
