"""Calibration ranges as plain data: ``Ranges``, ``ranges.json`` and matching records to a model.

A :class:`Ranges` maps value names to :class:`~onnxsmith.calibration.records.RangeRecord` s
(``min``/``max``, per tensor or per channel, with where they came from) and keeps the
calibration settings that produced them.

``ranges.json`` (schema version 1) is meant to be read and edited by people: one record per line::

    {
      "format": "onnxsmith.ranges",
      "version": 1,
      "calibration": {"method": "entropy", "symmetric": false, ...},
      "values": {
        "conv1_out": {"min": 0.0, "max": 6.1, "calibrator": "entropy", "num_samples": 64, "identity": {...}},
        "logits": {"min": -8, "max": 8}
      }
    }

Only ``min`` and ``max`` are required in a record (a hand-written record has no identity and is
matched by name). Loading validates everything and names the first problem with its place in
the file. :meth:`Ranges.resolve` maps records to the values of a (possibly renamed or cleaned-up)
model and reports the ones that no longer match.

Passes exchange ranges through the pass context: :meth:`Ranges.store` puts them under
``ctx.data["calibration-ranges"]`` and marks the ``"calibration-ranges"`` property;
:meth:`Ranges.from_context` reads them back or explains how to get them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxsmith.calibration.identity import ValueIdentity, value_identities
from onnxsmith.calibration.records import REMEDY, RangeRecord, kind
from onnxsmith.errors import DataInputError, OnnxsmithError, OutputError

__all__ = ["CONTEXT_KEY", "FORMAT", "VERSION", "Ranges", "Resolution"]

FORMAT = "onnxsmith.ranges"
VERSION = 1
#: Key in ``PassContext.data`` and name of the property that says ranges are present.
CONTEXT_KEY = "calibration-ranges"


@dataclass
class Resolution:
    """How the records of a :class:`Ranges` map onto a model's current values.

    Attributes:
        records: Matched records by *current* value name.
        exact: Current names matched by name and structure.
        renamed: Record name -> current name, matched by structure under a new name.
        by_name: Current names matched by name only: the record has no identity (hand-written),
            or the computation upstream changed (the range may be stale).
        merged: Record name -> current name, for records of values that now are one value with
            another record's (common-subexpression elimination, a removed Identity): the same
            computation, already covered.
        unmatched: Record name -> why it matches no current value.
    """

    records: dict[str, RangeRecord] = field(default_factory=dict)
    exact: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    by_name: list[str] = field(default_factory=list)
    merged: dict[str, str] = field(default_factory=dict)
    unmatched: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every record found its value."""
        return not self.unmatched

    def describe(self) -> str:
        """A short report: counts, then each record that did not match exactly."""
        lines = [f"{len(self.records)} ranges matched ({len(self.exact)} exact, {len(self.renamed)} renamed, "
                 f"{len(self.by_name)} by name only), {len(self.merged)} merged, {len(self.unmatched)} unmatched"]
        lines += [f"  renamed: {old} -> {new}" for old, new in self.renamed.items()]
        lines += [f"  by name only: {name}" for name in self.by_name]
        lines += [f"  merged: {old} -> {new}" for old, new in self.merged.items()]
        lines += [f"  unmatched: {name}: {why}" for name, why in self.unmatched.items()]
        return "\n".join(lines)


