"""``optimize-graph demo``: a real model on real data, from training to a verified optimized file.

1. Load the bundled 8x8 handwritten digits (``onnxsmith/data/digits.npz``, written by
   ``tools/make_digits_data.py``) and split them 80/20 with a fixed seed.
2. Train a 64-32-10 MLP classifier with numpy: softmax cross-entropy, mini-batch SGD with
   momentum, fixed seed; it takes a fraction of a second.
3. Export it the way framework exporters do, debris included: an Identity on the input, a
   flatten shape and a 1/16 pixel scale computed by constant subgraphs, a Cast to the same type,
   an inference-mode Dropout, a Reshape to the shape the tensor already has, the output layer
   emitted twice with duplicated weights (one copy per output head), and a dead auxiliary branch.
4. Optimize it with the default pipeline through the same code path as ``optimize-graph IN OUT``
   (``onnxsmith.optimize.optimize_file``), verifying numerically on the held-out digits.
5. Measure the accuracy of both files with onnxruntime on the held-out digits: the predictions
   must be identical.
6. Quantize it to int8 for onnxruntime's CPU kernels, as ``optimize-graph IN OUT --passes
   cleanup,fuse,qdq --calib-data calib.npz --target cpu`` does, calibrated on 128 training digits:
   the held-out accuracy may drop by at most one point.
"""

from __future__ import annotations

import importlib.resources
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import OutputError, VerificationError
from onnxsmith.ir import GraphBuilder, save
from onnxsmith.optimize import DEFAULT_PIPELINE, OptimizeResult, optimize_file
from onnxsmith.passes import PassManager
from onnxsmith.passes.quant import CalibrationSetup
from onnxsmith.report import format_bytes, format_optimize_result

__all__ = ["DemoResult", "Digits", "Mlp", "build_onnx", "format_demo", "load_digits", "run_demo", "train_mlp"]

SEED = 0
PIXELS = 64
HIDDEN = 32
CLASSES = 10
PIXEL_MAX = 16.0
INPUT_NAME = "image"
QUANT_PIPELINE = "cleanup,fuse,qdq"
CALIBRATION_SAMPLES = 128
#: Most held-out accuracy (fraction) the int8 model may lose.
QUANT_ACCURACY_BUDGET = 0.01


@dataclass
class Digits:
    """The digits split into train and held-out test sets; images are raw 0..16 intensities."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


@dataclass
class Mlp:
    """Weights of ``softmax(relu(x @ w1 + b1) @ w2 + b2)`` for x = flattened pixels / 16."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray


@dataclass
class DemoResult:
    """What the demo did, for the report."""

    out_dir: Path
    original: Path
    optimized: Path
    test_inputs: Path
    train_size: int
    train_seconds: float
    optimize: OptimizeResult
    test_size: int
    accuracy_original: float
    accuracy_optimized: float
    quantized: Path
    quantize: OptimizeResult
    accuracy_quantized: float
    agreement_quantized: float


