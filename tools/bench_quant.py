"""Benchmark: onnxsmith quantization against ``onnxruntime.quantization`` on real models and data.

For each zoo model (built by ``tools/zoo/build_all.py``) each method quantizes the fp32 model in
its own process, on the same calibration rows (``<model>-calib.npz``):

=====================  ===============================================  =====================================
method                 onnxruntime.quantization                          onnxsmith (``optimize-graph``)
=====================  ===============================================  =====================================
``static-minmax``      ``quantize_static`` QDQ, per-channel, MinMax      ``--passes cleanup,fuse,qdq``
                                                                          ``--calibrator minmax``
``static-entropy``     ``quantize_static`` QDQ, per-channel, Entropy     ``... --calibrator entropy``
``dynamic``            ``quantize_dynamic`` per-channel                  ``--passes cleanup,fuse,quantize-dynamic``
=====================  ===============================================  =====================================

onnxruntime gets its recommended pre-processing (``quant_pre_process``: shape inference and
graph optimization) unless ``--no-ort-preprocess``; where that or the quantization after it fails
(symbolic shape inference gives up on some dynamic shapes; per-channel bias scale adjustment raises
on some pre-processed graphs), the next recipe of :data:`ORT_PREPROCESS` is tried in a fresh
process, and the table says which one produced the model; its calibration reader
hands it ``--ort-calib-batch`` rows per ``get_next()`` (default 1, as in onnxruntime's examples).
onnxsmith reads the calibration file itself. All onnxsmith outputs target ``cpu``.

Measured per output: fidelity on the model's test rows (MiniLM: cosine similarity of the
attention-mask mean-pooled embeddings to fp32, mean and worst, on real sentences; magika: top-1
agreement with fp32 and accuracy against the extension labels, on real files; digits-cnn:
held-out accuracy and agreement), latency at batch 1 with 1 and 2 threads (onnxruntime CPU,
ORT_ENABLE_ALL; medians of ``--runs`` runs timed round-robin with fp32 in blocks), model size, and the
quantizing process's wall time and peak RSS. A method onnxsmith does not have yet (its CLI
rejects the pass or option) is reported as "not available"; the rest of the run goes on.

    python tools/bench_quant.py                                 # all models, 50 runs
    python tools/bench_quant.py --quick --models digits-cnn     # smoke test
    python tools/bench_quant.py --markdown results.md
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import (  # noqa: E402
    ONNXSMITH_CLI,
    add_zoo_arguments,
    comma_list,
    compile_onnxsmith,
    interleaved_medians,
    machine_line,
    markdown_table,
    number,
    publish,
    ratio,
    require_zoo_files,
    run_batched,
    run_child,
    session,
    size_mb,
)

METHODS = ("static-minmax", "static-entropy", "dynamic")
TOOLS = ("onnxruntime", "onnxsmith")

Metrics = dict[str, float]


# ------------------------------------------------------------------ fidelity per model


def _mean_pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float64)
    return (hidden.astype(np.float64) * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)


def minilm_fidelity(out: list[np.ndarray], ref: list[np.ndarray], data: dict[str, np.ndarray]) -> Metrics:
    """Cosine of mean-pooled sentence embeddings to fp32: mean and worst over the test sentences."""
    mask = data["attention_mask"][:len(out[0])]
    a, b = _mean_pooled(out[0], mask), _mean_pooled(ref[0], mask)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"cos mean": float(cos.mean()), "cos min": float(cos.min())}


def classifier_fidelity(out: list[np.ndarray], ref: list[np.ndarray], data: dict[str, np.ndarray]) -> Metrics:
    """Top-1 agreement with fp32 and accuracy against the labels."""
    predicted = out[0].argmax(1)
    labels = data["labels"][:len(predicted)]
    return {"agreement": float((predicted == ref[0].argmax(1)).mean()), "accuracy": float((predicted == labels).mean())}


@dataclass(frozen=True)
class ZooModel:
    """A zoo model with its calibration file, its test file and how to score an output against fp32."""

    name: str
    model: str
    calib: str
    test: str
    fidelity: Callable[[list[np.ndarray], list[np.ndarray], dict[str, np.ndarray]], Metrics]


MODELS = {
    m.name: m for m in (
        ZooModel("minilm", "minilm.onnx", "minilm-calib.npz", "minilm-test.npz", minilm_fidelity),
        ZooModel("magika", "magika.onnx", "magika-calib.npz", "magika-test.npz", classifier_fidelity),
        ZooModel("digits-cnn", "digits-cnn.onnx", "digits-calib.npz", "digits-test.npz", classifier_fidelity),
    )
}


# ------------------------------------------------------------------ quantizing (child processes)


#: onnxruntime pre-processing recipes, tried in this order until quantization succeeds.
ORT_PREPROCESS = ("full", "no-symbolic", "none")


def worker(method: str, src: str, dst: str, calib: str, calib_batch: str, preprocess: str) -> None:
    """Child-process body: quantizes ``src`` into ``dst`` with onnxruntime.quantization.

    ``preprocess`` is one of :data:`ORT_PREPROCESS`: ``quant_pre_process`` with or without symbolic
    shape inference, or none.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    with tempfile.TemporaryDirectory() as work:
        if preprocess != "none":
            from onnxruntime.quantization.shape_inference import quant_pre_process

            prepared = str(Path(work) / "prepared.onnx")
            quant_pre_process(src, prepared, skip_symbolic_shape=preprocess == "no-symbolic")
            src = prepared
        if method == "dynamic":
            quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8)
            return

        class Reader(CalibrationDataReader):
            """The calibration file's rows, ``calib_batch`` at a time."""

            def __init__(self) -> None:
                with np.load(calib) as npz:
                    self.arrays = {k: npz[k] for k in npz.files}
                self.rows = len(next(iter(self.arrays.values())))
                self.step = int(calib_batch)
                self.start = 0

            def get_next(self) -> dict[str, np.ndarray] | None:
                if self.start >= self.rows:
                    return None
                batch = {k: v[self.start:self.start + self.step] for k, v in self.arrays.items()}
                self.start += self.step
                return batch

        calibrate = CalibrationMethod.MinMax if method == "static-minmax" else CalibrationMethod.Entropy
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=calibrate)


