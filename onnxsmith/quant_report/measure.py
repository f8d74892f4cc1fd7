"""Running the fp32 and the quantized model side by side and measuring each quantized tensor.

Weights need no run: the float initializer is compared with the dequantized integers, one weight
at a time. Activations are measured over the first ``samples`` runs of the data: for each
quantized activation ``x`` the fp32 model exposes ``x`` and the quantized model exposes its
DequantizeLinear output, as extra graph outputs for the life of one onnxruntime session each
(graph optimizations off, so names survive; the models are left as they were). Per run:

* ``own``: ``x`` through QuantizeLinear/DequantizeLinear with the tensor's parameters, in numpy
  (the error this quantizer alone adds; elements more than half a step beyond the range ends count as
  clipped);
* ``through_model``: the quantized model's dequantized value (it also carries every upstream
  quantization error);
* the model outputs of both, for output fidelity.

Each run's arrays are folded into :class:`~onnxsmith.quant_report.stats.TensorStats` and dropped
before the next, so memory is one run's exposed values plus O(tensors x octaves). When the values
of one run would exceed ``memory_budget_mb`` (estimated from declared shapes, as in
:mod:`onnxsmith.calibration.collect`), or there are more than ``max_tensors_per_run``, the
activations are split into chunks (the budget covers both models' copies) and the data is read once per chunk, with a fresh pair of
sessions each time; outputs are compared in the first chunk only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.calibration.collect import plan_chunks
from onnxsmith.calibration.readers import DataSource, open_data
from onnxsmith.calibration.validate import SampleValidator
from onnxsmith.errors import DataInputError, ModelInputError, UnsupportedError, first_line
from onnxsmith.ir.exposed import exposed_outputs
from onnxsmith.passes.quant.scales import INTEGER_BOUNDS, QuantParams, dequantize, quantize, quantize_weight
from onnxsmith.quant_report.stats import OutputStats, TensorStats
from onnxsmith.quant_report.tensors import QuantizedTensor
from onnxsmith.verify._session import make_session

__all__ = ["Measurement", "check_pair", "measure"]

logger = logging.getLogger(__name__)


@dataclass
class Measurement:
    """Statistics of every measured tensor and output.

    Attributes:
        tensors: Stats by fp32 value name.
        outputs: Stats by graph output name.
        runs: Model runs per pass over the data.
        chunks: Activation names exposed in each pass.
        seconds: Wall time.
    """

    tensors: dict[str, TensorStats] = field(default_factory=dict)
    outputs: dict[str, OutputStats] = field(default_factory=dict)
    runs: int = 0
    chunks: list[list[str]] = field(default_factory=list)
    seconds: float = 0.0


def check_pair(fp32: ir.Model, quantized: ir.Model) -> None:
    """Checks that the two models take the same inputs and give the same outputs, by name.

    Raises:
        ModelInputError: Naming the first difference.
    """
    def listing(values: Sequence[ir.Value]) -> list[str]:
        return [v.name for v in values if not v.is_initializer()]

    for what, a, b in (("inputs", listing(fp32.graph.inputs), listing(quantized.graph.inputs)),
                       ("outputs", [v.name for v in fp32.graph.outputs], [v.name for v in quantized.graph.outputs])):
        if a != b:
            raise ModelInputError(f"the fp32 and quantized models have different {what}: {a} vs {b}",
                                  "give the fp32 model and the model quantized from it")


def _session(model: ir.Model, values: Sequence[ir.Value], threads: int) -> Any:
    with exposed_outputs(model, values):
        return make_session(model, threads=threads)


def _saturated(x: np.ndarray, codes: np.ndarray, own: np.ndarray, bounds: tuple[int, int],
               params: QuantParams) -> np.ndarray:
    """Elements the range cut off: at an integer bound and past its value by more than half a step.

    Within half a step of the end, rounding to the nearest code would cost the same error: those
    elements are rounded, not clipped (a zero point rounds the low end of ``[-0.17, 24.6]`` to
    -0.164, and a GELU output has many values in between).
    """
    high, low = codes == bounds[1], codes == bounds[0]
    if not (high.any() or low.any()):
        return high
    inward = np.where(high, codes.astype(np.int32) - 1, codes.astype(np.int32) + 1)  # stays representable
    half_step = np.abs(own - dequantize(inward, params)) / 2
    past = x - own  # the error of each element (small: it never reaches past a range end by a range)
    return (high & (past > half_step)) | (low & (-past > half_step))


def _weight_stats(tensor: QuantizedTensor) -> TensorStats:
    assert tensor.load_weight is not None
    weight, dequantized = tensor.load_weight()
    if weight.shape != dequantized.shape:
        raise ModelInputError(f"weight '{tensor.name}' has shape {weight.shape} in the fp32 model but "
                              f"{dequantized.shape} in the quantized one", "give the model quantized from it")
    stats = TensorStats()
    saturated = None
    if tensor.params.dtype in INTEGER_BOUNDS:
        codes = quantize(weight, tensor.params)
        saturated = _saturated(weight, codes, dequantize(codes, tensor.params), INTEGER_BOUNDS[tensor.params.dtype],
                               tensor.params)
    stats.update(weight, dequantized, saturated=saturated)
    stats.per_channel_sqnr_db = _per_channel_sqnr(tensor, weight)
    return stats


def _per_channel_sqnr(tensor: QuantizedTensor, weight: np.ndarray) -> float | None:
    """SQNR of a per-tensor weight requantized per channel along its consumer's channel axis."""
    params = tensor.params
    if params.axis is not None or tensor.channel_axis is None or weight.ndim < 2 or params.dtype not in INTEGER_BOUNDS:
        return None
    signed = INTEGER_BOUNDS[params.dtype][0] < 0
    symmetric = params.symmetric
    codes, channel_params = quantize_weight(weight, params.dtype, axis=tensor.channel_axis, symmetric=symmetric,
                                            narrow=symmetric and signed)
    stats = TensorStats()
    stats.update(weight, dequantize(codes, channel_params))
    return stats.own.sqnr_db


