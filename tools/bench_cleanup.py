"""Benchmark: onnxsmith's ``cleanup`` pipeline against onnxsim and onnxslim on one synthetic model.

Each tool runs in its own subprocess pinned to one core (single-threaded onnxruntime), timing
load + optimize + save, and reporting peak RSS and the node count of its output. onnxsmith runs
``optimize_file``, the code path of ``optimize-graph IN OUT`` (default ``cleanup`` pipeline,
structural verification after every pass). Every output is then checked for numeric equivalence
with the input in onnxruntime on the same random inputs.

Both the wall time of the work and the CPU time (user + system) of the whole worker process,
interpreter start and imports included, are reported. ``--cpu-time`` takes the ratios from CPU
time, which stays meaningful on a machine shared with other jobs; wall time needs a quiet one.

    python tools/bench_cleanup.py --nodes 100000 --repeat 3 # the BENCHMARKS.md figure (median of 3)
    python tools/bench_cleanup.py --nodes 100000 --cpu-time --tools onnxsmith,onnxsim
    python tools/bench_cleanup.py --nodes 20000 --tools onnxsmith,onnxslim

Needs the bench extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS = ("onnxsmith", "onnxsim", "onnxslim")


def _single_core() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def _count_nodes(path: str) -> int:
    import onnx

    model = onnx.load(path, load_external_data=False)

    def count(graph) -> int:
        total = 0
        for node in graph.node:
            total += 1
            for attr in node.attribute:
                if attr.HasField("g"):
                    total += count(attr.g)
                total += sum(count(g) for g in attr.graphs)
        return total

    return count(model.graph)


def worker(tool: str, src: str, dst: str) -> dict:
    """Runs one tool on ``src`` and writes ``dst``; returns timing and sizes."""
    _single_core()
    t0 = time.perf_counter()
    if tool == "onnxsmith":
        from onnxsmith.optimize import optimize_file

        optimize_file(src, dst)
    elif tool == "onnxsim":
        import onnx
        import onnxsim

        model, ok = onnxsim.simplify(onnx.load(src), check_n=0)
        onnx.save(model, dst)
    elif tool == "onnxslim":
        import onnx
        import onnxslim

        model = onnxslim.slim(onnx.load(src))
        onnx.save(model, dst)
    else:
        raise SystemExit(f"unknown tool {tool}")
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"tool": tool, "seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024, "nodes": _count_nodes(dst)}


def _equivalent(reference: str, candidate: str) -> str:
    """Max abs error of candidate vs reference on random inputs ('n/a' if ORT cannot run it)."""
    import onnxsmith
    from onnxsmith.verify import generate_inputs
    from onnxsmith.verify._session import run_model

    ref = onnxsmith.load(reference)
    inputs = generate_inputs(ref)
    try:
        expected = run_model(ref, inputs)
        actual = run_model(onnxsmith.load(candidate), inputs)
    except onnxsmith.OnnxsmithError as e:
        return f"n/a ({e.message[:60]})"
    import numpy as np

    return f"{max(float(np.max(np.abs(e.astype(np.float64) - a))) for e, a in zip(expected, actual)):.2g}"


def _run_worker(tool: str, src: str, dst: str, timeout: float) -> dict:
    """One worker process for ``tool``: its result, or a row with the error."""
    failed = {"tool": tool, "seconds": float("nan"), "cpu_seconds": float("nan"), "peak_rss_mb": float("nan"),
              "nodes": -1}
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", tool, src, dst], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**failed, "seconds": float("inf"), "cpu_seconds": float("inf"),
                "error": f"timed out after {timeout:.0f}s"}
    if proc.returncode != 0:
        return {**failed, "error": ((proc.stderr.strip().splitlines() or ["?"])[-1])[:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_run(runs: list[dict]) -> dict:
    """The run of median wall time (its CPU time, RSS and nodes), with the spread of all runs."""
    if "error" in runs[-1]:
        return runs[-1]
    ordered = sorted(runs, key=lambda r: r["seconds"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        median["note"] = f"median of {len(runs)}: {ordered[0]['seconds']:.2f}-{ordered[-1]['seconds']:.2f} s"
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per tool")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime equivalence check")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per tool, in interleaved rounds; the median run is reported (default 1)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="ratios from CPU time (user + system) instead of wall time (for busy machines)")
    parser.add_argument("--worker", nargs=3, metavar=("TOOL", "SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return

    sys.path.insert(0, str(HERE))
    from _bench_common import compile_onnxsmith

    compile_onnxsmith()
    from synthetic import make_model  # tools/synthetic.py

    import onnxsmith

    with tempfile.TemporaryDirectory(prefix="bench-cleanup-") as tmp:
        src = os.path.join(tmp, "input.onnx")
        onnxsmith.save(make_model(args.nodes, args.seed), src)
        results = [{"tool": "input", "seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": 0.0,
                    "nodes": _count_nodes(src)}]
        tools = args.tools.split(",")
        runs: dict[str, list[dict]] = {tool: [] for tool in tools}
        for _ in range(args.repeat):  # rounds: every tool once per round, so drifts hit all alike
            for tool in tools:
                if not runs[tool] or "error" not in runs[tool][-1]:
                    runs[tool].append(_run_worker(tool, src, os.path.join(tmp, f"{tool}.onnx"), args.timeout))
        for tool in tools:
            result = _median_run(runs[tool])
            if "error" not in result and not args.no_check:
                result["max_abs_err"] = _equivalent(src, os.path.join(tmp, f"{tool}.onnx"))
            results.append(result)

    key = "cpu_seconds" if args.cpu_time else "seconds"
    ours = next((r for r in results if r["tool"] == "onnxsmith"), None)
    print(f"cleanup benchmark: synthetic model, {args.nodes} nodes requested, seed {args.seed}, one core; "
          f"ratios from {'CPU' if args.cpu_time else 'wall'} time")
    print(f"{'tool':<10} {'wall s':>8} {'CPU s':>8} {'x onnxsmith':>12} {'peak MB':>9} {'nodes':>8} "
          f"{'max abs err':>12}  note")
    for r in results:
        ratio = (f"{r[key] / ours[key]:.2f}x" if ours and r["tool"] not in ("input", "onnxsmith")
                 and ours[key] > 0 and r[key] == r[key] else "")
        print(f"{r['tool']:<10} {r['seconds']:>8.2f} {r['cpu_seconds']:>8.2f} {ratio:>12} {r['peak_rss_mb']:>9.0f} "
              f"{r['nodes']:>8} {r.get('max_abs_err', ''):>12}  {r.get('error', r.get('note', ''))}")


if __name__ == "__main__":
    main()
