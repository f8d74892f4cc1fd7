"""Benchmark: the floor under any onnxruntime-based calibrator, against onnxruntime.quantization.

A calibrator has to import numpy, onnx and onnxruntime and run the fp32 model over every
calibration row; nothing it adds can make it cheaper than that. For each zoo model this script
times, in its own process (wall time and peak RSS, as ``bench_quant.py`` measures the tools):

* ``floor``: those imports, one onnxruntime session at ORT_ENABLE_ALL (the fastest onnxruntime
  runs the model) and the calibration rows (``<model>-calib.npz``) run ``--rows-per-run`` at a
  time, keeping only the model's outputs: no value is exposed, no range computed;
* onnxruntime.quantization's ``quantize_static`` (QDQ, per-channel, MinMax) after the first of
  ``bench_quant.py``'s pre-processing recipes that works, as there, so the floor reads as a ratio
  of the tool the issue's goals refer to;
* onnxsmith's ``--passes cleanup,fuse,qdq --calibrator minmax --target cpu``.

    python tools/bench_floor.py --models magika --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import add_zoo_arguments, comma_list, markdown_table, number, ratio, run_child  # noqa: E402
from bench_quant import MODELS, ORT_PREPROCESS, onnxsmith_argv  # noqa: E402

FLOOR_CODE = """
import sys
import numpy as np, onnx, onnxruntime as ort
model, calib, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
with np.load(calib) as npz:
    data = {k: npz[k] for k in npz.files}
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
total = len(next(iter(data.values())))
for start in range(0, total, rows):
    session.run(None, {k: v[start:start + rows] for k, v in data.items()})
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_zoo_arguments(parser, MODELS)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--rows-per-run", type=int, default=1, help="calibration rows per floor run (default 1)")
    args = parser.parse_args(argv)
    bench_quant = str(Path(__file__).resolve().parent / "bench_quant.py")
    rows = []
    for name in comma_list(args.models):
        zoo = MODELS[name]
        src, calib = (args.zoo / zoo.model).resolve(), (args.zoo / zoo.calib).resolve()
        with tempfile.TemporaryDirectory() as work:
            out = str(Path(work) / "out.onnx")
            ort = [sys.executable, bench_quant, "--worker", "static-minmax", str(src), out, str(calib), "1"]
            recipe = next((r for r in ORT_PREPROCESS if run_child([*ort, r]).ok), None)
            if recipe is None:
                raise SystemExit(f"{name}: onnxruntime.quantization failed with every pre-processing recipe")
            argvs = {
                "floor": [sys.executable, "-c", FLOOR_CODE, str(src), str(calib), str(args.rows_per_run)],
                f"onnxruntime (pre-process: {recipe})": [*ort, recipe],
                "onnxsmith": onnxsmith_argv("static-minmax", src, Path(out), calib),
            }
            seen: dict[str, list[tuple[float, float]]] = {tool: [] for tool in argvs}
            for _ in range(args.repeat):
                for tool, command in argvs.items():
                    child = run_child(command)
                    if not child.ok:
                        raise SystemExit(f"{name}/{tool} failed: {child.error_line()}")
                    seen[tool].append((child.seconds, child.peak_rss_mb))
        med = {tool: (statistics.median(s for s, _ in runs), statistics.median(m for _, m in runs))
               for tool, runs in seen.items()}
        ort_s, ort_mb = med[f"onnxruntime (pre-process: {recipe})"]
        for tool, (seconds, mb) in med.items():
            rows.append([name, tool, number(seconds), number(mb, 0), ratio(seconds, ort_s), ratio(mb, ort_mb)])
    print(markdown_table(["model", "process", "wall (s)", "peak RSS (MiB)", "time vs onnxruntime",
                          "RSS vs onnxruntime"], rows, numeric_from=2))
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"\ndone in {time.perf_counter() - started:.0f} s")
    sys.exit(code)
