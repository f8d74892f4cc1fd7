"""Shared helpers of the zoo benchmarks (``bench_fuse.py``, ``bench_quant.py``).

* Latency: :func:`interleaved_medians` times several candidates round-robin (run 1 of every
  candidate, then run 2 of every candidate, starting each round one candidate further) so that
  drift in the machine's speed spreads over all of them instead of favouring whichever ran first;
  each candidate's figure is the median of its runs, in milliseconds.
* Tools run in child processes (:func:`run_child`): wall time and the child's own peak resident
  set size come from ``os.wait4``, which reports the rusage of that one process (not the maximum
  over all children, as ``RUSAGE_CHILDREN`` would).
* Tables are GitHub markdown (:func:`markdown_table`); ratios read ``1.23x`` (:func:`ratio`).

These are benchmark tools: they are never imported by the onnxsmith package or its tests.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "tools" / "out" / "zoo"

#: Runs onnxsmith's command line with this interpreter (``optimize-graph`` need not be on PATH).
ONNXSMITH_CLI = (sys.executable, "-c", "import sys; from onnxsmith.cli import main; sys.exit(main())")


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
    parts: list[list[np.ndarray]] = []
    for start in range(0, n, batch):
        parts.append(sess.run(None, feeds_for(sess, data, slice(start, min(n, start + batch)))))
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def interleaved_medians(runners: Mapping[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, float]:
    """Median wall time in milliseconds of each runner, timed round-robin after ``warmup`` calls each."""
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
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


def run_child(argv: Sequence[str], timeout: float | None = None, env: Mapping[str, str] | None = None) -> ChildResult:
    """Runs ``argv`` to completion and returns its exit code, output, wall time and peak RSS."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(list(argv), stdout=out, stderr=err, env=None if env is None else dict(env))
        timer = threading.Timer(timeout, child.kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            if timer:
                timer.cancel()
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildResult(child.returncode, out.read(), err.read(), seconds, usage.ru_maxrss / 1024)


def single_thread_env() -> dict[str, str]:
    """This process's environment with OpenMP/BLAS pools limited to one thread."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    return env


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