def _activation_update(stats: TensorStats, tensor: QuantizedTensor, reference: np.ndarray,
                       through_model: np.ndarray) -> None:
    if reference.shape != through_model.shape:
        raise ModelInputError(f"activation '{tensor.name}' has shape {reference.shape} in the fp32 model but "
                              f"{through_model.shape} after quantization", "give the model quantized from it")
    codes = quantize(reference, tensor.params)
    own = dequantize(codes, tensor.params)
    stats.update(reference, own, saturated=_saturated(reference, codes, own, INTEGER_BOUNDS[tensor.params.dtype],
                                                        tensor.params),
                 through_model=through_model)


class _SideBySide:
    """One pass over the data with a chunk of activations exposed in both models."""

    def __init__(self, fp32: ir.Model, quantized: ir.Model, chunk: Sequence[QuantizedTensor], *,
                 outputs: bool, threads: int) -> None:
        fp32_values = _values(fp32)
        quant_values = _values(quantized)
        self.chunk = chunk
        self.inputs = {v.name for v in fp32.graph.inputs}
        computed = [t for t in chunk if t.name not in self.inputs]
        self.fp32_names = [t.name for t in computed]
        self.quant_names = [t.dequantized for t in chunk]
        self.output_names = [v.name for v in fp32.graph.outputs] if outputs else []
        self.fp32 = _session(fp32, [fp32_values[n] for n in self.fp32_names], threads)
        self.quant = _session(quantized, [quant_values[n] for n in self.quant_names], threads)

    def run(self, feed: Mapping[str, np.ndarray], label: str, measurement: Measurement) -> None:
        try:
            ref = dict(zip(self.fp32_names + self.output_names, self.fp32.run(self.fp32_names + self.output_names, feed)))
            got = dict(zip(self.quant_names + self.output_names,
                           self.quant.run(self.quant_names + self.output_names, feed)))
        except Exception as e:  # onnxruntime raises its own exception types
            raise UnsupportedError(f"onnxruntime failed on {label}: {first_line(e)}") from e
        for tensor in self.chunk:
            reference = feed[tensor.name] if tensor.name in self.inputs else ref[tensor.name]
            _activation_update(measurement.tensors[tensor.name], tensor, np.asarray(reference, np.float32),
                               np.asarray(got[tensor.dequantized], np.float32))
        for name in self.output_names:
            try:
                measurement.outputs[name].update(ref[name], got[name])
            except ValueError as e:
                raise ModelInputError(f"output '{name}' differs in kind: {e}",
                                      "give the fp32 model and the model quantized from it") from e


