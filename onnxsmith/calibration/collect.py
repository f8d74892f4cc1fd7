"""Streaming collection: run the model over the data once and feed each value's observer online.

The values to observe are exposed as extra graph outputs of the model for the life of one
onnxruntime session (added before the session is built and removed right after, in a
``finally``: the caller's model is left as it was). The session runs without graph
optimizations, so every value keeps its name, with a configurable number of threads (default: one
per physical core).

Each run's outputs go to the observers and are dropped before the next run, so memory is one
run's exposed activations plus O(values x histogram bins), never O(samples x activations).
Graph inputs are observed from the feeds directly. MinMax values are not exposed at all: the
graph reduces them to their extremes itself (:mod:`onnxsmith.calibration.reductions`), so a run
returns a few scalars per value. The session shares the model's large weights instead of
copying them (:mod:`onnxsmith.calibration.session`).

``memory_budget_mb`` (default :data:`~onnxsmith.calibration.batching.DEFAULT_MEMORY_BUDGET_MB`)
bounds the first term. Unless the caller fixes ``batch_size``, each session first measures the
exposed bytes per row with a one-row probe and runs samples in slices of as many rows as fit the
budget (:mod:`onnxsmith.calibration.batching`). When even one row's values would not fit (an
estimate from declared shapes, with named batch dimensions as 1 and other unknown dimensions as
1, so it can be low for models without shape information), or when ``max_outputs_per_run`` is
set, the values are split into chunks (chunked mode) and the data is read once per chunk with
one session per chunk; a source that can be read only once is then not chunked by the budget.
Every pass still computes the whole model, so in chunked mode a pass takes no more rows than the
estimate of all the values allows (one, when the budget made the chunks): sized on its own chunk,
a pass with small values took all 199 rows of magika at once and peaked at 630 MiB (4 MiB budget).

Samples are checked against the model before the first run (from file headers, without loading
data) when the source can be read more than once; a one-shot iterator's samples are each checked
just before they run. A ``KeyboardInterrupt`` propagates as is: nothing is written anywhere.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.calibration.batching import DEFAULT_MEMORY_BUDGET_MB, measure_bytes_per_row, rows_for_budget
from onnxsmith.calibration.observers import MinMaxObserver, Observer
from onnxsmith.calibration.readers import DataSource, Sample
from onnxsmith.calibration.reductions import Reduction, plan_reductions, reductions_added
from onnxsmith.calibration.session import calibration_session
from onnxsmith.calibration.validate import RunPlan, SampleValidator
from onnxsmith.errors import DataInputError, OnnxsmithError, UnsupportedError, first_line
from onnxsmith.ir.exposed import exposed_outputs

__all__ = ["CollectionStats", "Progress", "ProgressCallback", "collect", "estimate_bytes", "plan_chunks"]

logger = logging.getLogger(__name__)

_FLOAT_ORT_TYPES = frozenset({"tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)"})


@dataclass(frozen=True)
class Progress:
    """Where collection stands, passed to the progress callback after every run.

    Attributes:
        chunk: Index of the current chunk (pass over the data), from 0.
        num_chunks: Number of chunks.
        runs_done: Runs finished in this chunk.
        runs_total: Runs per chunk, when known (re-iterable sources).
    """

    chunk: int
    num_chunks: int
    runs_done: int
    runs_total: int | None

    @property
    def fraction(self) -> float | None:
        """Overall fraction done in ``[0, 1]``, when the total is known."""
        if not self.runs_total:
            return None
        return (self.chunk + self.runs_done / self.runs_total) / self.num_chunks


ProgressCallback = Callable[[Progress], None]


@dataclass
class CollectionStats:
    """What a collection did.

    Attributes:
        runs: Model runs per pass over the data.
        samples: Rows fed per pass (sum of each run's leading input dimension).
        chunks: Value names observed in each pass.
        rows_per_run: Most rows per run in each pass (None: samples ran as given).
        skipped: Values dropped because onnxruntime reports a non-float type.
        seconds: Wall time.
    """

    runs: int = 0
    samples: int = 0
    chunks: list[list[str]] = field(default_factory=list)
    rows_per_run: list[int | None] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def estimate_bytes(value: ir.Value, dims: Mapping[str, int]) -> int:
    """Estimated bytes of one run's ``value``: declared shape, named dims from ``dims``, unknown as 1."""
    itemsize = value.dtype.itemsize if value.dtype is not None else 4
    if value.shape is None:
        return int(itemsize)
    size = 1
    for d in value.shape.dims:
        size *= d if isinstance(d, int) else dims.get(getattr(d, "value", None) or "", 1)
    return int(math.ceil(size * itemsize))


def plan_chunks(values: Sequence[ir.Value], dims: Mapping[str, int], *, max_outputs_per_run: int | None = None,
                memory_budget_mb: float | None = None) -> list[list[ir.Value]]:
    """Splits ``values`` (in order) into chunks within the output-count and memory limits.

    A single value larger than the budget gets a chunk of its own (and a warning).
    """
    if max_outputs_per_run is not None and max_outputs_per_run < 1:
        raise DataInputError(f"max_outputs_per_run must be at least 1, got {max_outputs_per_run}")
    if memory_budget_mb is not None and memory_budget_mb <= 0:
        raise DataInputError(f"memory_budget_mb must be positive, got {memory_budget_mb}")
    budget = None if memory_budget_mb is None else memory_budget_mb * 2**20
    chunks: list[list[ir.Value]] = []
    current: list[ir.Value] = []
    used = 0
    for value in values:
        size = estimate_bytes(value, dims)
        if budget is not None and size > budget:
            logger.warning("value '%s' alone needs about %.1f MiB per run, over the %.1f MiB budget",
                           value.name, size / 2**20, memory_budget_mb)
        full = (max_outputs_per_run is not None and len(current) >= max_outputs_per_run) or (
            budget is not None and current and used + size > budget)
        if full:
            chunks.append(current)
            current, used = [], 0
        current.append(value)
        used += size
    if current:
        chunks.append(current)
    return chunks


def _rows(feed: Mapping[str, np.ndarray]) -> int:
    first = next(iter(feed.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


def _validate_all(source: DataSource, validator: SampleValidator) -> list[RunPlan]:
    """Checks every sample from its specs; returns their run plans."""
    plans = [validator.check(label, specs) for label, specs in source.specs()]
    if not plans:
        raise DataInputError(f"{source.description} holds no calibration samples", "give at least one sample")
    return plans


def _planning_dims(plans: Sequence[RunPlan], validator: SampleValidator, per_row: bool) -> dict[str, int]:
    """Named dimension sizes of the first run, batch dimensions as 1 when ``per_row``."""
    dims = dict(plans[0].dims) if plans else {}
    if per_row:
        dims.update(dict.fromkeys(validator.batch_dims & dims.keys(), 1))
    return dims


def collect(model: ir.Model, source: DataSource, observers: Mapping[str, Observer], *,
            validator: SampleValidator, max_outputs_per_run: int | None = None,
            memory_budget_mb: float | None = DEFAULT_MEMORY_BUDGET_MB, threads: int = 0,
            progress: ProgressCallback | None = None) -> CollectionStats:
    """Runs ``model`` over ``source`` and feeds ``observers`` (keyed by value name) in place.

    ``memory_budget_mb`` None runs every sample as given (or in ``validator.batch_size`` slices)
    and never chunks by memory.

    Raises:
        DataInputError: A sample does not fit the model, there is no sample, or chunked mode
            needs several passes over a source that can be read once.
        UnsupportedError: onnxruntime cannot load or run the model.
    """
    started = time.perf_counter()
    graph = model.graph
    input_names = {v.name for v in graph.inputs}
    values = {v.name: v for v in (*graph.inputs, *(o for n in graph for o in n.outputs))}
    unknown = [name for name in observers if name not in values]
    if unknown:
        raise OnnxsmithError(f"no value named '{unknown[0]}' in the main graph", "check the value names")
    exposed = [values[name] for name in observers if name not in input_names]
    plans = _validate_all(source, validator) if source.reiterable else []
    auto_rows = memory_budget_mb is not None and validator.batch_size is None and validator.batch == "auto"
    chunk_budget = memory_budget_mb if source.reiterable or max_outputs_per_run is not None else None
    chunks = plan_chunks(exposed, _planning_dims(plans, validator, auto_rows), max_outputs_per_run=max_outputs_per_run,
                         memory_budget_mb=chunk_budget) or [[]]
    if len(chunks) > 1 and not source.reiterable:
        raise DataInputError(f"chunked calibration reads the data {len(chunks)} times, but {source.description} "
                             "can be read only once",
                             "pass a list, a directory, or a function returning a fresh iterator")
    stats = CollectionStats(chunks=[[v.name for v in c] for c in chunks])
    row_cap = None
    if len(chunks) > 1:
        logger.info("calibrating %d values in %d passes over the data", len(exposed), len(chunks))
        if auto_rows:  # every pass computes all the values, not only its chunk's: its rows must fit them all
            dims = _planning_dims(plans, validator, True)
            row_cap = rows_for_budget(sum(estimate_bytes(v, dims) for v in exposed), memory_budget_mb)
    taken = set(values) | set(graph.initializers)
    for index, chunk in enumerate(chunks):
        reductions, exposed_here = plan_reductions(chunk, observers, taken)
        names, session = _open_session(model, exposed_here, reductions, threads, stats)
        targets = {name: observers[name] for name in names}
        if index == 0:  # graph inputs are observed from the feeds, once
            targets.update({name: observers[name] for name in observers if name in input_names})
        reduced = _Reduced(model, reductions, {r.value: observers[r.value] for r in reductions}, threads)
        pass_ = _Pass(session, names, targets, reduced, validator, memory_budget_mb if auto_rows else None, plans,
                      progress, index, len(chunks), row_cap)
        stats.runs, stats.samples = pass_.read(source)
        stats.rows_per_run.append(pass_.validator.batch_size)
    stats.seconds = time.perf_counter() - started
    return stats


class _Reduced:
    """The values one session reduces in the graph: feeding their observers, flagged runs."""

    def __init__(self, model: ir.Model, reductions: Sequence[Reduction], observers: Mapping[str, MinMaxObserver],
                 threads: int) -> None:
        self.model, self.reductions, self.observers, self.threads = model, reductions, observers, threads
        self.outputs = [name for r in reductions for name in r.outputs]
        self.sized = {r.size: r.itemsize for r in reductions}
        self._fallback: Any = None

    def feed(self, results: Mapping[str, np.ndarray], feed: Mapping[str, np.ndarray], label: str) -> None:
        """Feeds the observers from one run's ``results``; flagged values are fetched whole from ``feed``."""
        flagged = []
        for r in self.reductions:
            summary = [results[name] for name in r.outputs]
            if r.finite(summary):
                self.observers[r.value].update_extremes(summary[0], summary[1], int(summary[-1]), r.axis)
            else:
                flagged.append(r.value)
        if flagged:
            for name, array in zip(flagged, self._run_fallback(flagged, feed, label)):
                self.observers[name].update(array)

    def _run_fallback(self, names: list[str], feed: Mapping[str, np.ndarray], label: str) -> list[np.ndarray]:
        """The arrays of ``names`` on ``feed`` from a session exposing every reduced value (built once)."""
        if self._fallback is None:
            logger.debug("non-finite or overflowing values in %s: exposing %s", label, names)
            values = {v.name: v for n in self.model.graph for v in n.outputs}
            with exposed_outputs(self.model, [values[r.value] for r in self.reductions]):
                self._fallback = calibration_session(self.model, threads=self.threads)
        try:
            return self._fallback.run(names, feed)
        except Exception as e:  # onnxruntime raises its own exception types
            raise UnsupportedError(f"onnxruntime failed on {label}: {first_line(e)}") from e


class _Pass:
    """One pass over the data with one session: rows per run, feeding, progress."""

    def __init__(self, session: Any, names: Sequence[str], targets: Mapping[str, Observer], reduced: _Reduced,
                 validator: SampleValidator, budget_mb: float | None, plans: Sequence[RunPlan],
                 progress: ProgressCallback | None, chunk: int, num_chunks: int, row_cap: int | None = None) -> None:
        self.session, self.names, self.targets, self.reduced = session, names, targets, reduced
        self.fetch = [*names, *reduced.outputs]
        self.validator, self.budget_mb, self.plans, self.row_cap = validator, budget_mb, plans, row_cap
        self.progress, self.chunk, self.num_chunks = progress, chunk, num_chunks
        self.runs_total = sum(p.runs for p in plans) if plans else None

    def _size_runs(self, sample: Sample) -> None:
        """Picks the rows per run from a one-row probe of ``sample`` (the first one), at most ``row_cap``."""
        per_row = measure_bytes_per_row(self.session, self.names, self.validator, sample, self.reduced.sized)
        rows = rows_for_budget(per_row, self.budget_mb)
        if self.row_cap is not None:
            rows = min(rows, self.row_cap)
        logger.info("calibration runs take up to %d rows (%.1f MiB of exposed values per row, %.0f MiB budget)",
                    rows, per_row / 2**20, self.budget_mb)
        self.validator = self.validator.with_batch_size(rows)
        if self.plans:
            self.runs_total = sum(p.runs_with(rows) for p in self.plans)

    def read(self, source: DataSource) -> tuple[int, int]:
        """Reads the data once, feeding the targets; returns the number of runs and rows."""
        runs = rows = 0
        for sample in source:
            if runs == 0 and self.budget_mb is not None and self.fetch:
                self._size_runs(sample)
            for feed in self.validator.feeds(sample):
                observed = dict(feed)
                if self.fetch:
                    try:
                        observed.update(zip(self.fetch, self.session.run(self.fetch, feed)))
                    except Exception as e:  # onnxruntime raises its own exception types
                        raise UnsupportedError(f"onnxruntime failed on {sample.label}: {first_line(e)}") from e
                    self.reduced.feed(observed, feed, sample.label)
                for name, observer in self.targets.items():
                    observer.update(observed[name])
                del observed  # this run's activations go before the next run
                runs += 1
                rows += _rows(feed)
                if self.progress is not None:
                    self.progress(Progress(self.chunk, self.num_chunks, runs, self.runs_total))
        if runs == 0:
            raise DataInputError(f"{source.description} holds no calibration samples", "give at least one sample")
        return runs, rows


def _open_session(model: ir.Model, chunk: Sequence[ir.Value], reductions: Sequence[Reduction], threads: int,
                  stats: CollectionStats):
    """A session exposing ``chunk`` and computing ``reductions``; returns the float value names to
    fetch and the session."""
    if not chunk and not reductions:
        return [], None
    with exposed_outputs(model, chunk), reductions_added(model, reductions):
        session = calibration_session(model, threads=threads)
    types = {o.name: o.type for o in session.get_outputs()}
    names = []
    for value in chunk:
        if types.get(value.name) in _FLOAT_ORT_TYPES:
            names.append(value.name)
        else:
            logger.debug("skipping '%s': onnxruntime type %s is not float", value.name, types.get(value.name))
            stats.skipped.append(value.name)
    return names, session
