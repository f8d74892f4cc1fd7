"""Small fp32 models and their onnxruntime.quantization QDQ versions for the report tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxsmith.ir import GraphBuilder, load, save

MASKED = float(np.finfo(np.float32).min)


def mlp() -> ir.Model:
    """x[N,16] -> MatMul(w1) -> Add(b1) -> Relu -> Gemm(w2, b2, transB) -> y[N,8]."""
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.input("x", "float32", ["N", 16])
    h = b.MatMul(x, b.initializer("w1", rng.standard_normal((16, 32)).astype(np.float32)), _name="mm1")
    h = b.Add(h, b.initializer("b1", rng.standard_normal(32).astype(np.float32)), _name="add1")
    r = b.Relu(h, _name="relu")
    y = b.Gemm(r, b.initializer("w2", rng.standard_normal((8, 32)).astype(np.float32)),
               b.initializer("b2", np.ones(8, np.float32)), transB=1, _name="gemm")
    b.output(y, "y")
    return b.build()


def masked_attention() -> ir.Model:
    """Scores x @ k plus a float32-minimum mask, Softmax, then @ v: the exporter pattern of transformers."""
    rng = np.random.default_rng(1)
    b = GraphBuilder()
    x = b.input("x", "float32", ["N", 8])
    mask = b.input("mask", "float32", ["N", 8])
    scores = b.MatMul(x, b.initializer("k", rng.standard_normal((8, 8)).astype(np.float32)), _name="qk")
    masked = b.Add(scores, mask, _name="mask_add")
    probs = b.Softmax(masked, axis=-1, _name="softmax")
    y = b.MatMul(probs, b.initializer("v", rng.standard_normal((8, 4)).astype(np.float32)), _name="pv")
    b.output(y, "y")
    return b.build()


def mlp_samples(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((4, 16)).astype(np.float32)} for _ in range(count)]


def attention_samples(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Rows whose last positions are padding (mask = float32 minimum)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        mask = np.zeros((4, 8), np.float32)
        for row, length in enumerate(rng.integers(3, 9, size=4)):
            mask[row, length:] = MASKED
        out.append({"x": rng.standard_normal((4, 8)).astype(np.float32), "mask": mask})
    return out


class _Reader:
    """An onnxruntime CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._items = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def ort_qdq(model: ir.Model, feeds: list[dict[str, np.ndarray]], folder: Path, *, per_channel: bool = True,
            **options) -> tuple[Path, Path]:
    """Saves ``model`` and its onnxruntime ``quantize_static`` QDQ version; returns both paths."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    reader = type("Reader", (_Reader, CalibrationDataReader), {})(feeds)
    fp32_path, quant_path = folder / "fp32.onnx", folder / "quant.onnx"
    save(model, fp32_path)
    quantize_static(str(fp32_path), str(quant_path), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **options)
    return fp32_path, quant_path


def ort_qdq_models(model: ir.Model, feeds: list[dict[str, np.ndarray]], folder: Path,
                   **options) -> tuple[ir.Model, ir.Model]:
    fp32_path, quant_path = ort_qdq(model, feeds, folder, **options)
    return load(fp32_path), load(quant_path)