def onnxsmith_argv(method: str, src: Path, dst: Path, calib: Path) -> list[str]:
    """The ``optimize-graph`` command line of onnxsmith's equivalent of ``method``."""
    if method == "dynamic":
        passes = ["--passes", "cleanup,fuse,quantize-dynamic"]
    else:
        passes = ["--passes", "cleanup,fuse,qdq", "--calib-data", str(calib),
                  "--calibrator", method.removeprefix("static-")]
    return [*ONNXSMITH_CLI, str(src), str(dst), *passes, "--target", "cpu", "-q"]


@dataclass
class Result:
    """One quantized model: where it is, what making it cost, and (filled later) how good and fast it is."""

    tool: str
    method: str
    path: Path | None
    seconds: float | None = None
    peak_rss_mb: float | None = None
    status: str = "ok"
    metrics: Metrics | None = None
    ms: dict[int, float] | None = None

    @property
    def key(self) -> str:
        return f"{self.tool}/{self.method}"


def _unavailable(stderr: str) -> bool:
    """True when onnxsmith's CLI rejected the pipeline or an option: the feature is not there yet."""
    text = stderr.lower()
    return any(s in text for s in ("unknown pass", "unrecognized arguments", "no such pass", "unknown pipeline"))


def _short(line: str) -> str:
    """An error line fit for a table cell: no program prefix, file names without their folders."""
    line = re.sub(r"^optimize-graph: error: ", "", line)
    line = re.sub(r"(?:/[^\s/]+)+/([^\s/]+)", r"\1", line)
    return line if len(line) <= 100 else line[:99] + "…"


