"""Small models and data for the calibration tests (imported by the test modules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxsmith.ir import GraphBuilder


def mlp(batch: int | str = "N") -> ir.Model:
    """x[batch,16] -> MatMul -> Relu -> MatMul -> y[batch,8], seeded weights."""
    rng = np.random.default_rng(7)
    b = GraphBuilder()
    x = b.input("x", "float32", [batch, 16])
    h = b.MatMul(x, b.initializer("w1", (rng.standard_normal((16, 32)) * 0.5).astype(np.float32)), _name="mm1")
    r = b.Relu(h, _name="relu")
    y = b.MatMul(r, b.initializer("w2", rng.standard_normal((32, 8)).astype(np.float32)), _name="mm2")
    b.output(y, "y")
    return b.build()


def conv_net() -> ir.Model:
    """x[1,3,8,8] (static batch 1) -> Conv -> Relu -> GlobalAveragePool -> Flatten -> y[1,4]."""
    rng = np.random.default_rng(3)
    b = GraphBuilder()
    x = b.input("x", "float32", [1, 3, 8, 8])
    c = b.Conv(x, b.initializer("k", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)), pads=[1, 1, 1, 1],
               _name="conv")
    r = b.Relu(c, _name="relu")
    y = b.Flatten(b.GlobalAveragePool(r, _name="gap"), _name="flat")
    b.output(y, "y")
    return b.build()


def two_inputs() -> ir.Model:
    """a[N,4], b[N,4] -> Add -> Mul by a -> y."""
    b = GraphBuilder()
    a = b.input("a", "float32", ["N", 4])
    c = b.input("b", "float32", ["N", 4])
    s = b.Add(a, c, _name="add")
    y = b.Mul(s, a, _name="mul")
    b.output(y, "y")
    return b.build()


def mlp_data(count: int, rows: int = 4, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((rows, 16)).astype(np.float32)} for _ in range(count)]


def write_npz(folder: Path, name: str, **arrays: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    np.savez(path, **arrays)
    return path
