"""Fixtures for the trainer tests: separable 2-D blobs and a small MLP classifier over them."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.quant import CalibrationSetup

F32 = "float32"


def make_blobs(seed: int = 0, per_class: int = 40, classes: int = 3) -> dict[str, np.ndarray]:
    """Gaussian blobs around well-separated centres in 2-D: ``x`` float32 and ``labels`` int64."""
    rng = np.random.default_rng(seed)
    centres = np.array([[np.cos(a), np.sin(a)] for a in 2 * np.pi * np.arange(classes) / classes]) * 4
    labels = np.repeat(np.arange(classes), per_class)
    x = centres[labels] + rng.normal(size=(len(labels), 2))
    return {"x": x.astype(F32), "labels": labels.astype(np.int64)}


def make_mlp(seed: int = 1, hidden: int = 8, classes: int = 3) -> ir.Model:
    """``logits = relu(x @ w1 + b1) @ w2 + b2`` with seeded random weights."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=18)
    x = b.input("x", F32, ["N", 2])
    w1 = b.initializer("w1", (rng.normal(size=(2, hidden)) * 0.5).astype(F32))
    b1 = b.initializer("b1", np.zeros(hidden, F32))
    w2 = b.initializer("w2", (rng.normal(size=(hidden, classes)) * 0.5).astype(F32))
    b2 = b.initializer("b2", np.zeros(classes, F32))
    b.output(b.Add(b.MatMul(b.Relu(b.Add(b.MatMul(x, w1), b1)), w2), b2), "logits")
    return b.build()


def make_gemm_mlp(opset: int = 21, seed: int = 1, hidden: int = 8) -> ir.Model:
    """``logits = Gemm(relu(Gemm(x, w1, b1)), w2, b2)`` (the qdq pipeline stores Gemm biases as int32)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=opset)
    x = b.input("x", F32, ["N", 2])
    w1 = b.initializer("w1", (rng.normal(size=(2, hidden)) * 0.7).astype(F32))
    b1 = b.initializer("b1", (rng.normal(size=hidden) * 0.1).astype(F32))
    w2 = b.initializer("w2", (rng.normal(size=(hidden, 3)) * 0.7).astype(F32))
    b2 = b.initializer("b2", np.zeros(3, F32))
    b.output(b.Gemm(b.Relu(b.Gemm(x, w1, b1)), w2, b2), "logits")
    return b.build()


def quantize_qdq(model: ir.Model, data: dict[str, np.ndarray]) -> ir.Model:
    """``model`` through the qdq pipeline, calibrated on ``data['x']`` (in place)."""
    ctx = PassContext()
    CalibrationSetup([{"x": data["x"]}], "minmax").store(ctx)
    PassManager("qdq").run(model, ctx)
    return model


@pytest.fixture
def blobs() -> dict[str, np.ndarray]:
    return make_blobs()


@pytest.fixture
def mlp() -> ir.Model:
    return make_mlp()


@pytest.fixture
def gemm_mlp():
    return make_gemm_mlp


@pytest.fixture
def quantized():
    return quantize_qdq


@pytest.fixture
def qdq(blobs) -> ir.Model:
    """The Gemm MLP (opset 21) quantized by the qdq pipeline on the blobs."""
    return quantize_qdq(make_gemm_mlp(), blobs)
