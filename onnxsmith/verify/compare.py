"""Comparing output tensors: per-output max absolute/relative error against a tolerance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from onnxsmith.passes.base import Tolerance

__all__ = ["OutputDiff", "compare_outputs"]


@dataclass
class OutputDiff:
    """How one output differs: shapes/dtypes, max errors and whether it is within tolerance.

    ``max_rel`` is the largest ``|actual - expected| / |expected|`` over elements whose expected
    value is not zero (where it is zero, only the absolute error means something).
    """

    name: str
    ok: bool
    max_abs: float
    max_rel: float
    shape_expected: tuple[int, ...]
    shape_actual: tuple[int, ...]
    problem: str = ""

    def describe(self) -> str:
        if self.problem:
            return f"output '{self.name}': {self.problem}"
        return f"output '{self.name}': max abs err {self.max_abs:.3g}, max rel err {self.max_rel:.3g}"

    def to_dict(self) -> dict:
        return asdict(self)


def _kind(value: object) -> str:
    return "a sequence" if isinstance(value, list) else "None" if value is None else "a tensor"


def _compare_sequence(name: str, expected: list | None, actual: list | None, tol: Tolerance) -> OutputDiff:
    """Sequence outputs (lists of tensors) and optional outputs (None when empty)."""
    sizes = tuple(len(v) if isinstance(v, list) else 0 for v in (expected, actual))
    if type(expected) is not type(actual):
        kinds = [_kind(v) for v in (expected, actual)]
        return OutputDiff(name, False, float("inf"), float("inf"), (sizes[0],), (sizes[1],),
                          problem=f"{kinds[1]} instead of {kinds[0]}")
    if expected is None or actual is None:
        return OutputDiff(name, True, 0.0, 0.0, (), ())
    if sizes[0] != sizes[1]:
        return OutputDiff(name, False, float("inf"), float("inf"), (sizes[0],), (sizes[1],),
                          problem=f"sequence of {sizes[1]} instead of {sizes[0]}")
    items = [_compare_one(f"{name}[{i}]", e, a, tol) for i, (e, a) in enumerate(zip(expected, actual))]
    bad = [d for d in items if not d.ok]
    return OutputDiff(name, not bad, max((d.max_abs for d in items), default=0.0),
                      max((d.max_rel for d in items), default=0.0), (sizes[0],), (sizes[1],),
                      problem=bad[0].describe() if bad else "")


def _compare_one(name: str, expected: np.ndarray, actual: np.ndarray, tol: Tolerance) -> OutputDiff:
    if isinstance(expected, list) or isinstance(actual, list) or expected is None or actual is None:
        return _compare_sequence(name, expected, actual, tol)
    expected, actual = np.asarray(expected), np.asarray(actual)
    shapes = (tuple(expected.shape), tuple(actual.shape))
    if expected.shape != actual.shape:
        return OutputDiff(name, False, float("inf"), float("inf"), *shapes,
                          problem=f"shape {shapes[1]} instead of {shapes[0]}")
    if expected.dtype != actual.dtype:
        return OutputDiff(name, False, float("inf"), float("inf"), *shapes,
                          problem=f"dtype {actual.dtype} instead of {expected.dtype}")
    if expected.dtype == object or expected.dtype.kind in "USb":
        same = bool(np.array_equal(expected, actual))
        return OutputDiff(name, same, 0.0 if same else float("inf"), 0.0 if same else float("inf"), *shapes,
                          problem="" if same else "values differ")
    e = expected.astype(np.float64)
    a = actual.astype(np.float64)
    if e.size == 0:
        return OutputDiff(name, True, 0.0, 0.0, *shapes)
    nan_e, nan_a = np.isnan(e), np.isnan(a)
    if not np.array_equal(nan_e, nan_a):
        return OutputDiff(name, False, float("inf"), float("inf"), *shapes, problem="NaN positions differ")
    finite = ~nan_e
    inf_mismatch = np.any((np.isinf(e) | np.isinf(a)) & finite & (e != a))
    both = finite & ~np.isinf(e) & ~np.isinf(a)
    diff = np.abs(e[both] - a[both])
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = np.abs(e[both])
    rel = diff[scale > 0] / scale[scale > 0]
    max_rel = float(rel.max()) if rel.size else 0.0
    within = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(e[both]))) and not inf_mismatch
    return OutputDiff(name, within, max_abs if not inf_mismatch else float("inf"), max_rel, *shapes,
                      problem="" if not inf_mismatch else "infinities differ")


def compare_outputs(expected: Sequence[np.ndarray], actual: Sequence[np.ndarray], names: Sequence[str],
                    tol: Tolerance) -> list[OutputDiff]:
    """One OutputDiff per output, in order."""
    if len(expected) != len(actual):
        return [OutputDiff("<outputs>", False, float("inf"), float("inf"), (len(expected),), (len(actual),),
                           problem=f"{len(actual)} outputs instead of {len(expected)}")]
    return [_compare_one(n, e, a, tol) for n, e, a in zip(names, expected, actual)]
