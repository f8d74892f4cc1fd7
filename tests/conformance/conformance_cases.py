"""The onnx package's backend test cases, as (model, input samples, expected outputs).

Two sources, read the way ``onnx.backend.test.runner`` reads them:

- ``node``: the ~1,900 per-operator cases, built in memory by
  ``onnx.backend.test.case.node.collect_testcases()`` (the wheel does not ship their files);
  inputs and expected outputs are arrays, TensorProtos, lists (sequences) or None (optionals);
- ``simple``, ``pytorch-converted``, ``pytorch-operator``: folders under
  ``onnx/backend/test/data`` holding ``model.onnx`` and ``test_data_set_*/{input,output}_<i>.pb``,
  where file ``i`` belongs to the model's ``i``-th graph input or output.

Every case runs by default (about half a minute on two cores). ``ONNXSMITH_CONFORMANCE_LIMIT=K``
runs a deterministic sample of ``K`` cases instead (by hash of the case id), for quick local runs.
"""

from __future__ import annotations

import glob
import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["BackendCase", "conformance_limit", "load_cases", "selected_cases"]

DISK_KINDS = ("simple", "pytorch-converted", "pytorch-operator")
DATA_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
Sample = tuple[dict[str, Any], list[Any]]


@dataclass(frozen=True)
class BackendCase:
    """One backend test case; disk cases read their files on first use."""

    kind: str
    name: str
    rtol: float
    atol: float
    _load: Callable[[], tuple[onnx.ModelProto, list[Sample]]]

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"

    def load(self) -> tuple[onnx.ModelProto, list[Sample]]:
        """The model and its samples (input feeds by name, expected outputs in order)."""
        return self._load()


def _value(item: Any) -> Any:
    if isinstance(item, onnx.TensorProto):
        return numpy_helper.to_array(item)
    if isinstance(item, np.generic):
        return np.asarray(item)
    if isinstance(item, list):
        return [_value(v) for v in item]
    return item


def _node_cases() -> Iterator[BackendCase]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators compute some inf/nan on purpose
        cases = collect_testcases()
    for case in cases:
        def load(case=case) -> tuple[onnx.ModelProto, list[Sample]]:
            initializers = {t.name for t in case.model.graph.initializer}
            names = [i.name for i in case.model.graph.input if i.name not in initializers]
            samples = [({n: _value(v) for n, v in zip(names, inputs)}, [_value(v) for v in outputs])
                       for inputs, outputs in case.data_sets]
            return case.model, samples

        yield BackendCase("node", case.name, case.rtol, case.atol, load)


def _read_value(path: str, type_proto: onnx.TypeProto) -> Any:
    with open(path, "rb") as f:
        data = f.read()
    if type_proto.HasField("sequence_type"):
        sequence = onnx.SequenceProto()
        sequence.ParseFromString(data)
        return numpy_helper.to_list(sequence)
    if type_proto.HasField("optional_type"):
        optional = onnx.OptionalProto()
        optional.ParseFromString(data)
        return numpy_helper.to_optional(optional)
    tensor = onnx.TensorProto()
    tensor.ParseFromString(data)
    return numpy_helper.to_array(tensor)


def _disk_case(kind: str, folder: str) -> BackendCase:
    def load() -> tuple[onnx.ModelProto, list[Sample]]:
        model = onnx.load(os.path.join(folder, "model.onnx"))
        samples = []
        for data_set in sorted(glob.glob(os.path.join(folder, "test_data_set_*"))):
            count_in = len(glob.glob(os.path.join(data_set, "input_*.pb")))
            count_out = len(glob.glob(os.path.join(data_set, "output_*.pb")))
            inputs = {model.graph.input[i].name: _read_value(os.path.join(data_set, f"input_{i}.pb"),
                                                              model.graph.input[i].type) for i in range(count_in)}
            outputs = [_read_value(os.path.join(data_set, f"output_{i}.pb"), model.graph.output[i].type)
                       for i in range(count_out)]
            samples.append((inputs, outputs))
        return model, samples

    return BackendCase(kind, os.path.basename(folder), 1e-3, 1e-7, load)


def load_cases() -> list[BackendCase]:
    """Every backend case, node cases first, each group sorted by name."""
    cases = sorted(_node_cases(), key=lambda c: c.name)
    for kind in DISK_KINDS:
        folders = sorted(p for p in glob.glob(os.path.join(DATA_DIR, kind, "*")) if os.path.isdir(p))
        cases.extend(_disk_case(kind, p) for p in folders)
    return cases


def conformance_limit() -> int | None:
    """The case limit from ONNXSMITH_CONFORMANCE_LIMIT (None: run all)."""
    raw = os.environ.get("ONNXSMITH_CONFORMANCE_LIMIT", "all").strip().lower()
    if raw in ("0", "all", ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"ONNXSMITH_CONFORMANCE_LIMIT must be a number or 'all', got '{raw}'") from None


def selected_cases() -> list[BackendCase]:
    """The cases to run: all, or a deterministic sample of ONNXSMITH_CONFORMANCE_LIMIT of them."""
    cases = load_cases()
    limit = conformance_limit()
    if limit is None or limit >= len(cases):
        return cases
    chosen = {c.id for c in sorted(cases, key=lambda c: hashlib.sha256(c.id.encode()).hexdigest())[:limit]}
    return [c for c in cases if c.id in chosen]