def quantize(tool: str, method: str, zoo: ZooModel, zoo_dir: Path, work: Path, args: argparse.Namespace) -> Result:
    """Runs one quantization in a child process and records its cost, or why it produced nothing."""
    src, calib = zoo_dir / zoo.model, zoo_dir / zoo.calib
    dst = work / f"{zoo.name}.{tool}.{method}.onnx"
    if tool == "onnxsmith":
        child = run_child(onnxsmith_argv(method, src, dst, calib), timeout=args.timeout)
    else:
        # Each recipe in its own process, so the cost reported is that of the recipe that worked.
        for recipe in ("none",) if args.no_ort_preprocess else ORT_PREPROCESS:
            child = run_child([sys.executable, str(Path(__file__).resolve()), "--worker", method, str(src), str(dst), str(calib),
                               str(args.ort_calib_batch), recipe], timeout=args.timeout)
            if child.ok and dst.exists():
                tool = f"onnxruntime (pre-process: {recipe})"
                break
    if not child.ok or not dst.exists():
        kind = "not available" if tool == "onnxsmith" and _unavailable(child.stderr) else "failed"
        return Result(tool, method, None, status=f"{kind}: {_short(child.error_line())}")
    return Result(tool, method, dst, child.seconds, child.peak_rss_mb)


# ------------------------------------------------------------------ one model


def bench_model(zoo: ZooModel, zoo_dir: Path, work: Path, args: argparse.Namespace) -> tuple[Result, list[Result]]:
    """Quantizes ``zoo`` with every tool and method, then scores and times every output with fp32."""
    with np.load(zoo_dir / zoo.test) as npz:
        data = {k: npz[k] for k in npz.files}
    rows = len(next(iter(data.values())))
    rows = min(rows, args.eval_rows) if args.eval_rows else rows

    fp32 = Result("fp32", "—", zoo_dir / zoo.model)
    results = []
    for method in args.methods:
        for tool in TOOLS:
            print(f"[{zoo.name}] {tool} {method}...", file=sys.stderr)
            results.append(quantize(tool, method, zoo, zoo_dir, work, args))

    reference = run_batched(session(fp32.path, 1), data, rows)
    for res in [fp32, *results]:
        if res.path is not None:
            res.metrics = zoo.fidelity(run_batched(session(res.path, 1), data, rows), reference, data)
    produced = [r for r in [fp32, *results] if r.path is not None]
    for res in produced:
        res.ms = {}
    for threads in args.threads:
        print(f"[{zoo.name}] timing batch 1, {threads} thread(s)...", file=sys.stderr)
        runners = {}
        for res in produced:
            sess = session(res.path, threads)
            feeds = {i.name: data[i.name][:1] for i in sess.get_inputs()}
            runners[res.key] = lambda sess=sess, feeds=feeds: sess.run(None, feeds)
        for key, ms in interleaved_medians(runners, args.runs, args.warmup).items():
            next(r for r in produced if r.key == key).ms[threads] = ms
    return fp32, results


# ------------------------------------------------------------------ report


def _metrics_cell(metrics: Metrics | None) -> str:
    return "—" if metrics is None else ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _ms(res: Result, threads: int) -> float | None:
    return None if res.ms is None else res.ms.get(threads)


def model_tables(zoo: ZooModel, fp32: Result, results: list[Result], threads: list[int]) -> tuple[list[list[str]],
                                                                                                 list[list[str]]]:
    """The absolute rows and the onnxsmith-vs-onnxruntime ratio rows of one model."""
    rows = []
    for res in [fp32, *results]:
        latency = [number(_ms(res, t)) for t in threads]
        speedup = [ratio(_ms(fp32, t), _ms(res, t)) if res is not fp32 else "1.00x" for t in threads]
        cost = [number(res.seconds), number(res.peak_rss_mb, 0)] if res is not fp32 else ["—", "—"]
        size = number(size_mb(res.path)) if res.path is not None else "—"
        status = _metrics_cell(res.metrics) if res.path is not None else res.status
        rows.append([zoo.name, res.tool, res.method, status, *latency, *speedup, size, *cost])
    pairs = []
    for method in {r.method for r in results}:
        ort = next(r for r in results if r.method == method and r.tool.startswith("onnxruntime"))
        ours = next(r for r in results if r.method == method and r.tool == "onnxsmith")
        if ort.path is None or ours.path is None:
            continue
        fidelity = ", ".join(f"{k} {ours.metrics[k] - ort.metrics[k]:+.4f}" for k in ours.metrics)
        pairs.append([zoo.name, method, fidelity, *(ratio(_ms(ours, t), _ms(ort, t)) for t in threads),
                      ratio(ours.seconds, ort.seconds), ratio(ours.peak_rss_mb, ort.peak_rss_mb),
                      ratio(size_mb(ours.path), size_mb(ort.path))])
    return rows, sorted(pairs, key=lambda row: METHODS.index(row[1]))


