"""``smooth-quant``: migrate activation outliers into the weights before static quantization.

SmoothQuant (Xiao et al., 2023). A linear op ``Y = X @ W`` with ``X``'s channels ``k`` on its last
axis and ``W`` a constant ``[K, N]`` is unchanged when a positive ``s`` scales them apart::

    Y = (X diag(1/s)) (diag(s) W)

A per-tensor activation scale is set by ``X``'s worst channel, so a few outlier channels (the
residual stream of a transformer reaches hundreds where most channels stay within a few units)
spend the integer grid on themselves. With ``a_k = max |X[..., k]|`` over the calibration data and
``w_k = max_n |W[k, n]|``::

    s_k = a_k ** alpha / w_k ** (1 - alpha)

brings channel ``k`` of the smoothed activation and row ``k`` of the smoothed weight to
``a_k ** (1 - alpha) * w_k ** alpha`` and ``a_k ** alpha * w_k ** (1 - alpha)``: at ``alpha = 0.5``
both sides share the difficulty; a larger ``alpha`` moves more of it into the weights, which
per-channel weight scales (one per column ``n``) absorb better than a per-tensor activation scale.
A channel that never fires or has zero weights keeps ``s_k = 1``; the others are clamped to
``[1e-3, 1e3]`` so that one outlier sample cannot push a weight row out of float precision.

When several linear ops read the same ``X`` (the query, key and value projections after one
LayerNorm; the packed weight of a fused Attention) they share one ``s``, with ``w_k`` the maximum
over all their rows. ``W' = diag(s) W`` is written into each weight; ``1/s`` is absorbed into
``X``'s producer where that is exact (LayerNorm gamma and beta, the columns and bias of a linear
producer, a fused Attention's value columns; :mod:`~onnxsmith.passes.quant._smooth_groups`), or
computed by an inserted ``Mul`` with ``insert-mul=true``. Without it an activation that no producer
can absorb for is left alone with the reason in the trace (``--explain``): a Mul costs an
element-wise pass over the activation on every run.

The rewrite is exact in real arithmetic; in floats the results differ by re-association (the
rescaled constants are computed in float64 and rounded once). Groups are smoothed last to first:
a weight whose columns a later group's absorber scales (a linear producer) has its rows balanced
as they will be stored, so a second run finds every ``s = 1`` and leaves the model alone.

Per-channel ``a_k`` come from the calibration data in the context
(:class:`~onnxsmith.passes.quant.calibration_setup.CalibrationSetup`, the data ``annotate-quant``
calibrates with), with the per-channel MinMax calibrator on the last axis. The pass runs before
``annotate-quant``; calibration ranges already in the context describe the model before smoothing
(their value identities do not see constants, so they would still match), so when the pass changes
the model it drops them and ``annotate-quant`` calibrates the smoothed model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.calibration import Ranges, calibrate, open_data
from onnxsmith.calibration.ranges import CONTEXT_KEY as RANGES_KEY
from onnxsmith.errors import DataInputError, OnnxsmithError, PassOptionError
from onnxsmith.passes.base import Pass, PassContext, PassResult, Tolerance
from onnxsmith.passes.quant._smooth_groups import ScaledConstant, SmoothGroup, consumer_op, find_groups, matches
from onnxsmith.passes.quant.calibration_setup import CalibrationSetup
from onnxsmith.passes.quant.qdq_nodes import constant_array
from onnxsmith.passes.registry import register_pass
from onnxsmith.passes.rewrite.scope import Namer

__all__ = ["MAX_SCALE", "MIN_SCALE", "SmoothOptions", "SmoothQuant", "smoothing_scales"]

logger = logging.getLogger(__name__)

#: Bounds of a smoothing factor.
MIN_SCALE = 1e-3
MAX_SCALE = 1e3
#: Options of ``calibrate`` that concern collection, not the calibrator (forwarded from the setup).
_COLLECTION_OPTIONS = ("batch", "batch_size", "max_outputs_per_run", "memory_budget_mb", "threads")
_OP_TYPES = ("MatMul", "Gemm", "Attention")
#: Groups whose every ``|log s|`` is below this are left alone (a second run finds ``s = 1``).
_ALREADY_SMOOTH = 1e-3


@dataclass
class SmoothOptions:
    """Options of ``smooth-quant``.

    Attributes:
        alpha: Migration strength in ``[0, 1]``: 0 leaves activations as they are, 1 moves all of
            their range into the weights.
        op_types: Linear ops to smooth: ``MatMul``, ``Gemm``, ``Attention`` (com.microsoft; only
            useful when a later pass quantizes it, e.g. ``quantize-dynamic``).
        include: When given, smooth only nodes matching these node names, op types or name regexes.
        exclude: Never smooth nodes matching these node names, op types or name regexes.
        insert_mul: Where no producer can absorb ``1/s``, compute it with an inserted Mul (costs
            an element-wise op per smoothed activation at run time).
    """

    alpha: float = 0.5
    op_types: list[str] = field(default_factory=lambda: ["MatMul", "Gemm"])
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    insert_mul: bool = False


def smoothing_scales(activation_absmax: np.ndarray, weight_absmax: np.ndarray, alpha: float) -> np.ndarray:
    """``s_k = a_k ** alpha / w_k ** (1 - alpha)``, 1 for dead channels, clamped (module docstring)."""
    a = np.asarray(activation_absmax, np.float64)
    w = np.asarray(weight_absmax, np.float64)
    alive = (a > 0) & (w > 0) & np.isfinite(a) & np.isfinite(w)
    scales = np.ones_like(a)
    scales[alive] = a[alive] ** alpha / w[alive] ** (1.0 - alpha)
    return np.clip(scales, MIN_SCALE, MAX_SCALE)


@register_pass
class SmoothQuant(Pass):
    """Migrate activation outliers into MatMul/Gemm weights (SmoothQuant) before static quantization."""

    name = "smooth-quant"
    Options = SmoothOptions
    before = ("annotate-quant", "quantize-dynamic")
    preserves = frozenset({"shapes", "topologically-sorted"})
    tolerance = Tolerance(rtol=1e-4, atol=1e-5)  # re-association of the rescaled constants

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        options: SmoothOptions = self.options
        _check(options)
        setup = CalibrationSetup.from_context(ctx)
        if setup is None:
            raise OnnxsmithError("'smooth-quant' needs calibration data for per-channel activation maxima",
                                 "give --calib-data DIR (ranges alone are per tensor)")

        def selected(node: ir.Node) -> bool:
            return (consumer_op(node) in options.op_types and not matches(node, options.exclude)
                    and (not options.include or matches(node, options.include)))

        groups, skipped = find_groups(model.graph, selected, insert_mul=options.insert_mul)
        maxima = _activation_absmax(model, setup, groups, skipped)
        scales = _smooth(model.graph, groups, maxima, options.alpha, skipped)
        for name, reason in skipped.items():
            ctx.explain(self.name, f"'{name}' not smoothed: {reason}")
        groups = [g for g in groups if g.value in scales]
        stats: dict[str, Any] = {"smoothed-values": len(groups), "skipped-values": len(skipped)}
        if not groups:
            return PassResult(False, stats)
        for group in groups:
            _record(group, scales[group.value], stats, ctx, self.name)
        if isinstance(ctx.data.pop(RANGES_KEY, None), Ranges):
            logger.info("smooth-quant dropped the calibration ranges of the model before smoothing")
        ctx.properties.discard(RANGES_KEY)
        logger.info("smooth-quant: %s", stats)
        return PassResult(True, stats)


def _record(group: SmoothGroup, scales: np.ndarray, stats: dict[str, Any], ctx: PassContext, name: str) -> None:
    """Counts a smoothed group in ``stats`` and explains it in the trace."""
    kind = f"absorbed-{group.absorber.kind}" if group.absorber.kind != "mul" else "inserted-mul"
    stats[kind] = stats.get(kind, 0) + 1
    stats["smoothed-ops"] = stats.get("smoothed-ops", 0) + len(group.consumers)
    readers = ", ".join(f"'{c.node.name}'" for c in group.consumers)
    ctx.explain(name, f"'{group.value.name}' smoothed for {readers} (1/s into {group.absorber.describe()}; "
                      f"s in [{scales.min():.3g}, {scales.max():.3g}])")


def _check(options: SmoothOptions) -> None:
    if not 0.0 <= options.alpha <= 1.0:
        raise PassOptionError(f"option 'alpha' of 'smooth-quant' must be in [0, 1], got {options.alpha}",
                              "0.5 balances activations and weights; 0.8 suits strong outliers")
    unknown = [op for op in options.op_types if op not in _OP_TYPES]
    if unknown:
        raise PassOptionError(f"option 'op-types' of 'smooth-quant' names '{unknown[0]}'",
                              f"use {', '.join(_OP_TYPES)}")


def _activation_absmax(model: ir.Model, setup: CalibrationSetup, groups: list[SmoothGroup],
                       skipped: dict[str, str]) -> dict[str, np.ndarray]:
    """``max |X[..., k]|`` per group activation over the calibration data (a group without one goes to ``skipped``)."""
    if not groups:
        return {}
    if not open_data(setup.data).reiterable:
        raise DataInputError("'smooth-quant' and 'annotate-quant' both read the calibration data, which can be "
                             "read only once", "give files, a list, or a function returning a fresh iterable")
    options = {k: v for k, v in setup.options.items() if k in _COLLECTION_OPTIONS}
    ranges = calibrate(model, setup.data, calibrator="minmax", per_channel=True, axis=-1,
                       values=[g.value.name for g in groups], progress=setup.progress, **options)
    maxima = {}
    for group in groups:
        record = ranges.get(group.value.name)
        if record is None:
            skipped[group.value.name] = "calibration observed no values (non-finite, or not computed)"
            continue
        low, high = record.bounds()
        if low.shape != (group.channels,):
            skipped[group.value.name] = f"its per-channel range has shape {list(low.shape)}, not [{group.channels}]"
            continue
        maxima[group.value.name] = np.maximum(np.abs(low), np.abs(high))
    return maxima


def _smooth(graph: ir.Graph, groups: list[SmoothGroup], maxima: dict[str, np.ndarray], alpha: float,
            skipped: dict[str, str]) -> dict[ir.Value, np.ndarray]:
    """Smooths the groups with a calibrated maximum; returns ``s`` per smoothed activation.

    Groups go last to first, with the factors of the later ones already on the weights: the
    columns a later group's absorber scales change the rows an earlier group balances. A group
    already smooth goes to ``skipped``.
    """
    factors = _Factors()
    scales = {}
    for group in reversed(groups):
        if group.value.name not in maxima:
            continue
        weights = np.max([np.abs(factors.scaled(c.weight)).max(axis=1 - c.weight.axis) for c in group.consumers],
                         axis=0)
        s = smoothing_scales(maxima[group.value.name], weights, alpha)
        if np.all(np.abs(np.log(s)) < _ALREADY_SMOOTH):
            skipped[group.value.name] = "already smooth (every s within 0.1% of 1)"
            continue
        scales[group.value] = s
        for consumer in group.consumers:
            factors.add(consumer.weight, s)
        for constant in group.absorber.constants:
            factors.add(constant, 1.0 / s)
    names = Namer.for_graph(graph)
    for group in groups:
        if group.value in scales and group.absorber.kind == "mul":
            _insert_mul(graph, group, 1.0 / scales[group.value], names)
    factors.apply(graph, names)
    return scales


class _Factors:
    """Channel factors accumulated per constant input, applied once (new initializers; old ones may be shared)."""

    def __init__(self) -> None:
        self._factors: dict[tuple[ir.Node, int], dict[int, np.ndarray]] = {}

    def add(self, constant: ScaledConstant, factor: np.ndarray) -> None:
        array = constant_array(constant.node.inputs[constant.index])
        by_axis = self._factors.setdefault((constant.node, constant.index), {})
        current = by_axis.setdefault(constant.axis, np.ones(array.shape[constant.axis]))
        current[constant.positions()] *= factor

    def scaled(self, constant: ScaledConstant) -> np.ndarray:
        """The constant with the factors added so far, in float64."""
        array = constant_array(constant.node.inputs[constant.index]).astype(np.float64)
        for axis, factor in self._factors.get((constant.node, constant.index), {}).items():
            shape = [1] * array.ndim
            shape[axis] = factor.size
            array = array * factor.reshape(shape)
        return array

    def apply(self, graph: ir.Graph, names: Namer) -> None:
        for node, index in self._factors:
            old = node.inputs[index]
            scaled = self.scaled(ScaledConstant(node, index, 0))
            new = ir.Value(name=names.value(f"{old.name}_smooth"), type=old.type, shape=old.shape,
                           const_value=ir.tensor(scaled.astype(constant_array(old).dtype)))
            graph.register_initializer(new)
            node.replace_input_with(index, new)
            _drop_if_unused(graph, old)


def _drop_if_unused(graph: ir.Graph, value: ir.Value) -> None:
    """Removes a constant nothing reads any more (an initializer, or a Constant node)."""
    if value.uses() or value.is_graph_output() or value in graph.inputs:
        return
    if value.name in graph.initializers and graph.initializers[value.name] is value:
        graph.initializers.pop(value.name)
    elif (producer := value.producer()) is not None and producer.op_type == "Constant":
        graph.remove(producer, safe=True)


def _insert_mul(graph: ir.Graph, group: SmoothGroup, inverse: np.ndarray, names: Namer) -> None:
    """``X * (1/s)`` for the group's readers, placed before the first of them."""
    x = group.value
    factor = ir.Value(name=names.value(f"{x.name}_smooth_scale"), type=ir.TensorType(x.dtype),
                      shape=ir.Shape([group.channels]), const_value=ir.tensor(inverse.astype(x.dtype.numpy())))
    graph.register_initializer(factor)
    mul = ir.Node("", "Mul", [x, factor], name=names.node(f"{x.name}_smooth"))
    out = mul.outputs[0]
    out.name, out.type, out.shape = names.value(f"{x.name}_smoothed"), x.type, x.shape
    readers = {c.node for c in group.consumers}
    graph.insert_before(next(n for n in graph if n in readers), mul)
    for consumer in group.consumers:
        consumer.node.replace_input_with(0, out)