def load_digits(test_fraction: float = 0.2, seed: int = SEED) -> Digits:
    """The bundled digits, shuffled with ``seed`` and split into train and test sets."""
    resource = importlib.resources.files("onnxsmith") / "data" / "digits.npz"
    with importlib.resources.as_file(resource) as path, np.load(path) as data:
        images, labels = data["images"], data["labels"]
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = round(len(labels) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return Digits(images[train], labels[train], images[test], labels[test])


def _features(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float64) / PIXEL_MAX


def train_mlp(images: np.ndarray, labels: np.ndarray, *, epochs: int = 30, batch: int = 32,
              lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4, seed: int = SEED) -> Mlp:
    """Trains the MLP by mini-batch SGD with momentum on softmax cross-entropy (float64, then float32)."""
    rng = np.random.default_rng(seed)
    x = _features(images)
    onehot = np.eye(CLASSES)[labels]
    params = [rng.normal(0.0, np.sqrt(2.0 / PIXELS), (PIXELS, HIDDEN)), np.zeros(HIDDEN),
              rng.normal(0.0, np.sqrt(1.0 / HIDDEN), (HIDDEN, CLASSES)), np.zeros(CLASSES)]
    velocity = [np.zeros_like(p) for p in params]
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            w1, b1, w2, b2 = params
            z1 = x[idx] @ w1 + b1
            a1 = np.maximum(z1, 0.0)
            logits = a1 @ w2 + b2
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            g_logits = (p - onehot[idx]) / len(idx)
            g_z1 = (g_logits @ w2.T) * (z1 > 0)
            grads = [x[idx].T @ g_z1, g_z1.sum(axis=0), a1.T @ g_logits, g_logits.sum(axis=0)]
            for p_, v, g in zip(params, velocity, grads, strict=True):
                v *= momentum
                v -= lr * (g + weight_decay * p_)
                p_ += v
    return Mlp(*(p.astype(np.float32) for p in params))


def _constant(b: GraphBuilder, name: str, value: np.ndarray) -> ir.Value:
    return b.op("Constant", value=ir.tensor(value, name=name), _name=name)


def build_onnx(mlp: Mlp) -> ir.Model:
    """Exports the MLP as a framework exporter would, with the usual debris (see module docstring).

    Inputs: ``image`` float[batch,1,8,8] of raw intensities 0..16. Outputs: ``probabilities``
    float[batch,10] and ``label`` int64[batch].
    """
    b = GraphBuilder(opset=17, name="digits_mlp")
    image = b.input(INPUT_NAME, "float32", ["batch", 1, 8, 8])
    x = b.op("Identity", image, _name="/Identity")
    flat_shape = b.op("Concat", _constant(b, "/Constant", np.array([-1], np.int64)),
                      _constant(b, "/Constant_1", np.array([PIXELS], np.int64)),
                      axis=0, _name="/Concat")
    x = b.op("Reshape", x, flat_shape, _name="/flatten/Reshape")
    scale = b.op("Div", _constant(b, "/Constant_2", np.array(1.0, np.float32)),
                 _constant(b, "/Constant_3", np.array(PIXEL_MAX, np.float32)), _name="/Div")
    x = b.op("Mul", x, scale, _name="/normalize/Mul")
    x = b.op("Cast", x, to=ir.DataType.FLOAT, _name="/Cast")
    fc1_w, fc1_b = b.initializer("fc1.weight", mlp.w1.T.copy()), b.initializer("fc1.bias", mlp.b1)
    h = b.op("Gemm", x, fc1_w, fc1_b, transB=1, _name="/fc1/Gemm")
    h = b.op("Relu", h, _name="/relu/Relu")
    h = b.op("Dropout", h, _constant(b, "/dropout/ratio", np.array(0.1, np.float32)),
             _constant(b, "/dropout/training_mode", np.array(False)), _name="/dropout/Dropout")
    h = b.op("Reshape", h, b.initializer("/Reshape_shape", np.array([-1, HIDDEN], np.int64)),
             _name="/Reshape")
    # Two heads, each with its own copy of the output layer, as exporters emit tied weights.
    logits = b.op("Gemm", h, b.initializer("fc2.weight", mlp.w2.T.copy()), b.initializer("fc2.bias", mlp.b2),
                  transB=1, _name="/fc2/Gemm")
    logits_copy = b.op("Gemm", h, b.initializer("head.fc2.weight", mlp.w2.T.copy()),
                       b.initializer("head.fc2.bias", mlp.b2.copy()), transB=1, _name="/head/fc2/Gemm")
    b.output(b.op("Softmax", logits, axis=1, _name="/Softmax"), "probabilities", "float32", ["batch", CLASSES])
    b.output(b.op("ArgMax", logits_copy, axis=1, keepdims=0, _name="/ArgMax"), "label", "int64", ["batch"])
    # A training-only auxiliary branch whose result no output uses.
    aux = b.op("MatMul", x, b.initializer("aux.weight", mlp.w1.copy()), _name="/aux/MatMul")
    b.op("ReduceSum", b.op("Relu", aux, _name="/aux/Relu"), keepdims=0, _name="/aux/ReduceSum")
    model = b.build()
    model.producer_name, model.producer_version = "onnxsmith-demo", "1"
    return model


def _predict(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (labels,) = session.run(["label"], {INPUT_NAME: images})
    return labels


def _prepare_out_dir(out_dir: str | os.PathLike | None) -> Path:
    if out_dir is None:
        return Path(tempfile.mkdtemp(prefix="onnxsmith-demo-"))
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise OutputError(f"--out {path} is a file, not a folder", "give a folder for the demo's files")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder {path}: {e.strerror or e}", "choose another --out folder") from e
    return path


def run_demo(out_dir: str | os.PathLike | None = None, *,
             progress: Callable[[str], None] | None = None) -> DemoResult:
    """Trains, exports, optimizes and checks the digits MLP; files go to ``out_dir``.

    Args:
        out_dir: Folder for the models and the held-out inputs; a new temporary folder when None.
        progress: Called with a line of text after training and with the resolved pipeline
            before it runs (the CLI prints them).

    Raises:
        VerificationError: The optimized model does not predict exactly as the original.
        OutputError: ``out_dir`` cannot be used.
    """
    out = _prepare_out_dir(out_dir)
    digits = load_digits()
    start = time.perf_counter()
    mlp = train_mlp(digits.train_images, digits.train_labels)
    train_seconds = time.perf_counter() - start

    original, optimized = out / "digits_mlp.onnx", out / "digits_mlp.optimized.onnx"
    quantized, calib = out / "digits_mlp.int8.onnx", out / "digits_calib.npz"
    test_inputs = out / "digits_test.npz"
    save(build_onnx(mlp), original)
    images = digits.test_images.reshape(-1, 1, 8, 8).astype(np.float32)
    np.savez(test_inputs, **{INPUT_NAME: images})
    calib_images = digits.train_images[:CALIBRATION_SAMPLES].reshape(-1, 1, 8, 8).astype(np.float32)
    np.savez(calib, **{INPUT_NAME: calib_images})

    manager = PassManager(DEFAULT_PIPELINE, verify="numeric")
    if progress is not None:
        progress(f"trained a {PIXELS}-{HIDDEN}-{CLASSES} MLP on {len(digits.train_labels)} 8x8 digits in "
                 f"{train_seconds:.2f} s; exported it to {original}")
        progress(f"pipeline: {manager.pipeline}")
    result = optimize_file(original, optimized, manager, inputs=test_inputs)

    before, after = _predict(original, images), _predict(optimized, images)
    if not np.array_equal(before, after):
        changed = int(np.sum(before != after))
        raise VerificationError(f"the optimized model predicts differently on {changed} held-out digits",
                                "report this with the demo output")

    if progress is not None:
        progress(f"quantizing to int8 for onnxruntime's CPU kernels ({QUANT_PIPELINE} --target cpu, "
                 f"calibrated on {CALIBRATION_SAMPLES} training digits)")
    quantize = optimize_file(original, quantized, QUANT_PIPELINE, target="cpu",
                             calibration=CalibrationSetup(calib))
    in_int8 = _predict(quantized, images)
    accuracy = {name: float(np.mean(labels == digits.test_labels))
                for name, labels in (("original", before), ("optimized", after), ("int8", in_int8))}
    if accuracy["int8"] < accuracy["original"] - QUANT_ACCURACY_BUDGET:
        raise VerificationError(f"the int8 model's held-out accuracy fell from {accuracy['original']:.2%} to "
                                f"{accuracy['int8']:.2%}", "report this with the demo output")
    return DemoResult(
        out_dir=out, original=original, optimized=optimized, test_inputs=test_inputs,
        train_size=len(digits.train_labels), train_seconds=train_seconds, optimize=result,
        test_size=len(digits.test_labels), accuracy_original=accuracy["original"],
        accuracy_optimized=accuracy["optimized"], quantized=quantized, quantize=quantize,
        accuracy_quantized=accuracy["int8"], agreement_quantized=float(np.mean(in_int8 == before)),
    )


def format_demo(result: DemoResult) -> str:
    """The demo's report: the pipeline table, then before/after figures and accuracy."""
    r, q = result.optimize, result.quantize
    rows = [
        ("", "original", "optimized", "int8"),
        ("nodes", str(r.nodes_before), str(r.nodes_after), str(q.nodes_after)),
        ("file size", format_bytes(r.file_bytes_before), format_bytes(r.file_bytes_after),
         format_bytes(q.file_bytes_after)),
        (f"accuracy on {result.test_size} held-out digits", f"{result.accuracy_original:.2%}",
         f"{result.accuracy_optimized:.2%}", f"{result.accuracy_quantized:.2%}"),
        ("predictions equal to the original", "", "100.00%", f"{result.agreement_quantized:.2%}"),
    ]
    width = max(len(row[0]) for row in rows) + 2
    lines = [
        format_optimize_result(r),
        "",
        format_optimize_result(q),
        "",
        *(f"{label:<{width}}{a:>10}  {b:>10}  {c:>10}".rstrip() for label, a, b, c in rows),
        "",
        f"files are in {result.out_dir}; try:",
        f"  optimize-graph inspect {result.quantized}",
        f"  optimize-graph ep-check {result.quantized} --target cpu",
        f"  optimize-graph quant-report {result.original} {result.quantized} --data {result.test_inputs}",
    ]
    return "\n".join(lines)
