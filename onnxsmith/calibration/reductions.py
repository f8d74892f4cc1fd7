"""In-graph MinMax: the model reduces each calibrated value itself, so only scalars leave a run.

For a value ``x`` observed by a :class:`~onnxsmith.calibration.observers.MinMaxObserver`, the
calibration session computes, next to the model's own outputs,

    low = ReduceMin(x), high = ReduceMax(x)   (over all axes, or all but the channel axis)
    total = ReduceSum(x),  size = Size(x)

and the run returns these instead of ``x``. The observer then takes ``(low, high, size)`` through
:meth:`~onnxsmith.calibration.observers.MinMaxObserver.update_extremes`. Minimum and maximum are
exact in any order, so the range is the one the observer computes from ``x`` itself, provided
every element of ``x`` is finite. That is checked per run: ``low``, ``high`` and ``total`` are
all finite only if ``x`` holds no NaN (a NaN makes the sum NaN) and no infinity (it would be an
extreme). A run that fails the check (or whose sum merely overflows) is *flagged*: the value is
fetched whole from a second session that exposes it, and the observer sees the array as
before (non-finite elements skipped and counted), so ranges and counts never differ from the
exposing path.

A value that is a ``Cast`` of integers or booleans has no ``total``: every element is finite
(the largest 64-bit integer is far below float32's largest value), so ``low`` and ``high`` alone
decide the check (they are infinite only for an empty value). Such values are often the largest
of a model (magika's one-hot bytes, 2 MiB per row: their sum took 35 ms of the 1.7 s of onnxruntime
kernels in calibrating magika on one thread).

``size`` also tells the memory planner how large ``x`` is per row without materializing it
(:mod:`onnxsmith.calibration.batching`).

The four nodes of a value follow its producer in the graph, and the calibration session runs
ready nodes in graph order (``ExecutionOrder.PRIORITY_BASED``,
:mod:`onnxsmith.calibration.session`), so each value is reduced as soon as it exists and freed
when the model no longer needs it. Appended at the end, or under onnxruntime's default order
(which runs output-only branches last), the reductions kept every calibrated value alive to the
end of the run: magika at 6 rows per run peaked 40 MiB above the session instead of the model's
own 17 MiB.

Values qualify when their element type is float32 or float64 and, for per-channel ranges, their
rank is known; others are exposed as graph outputs as before. The nodes and outputs are added to
the caller's model only while the session is built (:func:`reductions_added`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxsmith.calibration.observers import MinMaxObserver, Observer
from onnxsmith.ir.exposed import exposed_outputs

__all__ = ["Reduction", "plan_reductions", "reductions_added"]

_REDUCIBLE = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE})
_SUFFIXES = ("min", "max", "sum", "size")
_SUFFIXES_OF_FINITE = ("min", "max", "size")


@dataclass(frozen=True)
class Reduction:
    """The in-graph summary of one value.

    Attributes:
        value: Name of the calibrated value.
        outputs: Names of its ``(low, high, total, size)`` graph outputs, or ``(low, high, size)``
            when the value cannot hold a non-finite element (a ``Cast`` of integers or booleans).
        axis: The channel axis kept by ``low``/``high`` (None: they are scalars).
        rank: The value's declared rank, when known.
        itemsize: Bytes per element of the value.
    """

    value: str
    outputs: tuple[str, ...]
    axis: int | None
    rank: int | None
    itemsize: int

    @property
    def axes(self) -> tuple[int, ...] | None:
        """The axes ``low``/``high`` reduce (None: all of them)."""
        if self.axis is None or self.rank is None:
            return None
        return tuple(d for d in range(self.rank) if d != self.axis)

    @property
    def total(self) -> str | None:
        """Name of the ``total`` output (None: the value is finite by construction)."""
        return self.outputs[2] if len(self.outputs) == 4 else None

    @property
    def size(self) -> str:
        """Name of the ``size`` output."""
        return self.outputs[-1]

    def finite(self, results: Sequence[np.ndarray]) -> bool:
        """Whether a run's results (in ``outputs`` order) prove every element finite (else the run is flagged)."""
        low, high = results[0], results[1]
        sum_ok = self.total is None or math.isfinite(float(results[2]))
        return bool(np.isfinite(low).all() and np.isfinite(high).all() and sum_ok)