def report(tables: list[tuple[list[list[str]], list[list[str]]]], args: argparse.Namespace) -> str:
    """The markdown report: setup, the absolute table and the ratio table."""
    t = args.threads
    headers = ["model", "tool", "method", "fidelity", *(f"ms {n}T" for n in t), *(f"speedup vs fp32 {n}T" for n in t),
               "size (MiB)", "quantize (s)", "peak RSS (MiB)"]
    ratio_headers = ["model", "method", "fidelity (onnxsmith − onnxruntime)", *(f"latency {n}T" for n in t),
                     "quantize time", "peak RSS", "size"]
    preprocess = ("without quant_pre_process" if args.no_ort_preprocess else
                  "after quant_pre_process where that works (the tool column says which recipe)")
    pairs = [row for _, rows in tables for row in rows]
    return "\n".join([
        f"Machine: {machine_line()}. Batch 1; median of {args.runs} runs, candidates interleaved in blocks of 10 "
        f"runs, each block after {args.warmup} warm-up runs; onnxruntime CPU, ORT_ENABLE_ALL. "
        f"onnxruntime.quantization runs {preprocess} "
        f"and reads {args.ort_calib_batch} calibration row(s) per get_next(). Quantize time and "
        "peak RSS are those of the whole quantizing process (interpreter start, load, calibrate, quantize, save).",
        "", markdown_table(headers, [row for rows, _ in tables for row in rows], numeric_from=4), "",
        "onnxsmith against onnxruntime.quantization, same method (ratios below 1.00x: onnxsmith is lower):", "",
        markdown_table(ratio_headers, pairs, numeric_from=3) if pairs else "(no method produced by both tools)", ""])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        worker(*argv[1:7])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_zoo_arguments(parser, MODELS)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated (default: all)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--eval-rows", type=int, default=0, help="test rows to score on (default: all)")
    parser.add_argument("--ort-calib-batch", type=int, default=1, help="rows per get_next() for onnxruntime")
    parser.add_argument("--no-ort-preprocess", action="store_true", help="skip onnxruntime's quant_pre_process")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed to one quantization")
    parser.add_argument("--quick", action="store_true",
                        help="5 runs, 1 warm-up, 64 test rows: a smoke test, not a measurement")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    compile_onnxsmith()
    if args.quick:
        args.runs, args.warmup, args.eval_rows = 5, 1, args.eval_rows or 64
    args.threads = [int(n) for n in args.threads.split(",")]
    args.methods = comma_list(args.methods)
    names = comma_list(args.models)
    bad = [n for n in names if n not in MODELS] + [m for m in args.methods if m not in METHODS]
    if bad:
        parser.error(f"unknown model or method {', '.join(bad)} (models: {', '.join(MODELS)}; "
                     f"methods: {', '.join(METHODS)})")
    require_zoo_files(parser, args.zoo, (f for n in names for f in (MODELS[n].model, MODELS[n].calib, MODELS[n].test)))

    started = time.perf_counter()
    tables = []
    with tempfile.TemporaryDirectory(prefix="bench_quant-") as work:
        for name in names:
            zoo = MODELS[name]
            fp32, results = bench_model(zoo, args.zoo, Path(work), args)
            tables.append(model_tables(zoo, fp32, results, args.threads))
    publish(report(tables, args), args.markdown, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