def _values(model: ir.Model) -> dict[str, ir.Value]:
    graph = model.graph
    return {v.name: v for v in (*graph.inputs, *(o for n in graph for o in n.outputs))}


def measure(fp32: ir.Model, quantized: ir.Model, tensors: Sequence[QuantizedTensor], data: Any, *,
            samples: int = 8, batch_size: int | None = 1, max_tensors_per_run: int | None = None,
            memory_budget_mb: float | None = 512.0, threads: int = 1) -> Measurement:
    """Measures ``tensors`` (from :func:`~onnxsmith.quant_report.tensors.find_quantized_tensors`).

    Args:
        fp32: The float model.
        quantized: The quantized model.
        tensors: The quantized tensors to measure.
        data: Samples in any form :func:`~onnxsmith.calibration.open_data` reads.
        samples: Most model runs per pass over the data.
        batch_size: Rows per run when the batch dimension is named (a 256-row ``.npz`` gives
            256 runs of one row with the default).
        max_tensors_per_run: Chunked mode: most activations exposed per pass over the data.
        memory_budget_mb: Chunked mode: most estimated MiB of exposed activations per run.
        threads: onnxruntime intra-op threads.

    Raises:
        DataInputError: No samples, or samples that do not fit the model.
        ModelInputError: The models do not correspond.
        UnsupportedError: onnxruntime cannot run a model.
    """
    if samples < 1:
        raise DataInputError(f"samples must be at least 1, got {samples}")
    started = time.perf_counter()
    check_pair(fp32, quantized)
    result = Measurement()
    for tensor in tensors:
        if tensor.kind == "weight":
            result.tensors[tensor.name] = _weight_stats(tensor)
    activations = [t for t in tensors if t.kind == "activation"]
    for tensor in activations:
        result.tensors[tensor.name] = TensorStats(track_channels=tensor.feeds_matmul)
    result.outputs = {v.name: OutputStats() for v in fp32.graph.outputs}
    source = open_data(data)
    validator = SampleValidator(fp32, batch_size=batch_size)
    chunks = _chunks(fp32, activations, source, validator, max_tensors_per_run, memory_budget_mb)
    result.chunks = [[t.name for t in chunk] for chunk in chunks]
    for index, chunk in enumerate(chunks):
        side_by_side = _SideBySide(fp32, quantized, chunk, outputs=index == 0, threads=threads)
        result.runs = _one_pass(source, validator, side_by_side, samples, result)
    result.seconds = time.perf_counter() - started
    logger.info("measured %d tensors over %d runs in %d pass(es), %.2f s", len(result.tensors), result.runs,
                len(chunks), result.seconds)
    return result


def _chunks(fp32: ir.Model, activations: Sequence[QuantizedTensor], source: DataSource, validator: SampleValidator,
            max_tensors_per_run: int | None, memory_budget_mb: float | None) -> list[list[QuantizedTensor]]:
    dims: dict[str, int] = {}
    if source.reiterable:
        first = next(iter(source.specs()), None)
        if first is not None:
            dims = dict(validator.check(*first).dims)
    values = _values(fp32)
    by_name = {t.name: t for t in activations}
    planned = plan_chunks([values[t.name] for t in activations], dims, max_outputs_per_run=max_tensors_per_run,
                          memory_budget_mb=None if memory_budget_mb is None else memory_budget_mb / 2)
    chunks = [[by_name[v.name] for v in chunk] for chunk in planned] or [[]]
    if len(chunks) > 1 and not source.reiterable:
        raise DataInputError(f"measuring {len(activations)} activations in {len(chunks)} passes needs data that "
                             f"can be read again, but {source.description} can be read only once",
                             "pass a list, a directory, or a function returning a fresh iterator")
    return chunks


def _one_pass(source: DataSource, validator: SampleValidator, side_by_side: _SideBySide, samples: int,
              measurement: Measurement) -> int:
    runs = 0
    for sample in source:
        for feed in validator.feeds(sample):
            side_by_side.run(feed, sample.label, measurement)
            runs += 1
            if runs >= samples:
                return runs
    if runs == 0:
        raise DataInputError(f"{source.description} holds no samples", "give at least one sample")
    return runs
