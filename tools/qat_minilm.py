"""QAT recovers what int4 weights cost all-MiniLM-L6-v2's sentence embeddings, by distillation on unlabelled text.

Needs ``tools/out/zoo/minilm.onnx``, ``minilm-calib.npz``, ``minilm-test.npz`` and
``minilm-train-sentences.npz`` (``tools/zoo/build_all.py``); runs in the project's own environment::

    python tools/qat_minilm.py [--epochs 3] [--lr 1e-4] [--out tools/out/qat]

Steps: the float model is converted to opset 21 (int4 Q/DQ) by onnx's version converter and
quantized by the CPU pipeline ``cleanup,fuse,qdq`` (calibrated on the 64 calibration sentences):
the int8 model. Its weights re-quantized to int4 (symmetric per channel, codes in [-7, 7], round to
nearest) give the PTQ int4 model. QAT starts from the int8 QDQ model, re-quantizes its weights to
int4 the same way and fine-tunes them through the fake quantization with a cosine loss against the
float model's token embeddings of 768 other sentences (no labels: the float model is the teacher);
the result is folded back to int4 codes. Every model is scored on the 192 test sentences by the
cosine between its mean-pooled sentence embedding and the float model's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter

from onnxsmith.ir import load, save
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.quant import CalibrationSetup
from onnxsmith.train import ProgressBar, TrainConfig, fake_quant_form, fold_fake_quant, qat
from onnxsmith.verify._session import make_session

ZOO = Path(__file__).resolve().parent / "out" / "zoo"


def embeddings(model, data: dict[str, np.ndarray]) -> np.ndarray:
    """Mean-pooled sentence embeddings (the padding masked out)."""
    hidden = make_session(model).run(None, data)[0]
    mask = data["attention_mask"][..., None]
    return (hidden * mask).sum(1) / mask.sum(1)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "qat")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    opset21 = args.out / "minilm-opset21.onnx"
    onnx.save(version_converter.convert_version(onnx.load(ZOO / "minilm.onnx"), 21), opset21)
    float_model = load(opset21)
    test = {k: v for k, v in np.load(ZOO / "minilm-test.npz").items()}
    train = {k: v for k, v in np.load(ZOO / "minilm-train-sentences.npz").items()}
    train["target"] = make_session(float_model).run(None, train)[0]  # the teacher's token embeddings
    reference = embeddings(float_model, test)

    quantized = float_model.clone()
    ctx = PassContext(target="cpu")
    CalibrationSetup(str(ZOO / "minilm-calib.npz")).store(ctx)
    PassManager("cleanup,fuse,qdq").run(quantized, ctx)
    ptq4 = fold_fake_quant(fake_quant_form(quantized, weight_bits=4))

    started = time.perf_counter()
    config = TrainConfig(loss=["cosine"], lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                         weight_decay=0.0)
    outcome = qat(quantized, train, config, weight_bits=4, labels="target", on_step=ProgressBar())
    seconds = time.perf_counter() - started
    for name, model in (("qdq-int8", quantized), ("ptq-int4", ptq4), ("qat-int4", outcome.model)):
        save(model, args.out / f"minilm-{name}.onnx")

    steps = len(outcome.result.losses)
    print(f"all-MiniLM-L6-v2, 192 test sentences, cosine of the mean-pooled embedding to float32; QAT "
          f"{args.epochs} epochs of {len(train['target'])} sentences ({steps} steps) in {seconds:.0f} s")
    print(f"  {'model':40s} {'mean':>7s} {'min':>7s}")
    rows = (("PTQ int8 weights, 8-bit activations", quantized), ("PTQ int4 weights, 8-bit activations", ptq4),
            ("QAT int4 weights, 8-bit activations", outcome.model))
    for label, model in rows:
        found = cosines(embeddings(model, test), reference)
        print(f"  {label:40s} {found.mean():7.4f} {found.min():7.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
