"""Helpers for golden tests of the cleanup passes.

``golden(spec, before, after)`` parses ``before`` (ONNX text), runs the pass or pipeline ``spec``
through the PassManager with numeric verification (the result must match onnxruntime on the
original), checks the result against ``after`` structurally, then runs ``spec`` again and checks
that nothing changes (idempotence). Structural comparison looks at what a model computes: graph
inputs and outputs, nodes in order with their inputs, outputs and attributes (subgraphs
recursively), and initializers by name with their exact values; value annotations are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassManager, PipelineReport


def _attr(attr: ir.Attr) -> Any:
    if attr.type == ir.AttributeType.GRAPH:
        return describe_graph(attr.as_graph())
    if attr.type == ir.AttributeType.GRAPHS:
        return [describe_graph(g) for g in attr.as_graphs()]
    if attr.type == ir.AttributeType.TENSOR:
        tensor = attr.as_tensor()
        return (tensor.dtype, tuple(tensor.shape.dims), tensor.numpy().tolist())
    value = attr.value
    return list(value) if isinstance(value, (list, tuple)) else value


def describe_graph(graph: ir.Graph) -> dict:
    """A comparable description of what a graph computes."""
    return {
        "inputs": [(v.name, v.dtype) for v in graph.inputs],
        "outputs": [(v.name, v.dtype) for v in graph.outputs],
        "initializers": sorted(
            (name, v.const_value.dtype, tuple(v.const_value.shape.dims), v.const_value.numpy().tolist())
            for name, v in graph.initializers.items()
        ),
        "nodes": [
            (n.domain, n.op_type, [v.name if v is not None else "" for v in n.inputs], [v.name for v in n.outputs],
             {k: _attr(a) for k, a in sorted(n.attributes.items())})
            for n in graph
        ],
    }


def describe(model: ir.Model) -> dict:
    """A comparable description of a model: main graph, functions and opset imports."""
    return {
        "graph": describe_graph(model.graph),
        "opsets": dict(sorted(model.opset_imports.items())),
        "functions": sorted(f"{d}::{n}" for d, n, _ in model.functions),
    }


def op_types(model: ir.Model) -> list[str]:
    return [n.op_type for n in model.graph]


def run(spec: str, model: ir.Model, *, verify: str = "numeric", inputs: dict[str, np.ndarray] | None = None
        ) -> PipelineReport:
    """Runs a pass or pipeline string on ``model`` in place."""
    return PassManager(spec, verify=verify, inputs=inputs).run(model)


def assert_idempotent(spec: str, model: ir.Model) -> None:
    before = describe(model)
    report = run(spec, model, verify="structural")
    assert not report.modified, f"second run of {spec} changed the model: {report.records}"
    assert describe(model) == before


def golden_check(spec: str, before: str, after: str, *, verify: str = "numeric") -> PipelineReport:
    model = parse_text(before)
    report = run(spec, model, verify=verify)
    expected = parse_text(after)
    assert describe(model) == describe(expected)
    assert_idempotent(spec, model)
    return report


@pytest.fixture
def golden() -> Callable[..., PipelineReport]:
    """``golden(spec, before_text, after_text, verify="numeric")`` (see the module docstring)."""
    return golden_check


@pytest.fixture
def helpers() -> SimpleNamespace:
    """``run``, ``describe``, ``op_types`` and ``assert_idempotent`` for tests that build models in code."""
    return SimpleNamespace(run=run, describe=describe, op_types=op_types, assert_idempotent=assert_idempotent)
