"""One value's calibration range as plain data, and its validation when read from JSON.

A record's ``min``/``max`` are finite numbers, or lists of them (one per channel) together with
the channel ``axis``; ``min <= max`` everywhere. Everything else is optional, so a hand-written
``{"min": -1, "max": 1}`` is a valid record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxsmith.calibration.identity import ValueIdentity
from onnxsmith.errors import DataInputError

__all__ = ["REMEDY", "Observed", "RangeRecord", "kind"]

Bound = float | list[float]

#: Remedy for a malformed ranges file.
REMEDY = "fix the file or calibrate again"
_FIELDS = ("min", "max", "axis", "calibrator", "num_samples", "identity", "observed")


@dataclass
class Observed:
    """Statistics of what was seen: finite extremes (None when nothing finite was seen), element
    count, and non-finite elements skipped."""

    min: float | None
    max: float | None
    count: int
    nonfinite: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max, "count": self.count, "nonfinite": self.nonfinite}


@dataclass
class RangeRecord:
    """The range of one value.

    Attributes:
        min: Lower end, or one per channel.
        max: Upper end, or one per channel.
        axis: Channel axis for per-channel ends, else None.
        calibrator: What produced it (``minmax``, ``percentile(99.99)``, ``manual``...).
        num_samples: Rows of calibration data it rests on.
        identity: The value's identity when calibrated (None for hand-written records).
        observed: What was seen, if recorded.
    """

    min: Bound
    max: Bound
    axis: int | None = None
    calibrator: str = "manual"
    num_samples: int = 0
    identity: ValueIdentity | None = None
    observed: Observed | None = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(min, max)`` as float64 arrays (0-d per tensor, 1-d per channel)."""
        return np.asarray(self.min, np.float64), np.asarray(self.max, np.float64)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"min": _plain(self.min), "max": _plain(self.max)}
        if self.axis is not None:
            out["axis"] = self.axis
        out["calibrator"] = self.calibrator
        out["num_samples"] = self.num_samples
        if self.identity is not None:
            out["identity"] = self.identity.to_dict()
        if self.observed is not None:
            out["observed"] = self.observed.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "record") -> RangeRecord:
        """Builds a record from parsed JSON.

        Raises:
            DataInputError: Naming the first problem, prefixed by ``where``.
        """
        if not isinstance(data, dict):
            raise DataInputError(f"{where}: expected an object with 'min' and 'max', got {kind(data)}", REMEDY)
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise DataInputError(f"{where}: unknown field '{unknown[0]}'", f"fields are: {', '.join(_FIELDS)}")
        for key in ("min", "max"):
            if key not in data:
                raise DataInputError(f"{where}: missing '{key}'", REMEDY)
        low, high = _bound(data["min"], f"{where}.min"), _bound(data["max"], f"{where}.max")
        axis = data.get("axis")
        if axis is not None and not _is_int(axis):
            raise DataInputError(f"{where}.axis: expected an integer, got {kind(axis)}", REMEDY)
        if isinstance(low, list) or isinstance(high, list):
            if axis is None:
                raise DataInputError(f"{where}: per-channel min/max lists need an 'axis'", REMEDY)
            if not (isinstance(low, list) and isinstance(high, list)) or len(low) != len(high):
                raise DataInputError(f"{where}: per-channel min and max must be lists of the same length", REMEDY)
        elif axis is not None:
            raise DataInputError(f"{where}: 'axis' is set but min and max are single numbers",
                                 "give one number per channel, or remove 'axis'")
        if np.any(np.asarray(low) > np.asarray(high)):
            raise DataInputError(f"{where}: min is greater than max", REMEDY)
        calibrator = data.get("calibrator", "manual")
        if not isinstance(calibrator, str):
            raise DataInputError(f"{where}.calibrator: expected a string, got {kind(calibrator)}", REMEDY)
        num_samples = data.get("num_samples", 0)
        if not _is_int(num_samples) or num_samples < 0:
            raise DataInputError(f"{where}.num_samples: expected a non-negative integer, got {kind(num_samples)}",
                                 REMEDY)
        return cls(low, high, axis, calibrator, num_samples, _identity(data.get("identity"), f"{where}.identity"),
                   _observed(data.get("observed"), f"{where}.observed"))


def _plain(bound: Any) -> Bound:
    """A bound as JSON-ready floats (numpy scalars and arrays included)."""
    array = np.asarray(bound, np.float64)
    return array.tolist() if array.ndim else float(array)


def kind(value: Any) -> str:
    """How a JSON value reads in an error message."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string '{value[:40]}'"
    if value is None:
        return "null"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bound(value: Any, where: str) -> Bound:
    if _is_number(value):
        return float(value)
    if isinstance(value, list) and value and all(_is_number(v) for v in value):
        return [float(v) for v in value]
    raise DataInputError(f"{where}: expected a finite number or a non-empty list of them, got {kind(value)}", REMEDY)


def _identity(data: Any, where: str) -> ValueIdentity | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("cone"), str) or not _is_int(data.get("output", 0)):
        raise DataInputError(f"{where}: expected {{\"op\", \"output\", \"node\", \"cone\"}} with a string cone",
                             "remove 'identity' to match the record by name only")
    op, node = data.get("op"), data.get("node")
    if not (op is None or isinstance(op, str)) or not (node is None or isinstance(node, str)):
        raise DataInputError(f"{where}: 'op' and 'node' must be strings or null", REMEDY)
    return ValueIdentity(op, data.get("output", 0), node, data["cone"])


def _observed(data: Any, where: str) -> Observed | None:
    if data is None:
        return None
    if (not isinstance(data, dict) or not all(data.get(k) is None or _is_number(data[k]) for k in ("min", "max"))
            or not _is_int(data.get("count")) or not _is_int(data.get("nonfinite", 0))):
        raise DataInputError(f"{where}: expected {{\"min\", \"max\", \"count\", \"nonfinite\"}} with numbers",
                             "remove 'observed'; it is informative only")
    low, high = data.get("min"), data.get("max")
    return Observed(None if low is None else float(low), None if high is None else float(high),
                    data["count"], data.get("nonfinite", 0))