class Ranges(MutableMapping[str, RangeRecord]):
    """Calibration ranges by value name, plus the calibration settings that produced them."""

    def __init__(self, records: Mapping[str, RangeRecord] | None = None,
                 calibration: Mapping[str, Any] | None = None) -> None:
        self.records: dict[str, RangeRecord] = dict(records or {})
        self.calibration: dict[str, Any] = dict(calibration or {})

    def __getitem__(self, name: str) -> RangeRecord:
        return self.records[name]

    def __setitem__(self, name: str, record: RangeRecord) -> None:
        self.records[name] = record

    def __delitem__(self, name: str) -> None:
        del self.records[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"<Ranges: {len(self)} values, {self.calibration.get('method', 'manual')}>"

    # -- plain data ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "calibration": dict(self.calibration),
                "values": {name: record.to_dict() for name, record in self.records.items()}}

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "ranges") -> Ranges:
        """Builds ranges from parsed JSON, validating the schema.

        Raises:
            DataInputError: Naming the first problem and where it is.
        """
        if not isinstance(data, dict):
            raise DataInputError(f"{source}: expected a JSON object, got {kind(data)}", REMEDY)
        if data.get("format") != FORMAT:
            raise DataInputError(f"{source}: 'format' must be \"{FORMAT}\", got {json.dumps(data.get('format'))}",
                                 "is this an onnxsmith ranges.json?")
        version = data.get("version")
        if version != VERSION:
            raise DataInputError(f"{source}: unsupported version {json.dumps(version)}",
                                 f"this onnxsmith reads version {VERSION}; calibrate again")
        unknown = sorted(set(data) - {"format", "version", "calibration", "values"})
        if unknown:
            raise DataInputError(f"{source}: unknown top-level key '{unknown[0]}'",
                                 "allowed: format, version, calibration, values")
        calibration = data.get("calibration", {})
        if not isinstance(calibration, dict):
            raise DataInputError(f"{source}: 'calibration' must be an object, got {kind(calibration)}", REMEDY)
        values = data.get("values")
        if not isinstance(values, dict):
            raise DataInputError(f"{source}: 'values' must be an object of records, got {kind(values)}", REMEDY)
        records = {name: RangeRecord.from_dict(record, where=f"{source}: values[{json.dumps(name)}]")
                   for name, record in values.items()}
        return cls(records, calibration)

    def to_json(self) -> str:
        """The ``ranges.json`` text: one record per line."""
        data = self.to_dict()
        lines = ["{", f'  "format": {json.dumps(FORMAT)},', f'  "version": {VERSION},',
                 f'  "calibration": {json.dumps(data["calibration"])},', '  "values": {']
        items = list(data["values"].items())
        for i, (name, record) in enumerate(items):
            comma = "," if i < len(items) - 1 else ""
            lines.append(f"    {json.dumps(name)}: {json.dumps(record)}{comma}")
        lines += ["  }", "}", ""]
        return "\n".join(lines)

    def save_json(self, path: str | os.PathLike) -> None:
        """Writes ``ranges.json`` atomically (temporary file, then rename).

        Raises:
            OutputError: The file cannot be written.
        """
        path = Path(path)
        text = self.to_json()
        temporary: str | None = None
        try:
            with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                             delete=False, encoding="utf-8") as stream:
                temporary = stream.name
                stream.write(text)
            os.replace(temporary, path)
        except BaseException as e:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
            if isinstance(e, OSError):
                raise OutputError(f"cannot write ranges to {path}: {e.strerror or e}",
                                  "check that the folder exists and is writable") from e
            raise

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> Ranges:
        """Reads and validates a ``ranges.json``.

        Raises:
            DataInputError: Missing file, invalid JSON, or a schema problem (named).
        """
        path = Path(path)
        if not path.is_file():
            raise DataInputError(f"ranges file not found: {path}", "check the --ranges path")
        try:
            data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
            raise DataInputError(f"{path} is not valid JSON: {e}", "fix the file or calibrate again") from e
        return cls.from_dict(data, source=str(path))

    # -- models and passes --------------------------------------------------------------------

    def resolve(self, model: ir.Model) -> Resolution:
        """Maps each record to a current value of ``model`` (see :class:`Resolution`).

        A record matches, in this order: the value of its name when the structure agrees (or
        the record has no identity); else the one value with its structure under a new name
        (among several, e.g. a value and its Identity copies, the one from the same op); else
        the value of its name if it has the same producer op (structure changed upstream).
        """
        current = value_identities(model)
        by_cone: dict[str, list[str]] = {}
        for name, identity in current.items():
            by_cone.setdefault(identity.cone, []).append(name)
        result = Resolution()
        for name, record in self.records.items():
            target, kind, why = _match(name, record, current, by_cone)
            if target is not None and target in result.records:
                if record.identity is not None and record.identity.cone == current[target].cone:
                    result.merged[name] = target
                    continue
                target, kind, why = None, "", f"its value '{target}' is already matched by another record"
            if target is None:
                result.unmatched[name] = why
                continue
            result.records[target] = record
            if kind == "exact":
                result.exact.append(target)
            elif kind == "renamed":
                result.renamed[name] = target
            else:
                result.by_name.append(target)
        return result

    def store(self, ctx: Any) -> None:
        """Puts the ranges into a ``PassContext`` for later passes."""
        ctx.data[CONTEXT_KEY] = self
        ctx.properties.add(CONTEXT_KEY)

    @staticmethod
    def from_context(ctx: Any) -> Ranges:
        """The ranges stored in a ``PassContext``.

        Raises:
            OnnxsmithError: None are there.
        """
        ranges = ctx.data.get(CONTEXT_KEY)
        if not isinstance(ranges, Ranges):
            raise OnnxsmithError("no calibration ranges in the pass context",
                                 "run calibration first (--calib-data DIR) or pass --ranges ranges.json")
        return ranges


def _match(name: str, record: RangeRecord, current: Mapping[str, ValueIdentity],
           by_cone: Mapping[str, list[str]]) -> tuple[str | None, str, str]:
    identity = record.identity
    here = current.get(name)
    if identity is None:
        if here is None:
            return None, "", "no value of that name (and the record has no identity to match by structure)"
        return name, "by_name", ""
    if here is not None and here.cone == identity.cone:
        return name, "exact", ""
    same = by_cone.get(identity.cone, [])
    if len(same) > 1:  # e.g. a value and its Identity copies: prefer the one from the same op
        same = [n for n in same if current[n].op == identity.op] or same
    if len(same) == 1:
        return same[0], "renamed", ""
    if here is not None and here.op == identity.op:
        return name, "by_name", ""
    if len(same) > 1:
        return None, "", f"{len(same)} values have its structure ({', '.join(sorted(same)[:3])}) and none its name"
    return None, "", "no value of that name or structure"


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not allowed (ranges must be finite numbers)")
