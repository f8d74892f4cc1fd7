"""Shared helpers of the zoo benchmarks (``bench_fuse.py``, ``bench_quant.py``).

* Latency: :func:`interleaved_medians` times several candidates round-robin in blocks (a block of
  runs of every candidate, then the next block of every candidate, starting each round one
  candidate further) so that drift in the machine's speed spreads over all of them instead of
  favouring whichever ran first; each candidate's figure is the median of its runs, in
  milliseconds. Each block starts with untimed warm-up runs: after another session ran, the first
  runs of a session are slow (MiniLM, batch 1, 2 threads on a 2-core VM: 17 ms settling to 8 ms
  over four runs), so alternating single runs measured that switch, not the model (26-29 ms).
* Tools run in child processes (:func:`run_child`): wall time and the child's own peak resident
  set size come from ``os.wait4``, which reports the rusage of that one process (not the maximum
  over all children, as ``RUSAGE_CHILDREN`` would). Linux counts in a child's peak RSS the pages
  it shared with its parent between fork and exec, so a benchmark holding large sessions would
  inflate every child's figure: the child is therefore started by a small launcher process (this
  file run as a script, ``--measure``) and the figures include at most the launcher's ~10 MiB.
* Tables are GitHub markdown (:func:`markdown_table`); ratios read ``1.23x`` (:func:`ratio`).
* The zoo benchmarks share their command line's ``--zoo``/``--models`` (:func:`add_zoo_arguments`,
  :func:`comma_list`, :func:`require_zoo_files`) and how a report goes out (:func:`publish`).

These are benchmark tools: they are never imported by the onnxsmith package or its tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "tools" / "out" / "zoo"

#: Runs onnxsmith's command line with this interpreter (``optimize-graph`` need not be on PATH).
ONNXSMITH_CLI = (sys.executable, "-c", "import sys; from onnxsmith.cli import main; sys.exit(main())")


def compile_onnxsmith() -> None:
    """Writes onnxsmith's bytecode cache, as ``pip install`` does for the peers' packages.

    A checkout installed in editable mode under ``PYTHONDONTWRITEBYTECODE=1`` (this CI's setting)
    would otherwise compile its ~230 modules in every measured process (0.15-0.2 s), a cost a
    regular installation never pays and the peers' compiled site-packages do not pay either.
    """
    import compileall

    import onnxsmith

    compileall.compile_dir(str(Path(onnxsmith.__file__).parent), quiet=1)


def add_zoo_arguments(parser: argparse.ArgumentParser, models: Iterable[str]) -> None:
    """Adds ``--zoo`` (the folder of zoo models) and ``--models`` (a comma-separated subset of ``models``)."""
    parser.add_argument("--zoo", type=lambda p: Path(p).resolve(), default=ZOO, help=f"zoo folder (default: {ZOO})")
    parser.add_argument("--models", default=",".join(models), help="comma-separated (default: all)")


def comma_list(text: str) -> list[str]:
    """The non-empty items of a comma-separated list, stripped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def require_zoo_files(parser: argparse.ArgumentParser, zoo: Path, files: Iterable[str]) -> None:
    """Exits through ``parser.error`` naming the ``files`` missing in ``zoo``, if any."""
    missing = [f for f in files if not (zoo / f).exists()]
    if missing:
        parser.error(f"missing in {zoo}: {', '.join(missing)} (build the zoo: python tools/zoo/build_all.py)")


def publish(text: str, markdown: Path | None, started: float) -> None:
    """Prints the report, also writes it to ``markdown`` when given, and logs the time since ``started``.

    Args:
        text: The markdown report.
        markdown: The file to write it to, or None.
        started: ``time.perf_counter()`` when the benchmark began; the elapsed seconds go to stderr.
    """
    print(text)
    if markdown:
        markdown.write_text(text)
    print(f"done in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def session(path: str | os.PathLike, threads: int, *, optimize: bool = True):
    """An onnxruntime CPU session: ``threads`` intra-op threads, sequential, ORT_ENABLE_ALL or DISABLE_ALL."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds_for(sess, data: Mapping[str, np.ndarray], rows: slice) -> dict[str, np.ndarray]:
    """The rows ``rows`` of each array in ``data`` that ``sess`` takes as an input."""
    return {i.name: data[i.name][rows] for i in sess.get_inputs()}


def run_batched(sess, data: Mapping[str, np.ndarray], n: int, batch: int = 16) -> list[np.ndarray]:
    """All outputs of ``sess`` on the first ``n`` rows of ``data``, run ``batch`` rows at a time."""
    import numpy as np

    parts: list[list[np.ndarray]] = []
    for start in range(0, n, batch):
        parts.append(sess.run(None, feeds_for(sess, data, slice(start, min(n, start + batch)))))
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def interleaved_medians(runners: Mapping[str, Callable[[], object]], runs: int, warmup: int,
                        block: int = 10) -> dict[str, float]:
    """Median wall time in milliseconds of each runner, timed round-robin in blocks.

    Args:
        runners: Candidate name -> one call to time.
        runs: Timed calls per candidate.
        warmup: Untimed calls before each block of a candidate (switching sessions is not timed).
        block: Timed calls per candidate per round.
    """
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(-(-runs // block)):
        for name in names[i % len(names):] + names[:i % len(names)]:
            for _ in range(warmup):
                runners[name]()
            for _ in range(min(block, runs - len(times[name]))):
                start = time.perf_counter()
                runners[name]()
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


@dataclass(frozen=True)
class ChildResult:
    """What a child process did: exit code, output, wall seconds and its own peak RSS in MiB."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error_line(self) -> str:
        """The last non-empty line of stderr (or stdout), for a table cell."""
        lines = [ln.strip() for ln in (self.stderr or self.stdout).splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit code {self.returncode}"


def run_child(argv: Sequence[str], timeout: float | None = None) -> ChildResult:
    """Runs ``argv`` to completion (killed after ``timeout`` seconds); exit code, output, wall time, peak RSS.

    The child runs in a temporary folder: onnxruntime.quantization leaves scratch files in its working
    directory.
    """
    with tempfile.TemporaryDirectory(prefix="bench-child-") as work:
        files = {name: Path(work) / name for name in ("stdout", "stderr", "usage.json")}
        launcher = [sys.executable, str(Path(__file__).resolve()), "--measure", str(files["usage.json"]),
                    str(timeout or 0), *argv]
        with open(files["stdout"], "w") as out, open(files["stderr"], "w") as err:
            subprocess.run(launcher, stdout=out, stderr=err, check=False, cwd=work)
        if not files["usage.json"].exists():
            raise RuntimeError(f"the launcher failed: {files['stderr'].read_text()[-500:]}")
        usage = json.loads(files["usage.json"].read_text())
        return ChildResult(usage["returncode"], files["stdout"].read_text(), files["stderr"].read_text(),
                           usage["seconds"], usage["maxrss_kib"] / 1024)


def _measure(usage_path: str, timeout: str, *argv: str) -> None:
    """Launcher body: runs ``argv`` with inherited stdout/stderr and writes its rusage as JSON."""
    start = time.perf_counter()
    child = subprocess.Popen(list(argv))
    timer = threading.Timer(float(timeout), child.kill) if float(timeout) > 0 else None
    if timer:
        timer.start()
    try:
        _, status, usage = os.wait4(child.pid, 0)
    finally:
        if timer:
            timer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)
    Path(usage_path).write_text(json.dumps({"returncode": child.returncode, "seconds": time.perf_counter() - start,
                                            "maxrss_kib": usage.ru_maxrss}))


def node_count(path: str | os.PathLike) -> int:
    """Nodes in the main graph of the model at ``path`` (weights not loaded)."""
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def size_mb(path: str | os.PathLike) -> float:
    """Size of the file at ``path`` plus any ``.data`` file beside it, in MiB."""
    path = Path(path)
    extra = path.with_name(path.name + ".data")
    return (path.stat().st_size + (extra.stat().st_size if extra.exists() else 0)) / 2**20


def ratio(value: float | None, reference: float | None) -> str:
    """``value / reference`` as ``1.23x``, or an em dash when either is missing."""
    if value is None or reference is None or reference == 0:
        return "—"
    return f"{value / reference:.2f}x"


def number(value: float | None, digits: int = 2) -> str:
    """A table cell for a measurement, an em dash when missing."""
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """A GitHub markdown table; columns from ``numeric_from`` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line() -> str:
    """CPU, cores and library versions, for the header of a results file."""
    import onnx
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, onnx {onnx.__version__}, "
            f"onnxruntime {onnxruntime.__version__}")


if __name__ == "__main__" and sys.argv[1:2] == ["--measure"]:
    _measure(*sys.argv[2:])
