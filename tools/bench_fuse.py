"""Benchmark: onnxsmith ``cleanup,fuse --target cpu`` against the peers on real fp32 models.

For each zoo model (built by ``tools/zoo/build_all.py``) every tool writes an optimized copy in
its own process (wall time and peak RSS of that process are reported as the tool's cost):

* ``original``: the exporter's model as is (onnxruntime still applies ORT_ENABLE_ALL);
* ``ort-transformers``: ``onnxruntime.transformers.optimizer.optimize_model`` (BERT-family models
  only: ``model_type="bert"`` with the model's head count and hidden size);
* ``onnxsim``: ``onnxsim.simplify``; ``onnxslim``: ``onnxslim.slim``;
* ``onnxsmith``: ``optimize-graph IN OUT --passes cleanup,fuse --target cpu``.

Every candidate then runs in onnxruntime (CPU, ORT_ENABLE_ALL, sequential) at each batch size
and thread count; latencies are medians of ``--runs`` runs timed round-robin across
candidates in blocks of 10, each block after ``--warmup`` untimed runs.
Accuracy is the largest absolute difference of any output from the original model run with
ORT_DISABLE_ALL on up to 64 rows of the model's real inputs (MiniLM: real sentences; magika:
real files; digits-cnn: held-out digits; resnet18 has random weights and seeded random images).

    python tools/bench_fuse.py                          # all models, 50 runs
    python tools/bench_fuse.py --quick --models magika  # smoke test
    python tools/bench_fuse.py --markdown results.md

Needs torch-free peers only: onnxruntime, onnxsim, onnxslim (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
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
    node_count,
    number,
    publish,
    ratio,
    require_zoo_files,
    run_batched,
    run_child,
    session,
)

ERROR_ROWS = 64
ONNXSMITH = "onnxsmith"


@dataclass(frozen=True)
class ZooModel:
    """A zoo model, the file of real inputs to run it on, and its transformer shape if it has one."""

    name: str
    model: str
    data: str
    bert: dict[str, int] = field(default_factory=dict)


MODELS = {
    m.name: m for m in (
        ZooModel("minilm", "minilm.onnx", "minilm-test.npz", {"num_heads": 12, "hidden_size": 384}),
        ZooModel("magika", "magika.onnx", "magika-test.npz"),
        ZooModel("resnet18", "resnet18.onnx", "resnet18-test.npz"),
        ZooModel("digits-cnn", "digits-cnn.onnx", "digits-test.npz"),
    )
}
PEERS = ("ort-transformers", "onnxsim", "onnxslim")


# ------------------------------------------------------------------ optimizing (child processes)


def worker(tool: str, src: str, dst: str, bert: str) -> None:
    """Child-process body: runs one peer tool on ``src`` and writes ``dst``."""
    import onnx

    if tool == "ort-transformers":
        from onnxruntime.transformers.optimizer import optimize_model

        shape = json.loads(bert)
        optimize_model(src, model_type="bert", num_heads=shape["num_heads"],
                       hidden_size=shape["hidden_size"]).save_model_to_file(dst)
    elif tool == "onnxsim":
        import onnxsim

        model, ok = onnxsim.simplify(onnx.load(src))
        if not ok:
            raise SystemExit("onnxsim could not validate its output")
        onnx.save(model, dst)
    elif tool == "onnxslim":
        import onnxslim

        onnx.save(onnxslim.slim(onnx.load(src)), dst)
    else:
        raise SystemExit(f"unknown tool {tool}")


@dataclass
class Candidate:
    """One optimized copy of a model: where it is and what producing it cost (None: not produced)."""

    tool: str
    path: Path | None
    seconds: float | None = None
    peak_rss_mb: float | None = None
    error: str | None = None
    max_abs_err: float | None = None
    nodes: int | None = None


def optimize(tool: str, zoo: ZooModel, src: Path, work: Path) -> Candidate:
    """Runs ``tool`` on ``src`` in a child process; the candidate records its cost or its failure."""
    dst = work / f"{zoo.name}.{tool}.onnx"
    if tool == ONNXSMITH:
        argv = [*ONNXSMITH_CLI, str(src), str(dst), "--passes", "cleanup,fuse", "--target", "cpu", "-q"]
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", tool, str(src), str(dst), json.dumps(zoo.bert)]
    child = run_child(argv)
    if not child.ok:
        return Candidate(tool, None, error=child.error_line()[:160])
    return Candidate(tool, dst, child.seconds, child.peak_rss_mb, nodes=node_count(dst))


# ------------------------------------------------------------------ measuring


def max_abs_errors(candidates: list[Candidate], data: dict[str, np.ndarray], reference: list[np.ndarray],
                   rows: int) -> None:
    """Fills ``max_abs_err`` of every produced candidate: worst output difference from ``reference``."""
    for cand in candidates:
        if cand.path is None:
            continue
        outputs = run_batched(session(cand.path, threads=1), data, rows)
        cand.max_abs_err = max(float(np.max(np.abs(o.astype(np.float64) - r))) for o, r in zip(outputs, reference))


def latencies(candidates: list[Candidate], data: dict[str, np.ndarray], batch: int, threads: int, runs: int,
              warmup: int) -> dict[str, float]:
    """Median milliseconds per candidate at ``batch`` rows and ``threads`` threads."""
    runners = {}
    for cand in candidates:
        if cand.path is None:
            continue
        sess = session(cand.path, threads)
        feeds = {i.name: data[i.name][:batch] for i in sess.get_inputs()}
        runners[cand.tool] = lambda sess=sess, feeds=feeds: sess.run(None, feeds)
    return interleaved_medians(runners, runs, warmup)


def bench_model(zoo: ZooModel, zoo_dir: Path, work: Path, args: argparse.Namespace) -> tuple[list[list[str]],
                                                                                             list[list[str]]]:
    """Latency rows and optimization rows of one model."""
    src = zoo_dir / zoo.model
    with np.load(zoo_dir / zoo.data) as npz:
        data = {k: npz[k] for k in npz.files}
    rows = min(ERROR_ROWS, len(next(iter(data.values()))))
    tools = [t for t in PEERS if t != "ort-transformers" or zoo.bert] + [ONNXSMITH]
    candidates = [Candidate("original", src, 0.0, None, nodes=node_count(src))]
    for tool in tools:
        print(f"[{zoo.name}] optimizing with {tool}...", file=sys.stderr)
        candidates.append(optimize(tool, zoo, src, work))
    reference = [r.astype(np.float64) for r in run_batched(session(src, 1, optimize=False), data, rows)]
    max_abs_errors(candidates, data, reference, rows)

    columns = ("original", *PEERS, ONNXSMITH)
    latency_rows = []
    for batch in args.batches:
        for threads in args.threads:
            print(f"[{zoo.name}] timing batch {batch}, {threads} thread(s)...", file=sys.stderr)
            ms = latencies(candidates, data, batch, threads, args.runs, args.warmup)
            peers = [value for name, value in ms.items() if name != ONNXSMITH]
            best = min(peers) if peers else None
            cells = [number(ms.get(name)) for name in columns]
            latency_rows.append([zoo.name, str(batch), str(threads), *cells, ratio(ms.get(ONNXSMITH), best)])
    opt_rows = []
    for cand in candidates:
        cost = "—" if cand.tool == "original" else number(cand.seconds)
        err = cand.error or (f"{cand.max_abs_err:.2e}" if cand.max_abs_err is not None else "—")
        opt_rows.append([zoo.name, cand.tool, cost, number(cand.peak_rss_mb, 0),
                         "—" if cand.nodes is None else str(cand.nodes), err])
    return latency_rows, opt_rows


def report(latency_rows: list[list[str]], opt_rows: list[list[str]], args: argparse.Namespace) -> str:
    """The markdown report: the setup line and the two tables."""
    latency_headers = ["model", "batch", "threads", "original (ms)", *(f"{p} (ms)" for p in PEERS),
                       "onnxsmith (ms)", "onnxsmith vs best peer"]
    opt_headers = ["model", "tool", "optimize (s)", "peak RSS (MiB)", "nodes", "max abs err vs original"]
    return "\n".join([
        f"Machine: {machine_line()}. Median of {args.runs} runs, candidates interleaved in blocks of 10 "
        f"runs, each block after {args.warmup} warm-up runs; onnxruntime CPU, ORT_ENABLE_ALL, sequential. "
        "`onnxsmith vs best peer` divides onnxsmith's "
        "latency by the lowest latency among the original and the peers (below 1.00x: onnxsmith is faster).",
        "", markdown_table(latency_headers, latency_rows, numeric_from=1), "",
        "Optimization cost (each tool in its own process: interpreter start, load, optimize, save) and accuracy "
        f"(largest absolute output difference from the original under ORT_DISABLE_ALL, up to {ERROR_ROWS} real "
        "input rows):", "", markdown_table(opt_headers, opt_rows, numeric_from=2), ""])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        worker(*argv[1:5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_zoo_arguments(parser, MODELS)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="5 runs, 1 warm-up: a smoke test, not a measurement")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    compile_onnxsmith()
    if args.quick:
        args.runs, args.warmup = 5, 1
    args.batches = [int(b) for b in args.batches.split(",")]
    args.threads = [int(t) for t in args.threads.split(",")]
    names = comma_list(args.models)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    require_zoo_files(parser, args.zoo, (MODELS[n].model for n in names))

    latency_rows: list[list[str]] = []
    opt_rows: list[list[str]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_fuse-") as work:
        for name in names:
            lat, opt = bench_model(MODELS[name], args.zoo, Path(work), args)
            latency_rows += lat
            opt_rows += opt
    publish(report(latency_rows, opt_rows, args), args.markdown, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
