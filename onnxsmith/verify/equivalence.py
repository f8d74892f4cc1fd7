"""Numeric equivalence of two models, checked with onnxruntime.

Two models are equivalent on a set of input samples when, for every sample, their outputs
(matched by position: a rewrite may rename them) have the same shapes and element types and
``|b - a| <= atol + rtol * |a|`` elementwise, with NaNs and infinities in the same places.
Inputs are matched by name; every input of ``b`` must be an input of ``a`` with the same element
type. Samples are the given inputs (a dict of arrays or an ``.npz`` file, checked against ``a``'s
inputs) or ``num_samples`` random samples from :func:`generate_inputs` (symbolic dimensions get
the sizes in ``dims``, 2 by default).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import DataInputError, UnsupportedError, VerificationError, first_line
from onnxsmith.passes.base import Tolerance
from onnxsmith.verify._session import make_session, run_model, session_from_file
from onnxsmith.verify.compare import OutputDiff, compare_outputs
from onnxsmith.verify.inputs import generate_inputs, model_inputs

__all__ = ["EquivalenceReport", "NotEquivalentError", "assert_equivalent", "check_equivalent"]

ModelLike = ir.Model | str | os.PathLike
InputsLike = Mapping[str, np.ndarray] | str | os.PathLike


@dataclass(frozen=True)
class EquivalenceReport:
    """Per-output comparison of two models over all samples.

    Attributes:
        outputs: One entry per output of ``a`` (max errors over all samples; the first problem).
        names_b: The matching output names of ``b`` (same order).
        rtol: Relative tolerance used.
        atol: Absolute tolerance used.
        samples: Number of input samples compared.
        source: Where the samples came from (generated, given, or the .npz file's name).
    """

    outputs: tuple[OutputDiff, ...]
    names_b: tuple[str, ...]
    rtol: float
    atol: float
    samples: int
    source: str = "generated inputs"

    @property
    def ok(self) -> bool:
        """True when every output is within tolerance on every sample."""
        return all(d.ok for d in self.outputs)

    @property
    def worst(self) -> OutputDiff | None:
        """The failing output furthest outside tolerance (structural problems first); None if ok."""
        bad = [d for d in self.outputs if not d.ok]
        return max(bad, key=lambda d: (bool(d.problem), d.max_abs), default=None)

    def summary(self) -> str:
        """One line: equivalent or not, with the worst output."""
        tol = f"rtol={self.rtol:g}, atol={self.atol:g}, {self.samples} sample(s) of {self.source}"
        worst = self.worst
        if worst is None:
            top = max((d.max_abs for d in self.outputs), default=0.0)
            return f"equivalent: {len(self.outputs)} output(s), max abs err {top:.3g} ({tol})"
        return f"not equivalent: {worst.describe()} ({tol})"

    def format(self) -> str:
        """A table with one row per output, then the summary line."""
        rows = [("output", "shape", "max abs err", "max rel err", "status")]
        for diff, other in zip(self.outputs, self.names_b):
            name = diff.name if other == diff.name else f"{diff.name} -> {other}"
            status = "ok" if diff.ok else f"FAIL: {diff.problem or 'outside tolerance'}"
            rows.append((name, _shape_text(diff.shape_expected), f"{diff.max_abs:.3g}", f"{diff.max_rel:.3g}", status))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
        return "\n".join([*lines, self.summary()])

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "rtol": self.rtol,
            "atol": self.atol,
            "samples": self.samples,
            "source": self.source,
            "outputs": [{**d.to_dict(), "name_b": n} for d, n in zip(self.outputs, self.names_b)],
        }


class NotEquivalentError(VerificationError):
    """Two models differ beyond tolerance; ``report`` holds the per-output comparison."""

    def __init__(self, report: EquivalenceReport) -> None:
        worst = report.worst
        assert worst is not None
        super().__init__(f"models are not equivalent: {worst.describe()} "
                         f"(rtol={report.rtol:g}, atol={report.atol:g})",
                         "print the report's format() for every output")
        self.report = report


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def assert_equivalent(a: ModelLike, b: ModelLike, inputs: InputsLike | None = None, rtol: float = 1e-5,
                      atol: float = 1e-6, *, seed: int = 0, num_samples: int = 1,
                      dims: Mapping[str, int] | None = None) -> EquivalenceReport:
    """Checks that ``b`` computes what ``a`` computes; returns the report.

    Args:
        a: The reference model (``onnx_ir.Model`` or path).
        b: The model to check (``onnx_ir.Model`` or path).
        inputs: Input arrays by name, or a path to an ``.npz`` file; generated when None.
        rtol: Relative tolerance.
        atol: Absolute tolerance.
        seed: Seed of the first generated sample.
        num_samples: How many samples to generate (ignored when ``inputs`` are given).
        dims: Sizes for symbolic dimensions of generated inputs.

    Raises:
        NotEquivalentError: (a VerificationError) naming the worst output.
        DataInputError: ``inputs`` do not fit model ``a``.
        UnsupportedError: onnxruntime cannot load or run one of the models.
        ModelInputError: A model path is missing or not a valid model.
    """
    report = check_equivalent(a, b, inputs, rtol, atol, seed=seed, num_samples=num_samples, dims=dims)
    if not report.ok:
        raise NotEquivalentError(report)
    return report


def check_equivalent(a: ModelLike, b: ModelLike, inputs: InputsLike | None = None, rtol: float = 1e-5,
                     atol: float = 1e-6, *, seed: int = 0, num_samples: int = 1,
                     dims: Mapping[str, int] | None = None) -> EquivalenceReport:
    """Like :func:`assert_equivalent`, but returns the report instead of raising when models differ."""
    model_a, session_a = _open(a, "A")
    model_b, session_b = _open(b, "B")
    _check_interfaces(model_a, model_b)
    samples, source = _samples(model_a, inputs, seed=seed, num_samples=num_samples, dims=dims)
    names_a = [v.name for v in model_a.graph.outputs]
    names_b = [v.name for v in model_b.graph.outputs]
    if len(names_a) != len(names_b):
        counts = (len(names_a),), (len(names_b),)
        mismatch = OutputDiff("<outputs>", False, float("inf"), float("inf"), *counts,
                              problem=f"model B has {len(names_b)} outputs, model A has {len(names_a)}")
        return EquivalenceReport((mismatch,), ("<outputs>",), rtol, atol, 0, source)
    tolerance = Tolerance(rtol, atol)
    merged: list[OutputDiff] | None = None
    for index, feed in enumerate(samples):
        expected = _run(model_a, session_a, feed, "A", index)
        actual = _run(model_b, session_b, feed, "B", index)
        diffs = compare_outputs(expected, actual, names_a, tolerance)
        merged = diffs if merged is None else [_merge(m, d) for m, d in zip(merged, diffs)]
    return EquivalenceReport(tuple(merged or ()), tuple(names_b), rtol, atol, len(samples), source)


def _open(model: ModelLike, label: str) -> tuple[ir.Model, object]:
    """The model (loaded if given as a path) and an onnxruntime session for it."""
    try:
        if isinstance(model, ir.Model):
            return model, make_session(model)
        from onnxsmith.ir import load

        loaded = load(model)
        return loaded, session_from_file(model)
    except UnsupportedError as e:
        detail = first_line(e.__cause__) if e.__cause__ else e.message
        raise UnsupportedError(f"onnxruntime cannot load model {label}: {detail}",
                               "check that the model uses operators and types onnxruntime supports") from e


def _check_interfaces(a: ir.Model, b: ir.Model) -> None:
    inputs_a = {v.name: v for v in model_inputs(a)}
    for value in model_inputs(b):
        other = inputs_a.get(value.name)
        if other is None:
            raise VerificationError(
                f"model B has input '{value.name}', which model A does not have",
                f"inputs are matched by name; model A's inputs are: {', '.join(inputs_a) or 'none'}")
        if other.dtype != value.dtype:
            raise VerificationError(
                f"input '{value.name}' is {_dtype(other)} in model A but {_dtype(value)} in model B",
                "compare models with the same input types")


def _dtype(value: ir.Value) -> str:
    return value.dtype.name.lower() if value.dtype is not None else "untyped"


def _samples(model: ir.Model, inputs: InputsLike | None, *, seed: int, num_samples: int,
             dims: Mapping[str, int] | None) -> tuple[list[dict[str, np.ndarray]], str]:
    from onnxsmith.input_data import check_inputs, load_input_data  # imports this package: keep it lazy

    if inputs is None:
        if num_samples < 1:
            raise ValueError("num_samples must be at least 1")
        return [generate_inputs(model, seed=seed + i, dims=dims) for i in range(num_samples)], "generated inputs"
    if isinstance(inputs, (str, os.PathLike)):
        return [load_input_data(inputs, model)], f"inputs from {Path(inputs).name}"
    if not isinstance(inputs, Mapping):
        raise DataInputError(f"inputs must be a dict of arrays or an .npz path, not {type(inputs).__name__}")
    arrays = {name: np.asarray(array) for name, array in inputs.items()}
    check_inputs(arrays, model, source="inputs")
    return [arrays], "given inputs"


def _run(model: ir.Model, session: object, feed: Mapping[str, np.ndarray], label: str,
         index: int) -> list[np.ndarray]:
    try:
        return run_model(model, feed, session=session)
    except UnsupportedError as e:
        detail = first_line(e.__cause__) if e.__cause__ else e.message
        raise UnsupportedError(f"onnxruntime failed to run model {label} on sample {index}: {detail}",
                               "check the inputs, or report the model") from e


def _merge(total: OutputDiff, new: OutputDiff) -> OutputDiff:
    """Worst-case combination of one output's comparisons on two samples (the first problem wins)."""
    first = new if new.problem and not total.problem else total
    return replace(first, ok=total.ok and new.ok, max_abs=max(total.max_abs, new.max_abs),
                   max_rel=max(total.max_rel, new.max_rel))
