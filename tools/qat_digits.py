"""QAT recovers the accuracy int4 post-training quantization loses, on the digits CNN of the zoo.

Needs ``tools/out/zoo/digits-cnn.onnx``, ``digits-calib.npz``, ``digits-test.npz`` (``tools/zoo/cnn.py``)
and ``digits-train.npz`` (``tools/zoo/digits_train.py``); runs in the project's own environment::

    python tools/qat_digits.py [--epochs 4] [--out tools/out/qat]

Steps: the float model is converted to opset 21 (int4 Q/DQ) by onnx's version converter; the
``qdq`` pipeline quantizes it (per-tensor int8 weights, minmax calibration on digits-calib); the
weights are then re-quantized to int4 (symmetric, codes in [-7, 7], round to nearest): the PTQ
int4 model. QAT starts from the int8 QDQ model, re-quantizes its weights to int4 the same way and
fine-tunes them through the fake quantization on the 1,257 training digits (AdamW, cosine
schedule); the result is folded back to int4 codes. Accuracies are measured on the 540 held-out
digits with onnxruntime.
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
QDQ = "cleanup,prepare-quant,annotate-quant{per-channel=false},insert-qdq,fold-scales"


def accuracy(model, test: dict[str, np.ndarray]) -> float:
    logits = make_session(model).run(None, {"image": test["image"]})[0]
    return float((logits.argmax(1) == test["labels"]).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "qat")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    test = dict(np.load(ZOO / "digits-test.npz"))

    opset21 = args.out / "digits-cnn-opset21.onnx"
    onnx.save(version_converter.convert_version(onnx.load(ZOO / "digits-cnn.onnx"), 21), opset21)
    float_model = load(opset21)
    quantized = float_model.clone()
    ctx = PassContext()
    CalibrationSetup(str(ZOO / "digits-calib.npz"), "minmax").store(ctx)
    PassManager(QDQ).run(quantized, ctx)
    ptq4 = fold_fake_quant(fake_quant_form(quantized, weight_bits=4))

    started = time.perf_counter()
    config = TrainConfig(lr=args.lr, epochs=args.epochs, batch_size=64, schedule="cosine")
    outcome = qat(quantized, ZOO / "digits-train.npz", config, weight_bits=4, on_step=ProgressBar())
    seconds = time.perf_counter() - started
    for name, model in (("qdq-int8", quantized), ("ptq-int4", ptq4), ("qat-int4", outcome.model)):
        save(model, args.out / f"digits-{name}.onnx")

    print(f"digits-cnn, 540 held-out digits; weights per tensor; QAT {args.epochs} epochs in {seconds:.0f} s")
    rows = (("float32", float_model), ("PTQ int8 weights, 8-bit activations", quantized),
            ("PTQ int4 weights, 8-bit activations", ptq4), ("QAT int4 weights, 8-bit activations", outcome.model))
    for label, model in rows:
        print(f"  {label:40s} {accuracy(model, test):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