def plan_reductions(values: Sequence[ir.Value], observers: Mapping[str, Observer],
                    taken: set[str]) -> tuple[list[Reduction], list[ir.Value]]:
    """Splits ``values`` into those reduced in the graph and those to expose.

    ``taken`` holds the names already used in the model; the new output names are added to it.
    A per-channel value's channel axis comes from its declared rank.
    """
    reductions: list[Reduction] = []
    exposed: list[ir.Value] = []
    for value in values:
        observer = observers[value.name]
        rank = len(value.shape) if value.shape is not None else None
        if (type(observer) is not MinMaxObserver or value.dtype not in _REDUCIBLE
                or (observer.axis is not None and rank is None)):
            exposed.append(value)
            continue
        axis = observer.axis_for(rank) if rank is not None else None
        suffixes = _SUFFIXES_OF_FINITE if _finite_by_construction(value) else _SUFFIXES
        reductions.append(Reduction(value.name, _fresh_names(value.name, suffixes, taken), axis, rank,
                                    value.dtype.itemsize))
    return reductions, exposed


def _finite_by_construction(value: ir.Value) -> bool:
    """Whether ``value`` is a Cast of integers or booleans (no NaN, no infinity, whatever the data)."""
    producer = value.producer()
    if producer is None or producer.domain not in ("", "ai.onnx") or producer.op_type != "Cast":
        return False
    source = producer.inputs[0] if producer.inputs else None
    return source is not None and source.dtype is not None and (
        source.dtype == ir.DataType.BOOL or source.dtype.is_integer())


def _fresh_names(name: str, suffixes: Sequence[str], taken: set[str]) -> tuple[str, ...]:
    names = []
    for suffix in suffixes:
        candidate, n = f"{name}/calibration_{suffix}", 0
        while candidate in taken:
            n += 1
            candidate = f"{name}/calibration_{suffix}_{n}"
        taken.add(candidate)
        names.append(candidate)
    return tuple(names)


def _reduce(op_type: str, x: ir.Value, axes: tuple[int, ...] | None, opset: int, output: str) -> list[ir.Node]:
    """``op_type`` (ReduceMin/ReduceMax) of ``x`` over ``axes`` (None: all), without kept dims."""
    if axes is None:
        node = ir.node(op_type, [x], {"keepdims": 0}, name=output)
        node.outputs[0].name = output
        return [node]
    if opset < 18:  # axes became an input of ReduceMin/ReduceMax in opset 18
        node = ir.node(op_type, [x], {"keepdims": 0, "axes": list(axes)}, name=output)
        node.outputs[0].name = output
        return [node]
    constant = ir.node("Constant", [], {"value": ir.tensor(np.array(axes, np.int64))}, name=f"{output}/axes")
    constant.outputs[0].name = f"{output}/axes"
    node = ir.node(op_type, [x, constant.outputs[0]], {"keepdims": 0}, name=output)
    node.outputs[0].name = output
    return [constant, node]


@contextlib.contextmanager
def reductions_added(model: ir.Model, reductions: Sequence[Reduction]) -> Iterator[None]:
    """Temporarily adds the reduction nodes of ``reductions``, each right after its value's producer
    (before the first node for a graph input), and makes their results outputs."""
    graph = model.graph
    opset = model.opset_imports.get("", 1)
    values = {v.name: v for v in (*graph.inputs, *(o for n in graph for o in n.outputs))}
    nodes: list[ir.Node] = []
    try:
        for r in reductions:
            x = values[r.value]
            added = [*_reduce("ReduceMin", x, r.axes, opset, r.outputs[0]),
                     *_reduce("ReduceMax", x, r.axes, opset, r.outputs[1])]
            if r.total is not None:
                added.append(ir.node("ReduceSum", [x], {"keepdims": 0}, name=r.total))
                added[-1].outputs[0].name = r.total
            added.append(ir.node("Size", [x], name=r.size))
            added[-1].outputs[0].name = r.size
            producer = x.producer()
            if producer is not None:
                graph.insert_after(producer, added)
            elif len(graph):
                graph.insert_before(graph[0], added)
            else:
                graph.extend(added)
            nodes += added
        with exposed_outputs(model, [n.outputs[0] for n in nodes if n.op_type != "Constant"]):
            yield
    finally:
        graph.remove(reversed(nodes), safe=True)
