"""Benchmark: peak memory of load -> cleanup -> save on a large external-data model.

Generates a MatMul/Add chain whose float32 weights (64 MiB each, ``--size-gb`` in total, 4 by
default) live in an external data file written by streaming, so the generator itself never holds
more than one chunk. Then, each in a fresh subprocess, it measures peak RSS and wall time of

- ``onnxsmith``: ``onnxsmith.load`` + ``PassManager("cleanup")`` (structural verification on;
  ``--pipeline`` names another, ``none`` skips the passes) + ``onnxsmith.save``;
- ``onnx``: ``onnx.load`` + ``onnx.save_model(save_as_external_data=True)``, the usual peer.

Each child first runs the same steps on a tiny model so that imports and lazy initialisation are
counted in the baseline, not in the growth. Outputs are checked byte for byte against the source
weights (streamed, in the parent). Peak RSS is the child's own ``ru_maxrss``; it includes pages of
memory-mapped files that were read, so reading the weights through a mapping counts too.

    python tools/bench_memory.py                     # the BENCHMARKS.md figure (4 GB)
    python tools/bench_memory.py --size-gb 1 --json  # smaller, machine-readable
    python tools/bench_memory.py --dir /big/disk --tools onnxsmith --pipeline none

The model and outputs go to a temporary folder under ``--dir`` (default: the system temp folder)
that is removed afterwards; about twice the model size must be free there.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = ("onnxsmith", "onnx")
WEIGHT_SIDE = 4096  # 4096 x 4096 float32 = 64 MiB per weight
WEIGHT_BYTES = WEIGHT_SIDE * WEIGHT_SIDE * 4
CHUNK_BYTES = 16 * 2**20


def write_model(folder: Path, n_weights: int, side: int = WEIGHT_SIDE) -> Path:
    """Writes ``model.onnx`` + ``model.onnx.data``: ``h = (h @ W_i) + B_i`` for ``n_weights`` layers."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    data_name = "model.onnx.data"
    weight_bytes = side * side * 4
    rows_per_chunk = max(1, CHUNK_BYTES // (side * 4))
    initializers, nodes = [], []
    with open(folder / data_name, "wb") as data:
        for i in range(n_weights):
            weight = onnx.TensorProto(name=f"W{i}", data_type=TensorProto.FLOAT, dims=[side, side],
                                      data_location=TensorProto.EXTERNAL)
            for key, value in (("location", data_name), ("offset", str(i * weight_bytes)),
                               ("length", str(weight_bytes))):
                weight.external_data.add(key=key, value=value)
            for start in range(0, side, rows_per_chunk):
                rows = min(rows_per_chunk, side - start)
                block = np.full((rows, side), 1e-4, np.float32)
                block[np.arange(rows), np.arange(start, start + rows)] = (i + 1) / side
                data.write(block.tobytes())
            initializers += [weight, numpy_helper.from_array(np.full(side, 0.5, np.float32), f"B{i}")]
            prev = "x" if i == 0 else f"h{i - 1}"
            nodes += [helper.make_node("MatMul", [prev, f"W{i}"], [f"m{i}"], name=f"matmul{i}"),
                      helper.make_node("Add", [f"m{i}", f"B{i}"], [f"h{i}"], name=f"add{i}")]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, side])],
        [helper.make_tensor_value_info(f"h{n_weights - 1}", TensorProto.FLOAT, [1, side])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save_model(model, folder / "model.onnx")
    return folder / "model.onnx"


# ----- children -----

def _peak_rss() -> int:
    """This process's peak RSS in bytes (ru_maxrss is KiB on Linux, bytes on macOS)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _onnxsmith_runner(pipeline: str):
    """load -> ``pipeline`` (structurally verified) -> save."""
    from onnxsmith.ir import load, save
    from onnxsmith.passes import PassManager, PassResult, register_pass

    if pipeline == "none":
        @register_pass("bench-noop")
        def bench_noop(model, ctx):
            """Changes nothing: measures load + verification + save alone."""
            return PassResult(False)

        pipeline = "bench-noop"

    def run(src: str, dst: str) -> None:
        model = load(src)
        PassManager(pipeline, verify="structural").run(model)
        save(model, dst)

    return run, f"load + {pipeline} + save"


def _onnx_runner(_pipeline: str):
    """The peer has no passes: load everything, save with external data."""
    import onnx

    def run(src: str, dst: str) -> None:
        model = onnx.load_model(src)
        onnx.save_model(model, dst, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{Path(dst).name}.data", size_threshold=1024)

    return run, "onnx.load + onnx.save_model"


def child(tool: str, pipeline: str, warm_src: str, src: str, out_dir: str) -> dict:
    """Runs ``tool`` on a warm-up model, then on ``src``; returns the measurements."""
    run, what = {"onnxsmith": _onnxsmith_runner, "onnx": _onnx_runner}[tool](pipeline)
    run(warm_src, str(Path(out_dir) / "warm.onnx"))
    baseline = _peak_rss()
    start = time.perf_counter()
    run(src, str(Path(out_dir) / "out.onnx"))
    seconds = time.perf_counter() - start
    peak = _peak_rss()
    return {"tool": tool, "what": what, "seconds": seconds, "peak_rss": peak, "baseline_rss": baseline,
            "growth_rss": peak - baseline}


# ----- parent -----

def _tensor_ranges(model_path: Path) -> dict[str, tuple[Path, int, int]]:
    import onnx

    proto = onnx.load_model(model_path, load_external_data=False)
    ranges = {}
    for tensor in proto.graph.initializer:
        info = {e.key: e.value for e in tensor.external_data}
        if info:
            ranges[tensor.name] = (model_path.parent / info["location"], int(info.get("offset", 0)),
                                   int(info["length"]))
    return ranges


def same_weights(src: Path, out: Path) -> bool:
    """Whether every external tensor of ``src`` has the same bytes in ``out`` (streamed compare)."""
    expected, actual = _tensor_ranges(src), _tensor_ranges(out)
    if not expected.keys() <= actual.keys():
        return False
    for name, (file_a, offset_a, length) in expected.items():
        file_b, offset_b, length_b = actual[name]
        if length_b != length:
            return False
        with open(file_a, "rb") as a, open(file_b, "rb") as b:
            a.seek(offset_a)
            b.seek(offset_b)
            for _ in range(0, length, CHUNK_BYTES):
                if a.read(CHUNK_BYTES) != b.read(CHUNK_BYTES):
                    return False
    return True


def measure(tool: str, pipeline: str, warm: Path, src: Path, work: Path) -> dict:
    out_dir = work / f"out-{tool}"
    out_dir.mkdir()
    proc = subprocess.run([sys.executable, __file__, "--child", tool, pipeline, str(warm), str(src), str(out_dir)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{tool} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["output_ok"] = same_weights(src, out_dir / "out.onnx")
    shutil.rmtree(out_dir)
    return result


def _table(results: list[dict], size: int) -> str:
    gib = 2**30
    lines = [f"model: {size / gib:.2f} GiB of external float32 weights",
             f"{'tool':<10} {'peak RSS':>10} {'growth':>10} {'wall':>8}  output  steps",
             f"{'-' * 10} {'-' * 10} {'-' * 10} {'-' * 8}  ------  -----"]
    for r in results:
        lines.append(f"{r['tool']:<10} {r['peak_rss'] / gib:>6.2f} GiB {r['growth_rss'] / gib:>6.2f} GiB "
                     f"{r['seconds']:>7.1f}s  {'same' if r['output_ok'] else 'DIFF':<6}  {r['what']}")
    by_tool = {r["tool"]: r for r in results}
    if len(by_tool) == 2:
        ratio = by_tool["onnx"]["peak_rss"] / by_tool["onnxsmith"]["peak_rss"]
        lines.append(f"onnx peak RSS / onnxsmith peak RSS = {ratio:.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=4.0, help="total weight size in GB (default 4)")
    parser.add_argument("--dir", type=Path, default=None, help="where to create the temporary folder")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--pipeline", default="cleanup",
                        help="onnxsmith pipeline to run between load and save ('none': load + save only)")
    parser.add_argument("--child", nargs=5, metavar=("TOOL", "PIPELINE", "WARM", "SRC", "OUT_DIR"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    tools = [t for t in args.tools.split(",") if t]
    if not tools or set(tools) - set(TOOLS):
        parser.error(f"--tools takes names from {', '.join(TOOLS)}")
    n_weights = max(1, round(args.size_gb * 1e9 / WEIGHT_BYTES))
    size = n_weights * WEIGHT_BYTES
    base = args.dir or Path(tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    if free < 2.2 * size:
        parser.error(f"{base} has {free / 2**30:.1f} GiB free; {2.2 * size / 2**30:.1f} GiB needed")
    with tempfile.TemporaryDirectory(prefix="bench-memory-", dir=base) as tmp:
        work = Path(tmp)
        (work / "warm").mkdir()
        (work / "model").mkdir()
        warm = write_model(work / "warm", 1, side=64)
        src = write_model(work / "model", n_weights)
        results = [measure(tool, args.pipeline, warm, src, work) for tool in tools]
    if args.json:
        print(json.dumps({"size_bytes": size, "results": results}, indent=2))
    else:
        print(_table(results, size))
    return 0 if all(r["output_ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
