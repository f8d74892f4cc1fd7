"""Ranking quantized tensors by their effect on the model output, for automatic exclusion.

Two measures, cheap to dear:

* **proxy**: the tensor's effective SQNR quantized alone (from the report: one side-by-side pass
  over the samples for all tensors together). Low means the tensor loses much of its signal; it
  says nothing about how much the output cares.
* **isolated output SQNR** (``top_k`` tensors with the lowest proxy): the fp32 model with only
  this tensor quantized, its lowest output SQNR against the fp32 outputs on the same samples. An
  activation gets a fake quantizer in float ops, ``((Clip(Round(x / s) + zp, qmin, qmax) - zp) *
  s)`` (ONNX ``Round`` rounds half to even, as QuantizeLinear does; opset 11 or later), a weight
  its dequantized value; each costs one session and one pass. The fp32 outputs of the samples are
  kept for the comparison (O(samples x outputs)). A graph output quantized alone changes only
  itself, so its isolated output SQNR is its own SQNR.

:func:`rank_sensitivity` returns every tensor, most sensitive first: the isolated ones by output
SQNR, then the rest by proxy. A quantizer can exclude from the top until its budget is met::

    ranking = rank_sensitivity(fp32, quantized, data, top_k=8)
    exclude = [s.nodes for s in ranking if (s.output_sqnr_db or s.sqnr_db) < 20.0]
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.calibration.readers import open_data
from onnxsmith.calibration.validate import SampleValidator
from onnxsmith.errors import UnsupportedError, first_line
from onnxsmith.quant_report.report import QuantReport, quant_report
from onnxsmith.quant_report.stats import OutputStats
from onnxsmith.quant_report.tensors import QuantizedTensor, find_quantized_tensors, integer_bounds
from onnxsmith.verify._session import make_session

__all__ = ["Sensitivity", "rank_sensitivity"]

logger = logging.getLogger(__name__)

_FAKE_QUANT_OPSET = 11


@dataclass(frozen=True)
class Sensitivity:
    """How much one quantized tensor matters.

    Attributes:
        name: The fp32 value.
        kind: ``activation`` or ``weight``.
        nodes: fp32 nodes producing or consuming it (for an exclusion list by node name).
        sqnr_db: Proxy: effective SQNR of the tensor quantized alone.
        output_sqnr_db: Lowest model-output SQNR with only this tensor quantized; None when not
            measured (outside ``top_k``, or not isolable: a per-channel activation of unknown
            rank, a weight held by a Constant node, an opset below 11).
    """

    name: str
    kind: str
    nodes: tuple[str, ...]
    sqnr_db: float
    output_sqnr_db: float | None = None


def rank_sensitivity(fp32: ir.Model, quantized: ir.Model, data: Any, *, top_k: int = 0, samples: int = 8,
                     batch_size: int | None = 1, threads: int = 1, report: QuantReport | None = None) -> list[Sensitivity]:
    """Quantized tensors of ``quantized``, most sensitive first (module docstring).

    Args:
        fp32: The float model (modified temporarily while isolating, restored before return).
        quantized: The quantized model.
        data: Samples in any form :func:`~onnxsmith.calibration.open_data` reads (read again
            once per isolated tensor).
        top_k: How many tensors (lowest proxy first) to measure in isolation.
        samples: Most model runs per measurement.
        batch_size: Rows per run when the batch dimension is named.
        threads: onnxruntime intra-op threads.
        report: A report of the same models and data, to reuse its proxies.

    Raises:
        OnnxsmithError: As :func:`~onnxsmith.quant_report.report.quant_report`.
    """
    if report is None:
        report = quant_report(fp32, quantized, data, samples=samples, batch_size=batch_size, threads=threads)
    ranking = [Sensitivity(t.name, t.kind, t.fp32_nodes, t.effective_sqnr_db) for t in report.tensors]
    if top_k <= 0:
        return ranking
    tensors = {t.name: t for t in find_quantized_tensors(quantized, fp32).tensors}
    source = open_data(data)
    validator = SampleValidator(fp32, batch_size=batch_size)
    feeds = [feed for sample in source for feed in validator.feeds(sample)][:samples]
    reference = make_session(fp32, threads=threads)
    expected = [_run(reference, feed) for feed in feeds]
    measured = []
    outputs = {v.name for v in fp32.graph.outputs}
    own = {t.name: t.sqnr_db for t in report.tensors}
    for entry in ranking[:top_k]:
        value = (own[entry.name] if entry.name in outputs
                 else _isolated_output_sqnr(fp32, tensors[entry.name], feeds, expected, threads))
        measured.append(Sensitivity(entry.name, entry.kind, entry.nodes, entry.sqnr_db, value))
    measured.sort(key=lambda s: (math.inf if s.output_sqnr_db is None else s.output_sqnr_db, s.sqnr_db))
    return measured + ranking[top_k:]


def _run(session: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    try:
        return session.run(None, feed)
    except Exception as e:  # onnxruntime raises its own exception types
        raise UnsupportedError(f"onnxruntime failed while ranking sensitivity: {first_line(e)}") from e


def _isolated_output_sqnr(fp32: ir.Model, tensor: QuantizedTensor, feeds: Sequence[dict[str, np.ndarray]],
                          expected: Sequence[list[np.ndarray]], threads: int) -> float | None:
    with _quantized_alone(fp32, tensor) as isolable:
        if not isolable:
            logger.info("'%s' cannot be quantized alone in the fp32 model; no isolated measure", tensor.name)
            return None
        session = make_session(fp32, threads=threads)
    stats = [OutputStats() for _ in fp32.graph.outputs]
    for feed, outputs in zip(feeds, expected):
        for stat, want, got in zip(stats, outputs, _run(session, feed)):
            stat.update(want, got)
    values = [s.energy.sqnr_db for s in stats if s.is_float]
    return min(values) if values else None


def _values(graph: ir.Graph) -> dict[str, ir.Value]:
    return {v.name: v for v in (*graph.inputs, *(o for n in graph for o in n.outputs))}


@contextlib.contextmanager
def _quantized_alone(model: ir.Model, tensor: QuantizedTensor) -> Iterator[bool]:
    """Temporarily quantizes ``tensor`` alone in the fp32 ``model``; yields whether it could."""
    graph = model.graph
    if tensor.kind == "weight":
        value = graph.initializers.get(tensor.name)
        if value is None or tensor.load_weight is None:
            yield False
            return
        original = value.const_value
        value.const_value = ir.tensor(tensor.load_weight()[1].astype(original.dtype.numpy()), name=value.name)
        try:
            yield True
        finally:
            value.const_value = original
        return
    value = _values(graph).get(tensor.name)
    inserted = _fake_quantizer(model, value, tensor) if value is not None else None
    if inserted is None:
        yield False
        return
    nodes, constants, output = inserted
    uses = [(node, index) for node, index in value.uses() if node is not nodes[0]]
    for node, index in uses:
        node.replace_input_with(index, output)
    try:
        yield True
    finally:
        for node, index in uses:
            node.replace_input_with(index, value)
        graph.remove(nodes, safe=True)
        for constant in constants:
            graph.initializers.pop(constant.name)


def _fake_quantizer(model: ir.Model, value: ir.Value,
                    tensor: QuantizedTensor) -> tuple[list[ir.Node], list[ir.Value], ir.Value] | None:
    """Nodes computing ``value`` through the tensor's quantization grid in float, inserted after it."""
    graph = model.graph
    if graph.opset_imports.get("", 0) < _FAKE_QUANT_OPSET:
        return None
    params = tensor.params
    dtype = value.dtype.numpy() if value.dtype is not None else np.float32
    scale, zero = params.scale.astype(dtype), params.zero_point.astype(dtype)
    if params.axis is not None:
        rank = len(value.shape) if value.shape is not None else None
        if rank is None or params.block_size:
            return None
        shape = [1] * (rank - params.axis)
        shape[0] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    qmin, qmax = integer_bounds(params.dtype)
    prefix = f"{tensor.name}__sensitivity"
    constants = [ir.Value(name=f"{prefix}_{n}", const_value=ir.tensor(np.asarray(a, dtype), name=f"{prefix}_{n}"))
                 for n, a in (("scale", scale), ("zero", zero), ("qmin", qmin), ("qmax", qmax))]
    for constant in constants:
        graph.register_initializer(constant)
    s, zp, low, high = constants
    div = ir.Node("", "Div", [value, s], name=f"{prefix}_div")
    rounded = ir.Node("", "Round", div.outputs, name=f"{prefix}_round")
    shifted = ir.Node("", "Add", [rounded.outputs[0], zp], name=f"{prefix}_add")
    clipped = ir.Node("", "Clip", [shifted.outputs[0], low, high], name=f"{prefix}_clip")
    centred = ir.Node("", "Sub", [clipped.outputs[0], zp], name=f"{prefix}_sub")
    back = ir.Node("", "Mul", [centred.outputs[0], s], name=f"{prefix}_mul")
    nodes = [div, rounded, shifted, clipped, centred, back]
    for i, node in enumerate(nodes):
        node.outputs[0].name = f"{prefix}_{i}"
    producer = value.producer()
    if producer is not None:
        graph.insert_after(producer, nodes)
    else:
        graph.insert_before(next(iter(graph)), nodes)
    return nodes, constants, back.outputs[0]
