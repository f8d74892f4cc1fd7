"""Checking calibration samples against the model's inputs, and the batch policy.

A sample fits when it has exactly one array per model input (an unnamed array stands for the
only input of a single-input model), with the input's element type exactly (no silent casts)
and its rank; static dimensions must match and a named (symbolic) dimension may take any size,
but the same size in every input of one run. A mismatch raises
:class:`~onnxsmith.errors.DataInputError` with one line naming the sample, the input, what was
expected and what was given, and the remedy.

Batch policy ``"auto"`` (the default) lets samples carry another number of rows than one run
takes; ``"exact"`` feeds every sample as given.

* An array with one dimension fewer than its input, whose leading dimension is 1 or named, gets
  a leading axis of 1 (a single item without its batch axis).
* When all arrays of a sample share their leading size ``n`` and an input's leading dimension is
  a static ``d`` that divides ``n``, the sample runs as ``n / d`` runs of ``d`` rows.
* When the leading dimensions are all named and ``batch_size`` is set, a sample with more rows
  runs in slices of at most ``batch_size`` rows (bounding the activations of one run; collection
  picks it from a memory budget when the caller does not, see :mod:`onnxsmith.calibration.batching`).

Splitting never changes a range: observers see the same values either way.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx_ir as ir

from onnxsmith.calibration.readers import UNNAMED, ArraySpec, Sample
from onnxsmith.errors import DataInputError, closest

__all__ = ["BatchPolicy", "InputSpec", "RunPlan", "SampleValidator"]

BatchPolicy = Literal["auto", "exact"]
Dim = int | str | None


@dataclass(frozen=True)
class InputSpec:
    """A model input: name, element type (None if unknown) and dims (None if the rank is unknown)."""

    name: str
    dtype: np.dtype | None
    dims: tuple[Dim, ...] | None

    @classmethod
    def of(cls, value: ir.Value) -> InputSpec:
        dtype = None
        if value.dtype is not None and value.dtype != ir.DataType.STRING:
            dtype = np.dtype(value.dtype.numpy())
        dims = None if value.shape is None else tuple(
            d if isinstance(d, int) else getattr(d, "value", None) for d in value.shape.dims)
        return cls(value.name, dtype, dims)

    def describe(self) -> str:
        """``float32[N,3,8,8]`` style text."""
        dtype = self.dtype.name if self.dtype is not None else "?"
        if self.dims is None:
            return f"{dtype}[...]"
        return f"{dtype}{_show(self.dims)}"


def _show(dims: tuple[Dim, ...]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


@dataclass(frozen=True)
class RunPlan:
    """How one sample becomes model runs.

    Attributes:
        names: Model input name for each array key of the sample.
        add_axis: Keys of arrays that get a leading axis of 1.
        rows: Rows per run when the sample is split along its leading axis, else None.
        runs: Number of runs.
        dims: Sizes of named dimensions in the first run (for memory estimates).
        sliceable: The sample's rows when ``batch_size`` may slice it (named leading
            dimensions, one leading size), else None.
    """

    names: Mapping[str, str]
    add_axis: frozenset[str]
    rows: int | None
    runs: int
    dims: Mapping[str, int]
    sliceable: int | None = None

    def runs_with(self, batch_size: int) -> int:
        """Number of runs under a batch size of ``batch_size`` rows."""
        return -(-self.sliceable // batch_size) if self.sliceable else self.runs


class SampleValidator:
    """Checks samples against a model's inputs and turns them into feeds for onnxruntime."""

    def __init__(self, model: ir.Model, *, batch: BatchPolicy = "auto", batch_size: int | None = None) -> None:
        if batch not in ("auto", "exact"):
            raise DataInputError(f"unknown batch policy '{batch}'", "use 'auto' or 'exact'")
        if batch_size is not None and batch_size < 1:
            raise DataInputError(f"batch_size must be at least 1, got {batch_size}")
        initializers = model.graph.initializers
        self.inputs = [InputSpec.of(v) for v in model.graph.inputs if v.name not in initializers]
        self.batch = batch
        self.batch_size = batch_size

    @property
    def batch_dims(self) -> frozenset[str]:
        """Names of the inputs' named leading dimensions (the ones ``batch_size`` slices)."""
        return frozenset(i.dims[0] for i in self.inputs if i.dims and isinstance(i.dims[0], str))

    def with_batch_size(self, batch_size: int) -> SampleValidator:
        """A copy that runs samples in slices of at most ``batch_size`` rows where it can."""
        if batch_size < 1:
            raise DataInputError(f"batch_size must be at least 1, got {batch_size}")
        other = copy.copy(self)
        other.batch_size = batch_size
        return other

    def _listing(self) -> str:
        return "the model's inputs are: " + ", ".join(f"{i.name} ({i.describe()})" for i in self.inputs)

    def check(self, label: str, specs: Mapping[str, ArraySpec]) -> RunPlan:
        """Validates a sample from its array specs; returns how it will run.

        Raises:
            DataInputError: The first problem found, in one line.
        """
        names = self._names(label, specs)
        by_input = {names[k]: spec for k, spec in specs.items()}
        for spec in self.inputs:
            got = by_input[spec.name]
            if spec.dtype is not None and got.dtype != spec.dtype:
                raise DataInputError(f"{label}: input '{spec.name}' expects {spec.dtype.name}, got {got.dtype.name}",
                                     f"convert it with array.astype(numpy.{spec.dtype.name})")
        add_axis, rows, runs, sliceable = self._batching(specs, names)
        shapes = {}
        for key, got in specs.items():
            shape = ((1,) if key in add_axis else ()) + got.shape
            if rows is not None:
                shape = (min(rows, shape[0]),) + shape[1:]
            shapes[names[key]] = shape
        dims = self._check_shapes(label, shapes)
        return RunPlan(names, frozenset(add_axis), rows, runs, dims, sliceable)

    def feeds(self, sample: Sample) -> Iterator[dict[str, np.ndarray]]:
        """Validates ``sample`` and yields the feeds of its runs."""
        plan = self.check(sample.label, sample.specs())
        arrays = {}
        for key, array in sample.arrays.items():
            array = np.asarray(array)
            arrays[plan.names[key]] = array[np.newaxis] if key in plan.add_axis else array
        if plan.rows is None:
            yield arrays
            return
        total = next(iter(arrays.values())).shape[0]
        for start in range(0, total, plan.rows):
            yield {name: a[start:start + plan.rows] for name, a in arrays.items()}

    def _names(self, label: str, specs: Mapping[str, ArraySpec]) -> dict[str, str]:
        expected = [i.name for i in self.inputs]
        if UNNAMED in specs:
            if len(self.inputs) != 1 or len(specs) != 1:
                raise DataInputError(f"{label}: holds an unnamed array but the model has {len(self.inputs)} inputs",
                                     "save an .npz keyed by input name; " + self._listing())
            return {UNNAMED: expected[0]}
        for key in specs:
            if key not in expected:
                hint = closest(key, expected)
                raise DataInputError(f"{label}: array '{key}' is not a model input",
                                     f"did you mean '{hint}'? {self._listing()}" if hint else self._listing())
        for name in expected:
            if name not in specs:
                raise DataInputError(f"{label}: no array for model input '{name}'", self._listing())
        return {k: k for k in specs}

    def _batching(self, specs: Mapping[str, ArraySpec],
                  names: Mapping[str, str]) -> tuple[set[str], int | None, int, int | None]:
        """Arrays that get a leading axis, rows per run (None: whole), runs, and sliceable rows."""
        if self.batch == "exact":
            return set(), None, 1, None
        by_name = {i.name: i for i in self.inputs}
        add_axis = set()
        for key, got in specs.items():
            dims = by_name[names[key]].dims
            if dims and len(got.shape) == len(dims) - 1 and not (isinstance(dims[0], int) and dims[0] != 1):
                add_axis.add(key)
        leading = {(1,) + s.shape if k in add_axis else s.shape for k, s in specs.items()}
        sizes = {shape[0] for shape in leading if shape}
        if len(sizes) != 1 or any(not shape for shape in leading):
            return add_axis, None, 1, None
        rows = next(iter(sizes))
        statics = {by_name[names[k]].dims[0] for k in specs
                   if by_name[names[k]].dims and isinstance(by_name[names[k]].dims[0], int)}
        if len(statics) == 1:
            d = next(iter(statics))
            if d > 0 and rows > d and rows % d == 0:
                return add_axis, d, rows // d, None
        elif not statics:
            if self.batch_size is not None and rows > self.batch_size:
                return add_axis, self.batch_size, -(-rows // self.batch_size), rows
            return add_axis, None, 1, rows
        return add_axis, None, 1, None

    def _check_shapes(self, label: str, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
        named: dict[str, tuple[int, str]] = {}
        for spec in self.inputs:
            shape = shapes[spec.name]
            if spec.dims is None:
                continue
            if len(shape) != len(spec.dims):
                raise DataInputError(
                    f"{label}: input '{spec.name}' expects rank {len(spec.dims)} {_show(spec.dims)}, "
                    f"got rank {len(shape)} {list(shape)}",
                    "give arrays of the input's rank (batch policy 'auto' adds a missing leading axis of 1)")
            for axis, (want, got) in enumerate(zip(spec.dims, shape)):
                if isinstance(want, int) and want != got:
                    raise DataInputError(
                        f"{label}: input '{spec.name}' expects shape {_show(spec.dims)}, got {list(shape)}",
                        f"dimension {axis} must be {want} (named dimensions may take any size)")
                if isinstance(want, str):
                    seen = named.setdefault(want, (got, spec.name))
                    if seen[0] != got:
                        raise DataInputError(
                            f"{label}: dimension '{want}' is {seen[0]} in input '{seen[1]}' "
                            f"but {got} in input '{spec.name}'",
                            "arrays of one sample must agree on named dimensions")
        return {name: size for name, (size, _) in named.items()}
