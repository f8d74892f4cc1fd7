"""``annotate-quant``: decide what to quantize and how, as a :class:`QuantPlan` in the context.

The pass does not change the model. It resolves its options against the target (activation type:
the target's preferred one, uint8 on ``cpu`` and int8 elsewhere; weights int8, symmetric, per
channel; the element-wise ops it runs on integers between integer kernels), gets activation
ranges, and plans with :mod:`~onnxsmith.passes.quant.planner`.

Ranges come from the context (``--ranges ranges.json``, or an earlier calibration), matched to the
current model by value identity. Without them, the calibration data in the context
(:class:`~onnxsmith.passes.quant.calibration_setup.CalibrationSetup`, from ``--calib-data``)
calibrates the model as it is now, observing only the values the plan may quantize; the ranges
are then stored in the context for later passes. With neither, the pass fails with one line
naming both remedies.

Quantization types need opset support: per-channel scales the ``axis`` attribute (opset 13),
16-bit types opset 21. On an older model the ``cpu`` target uses onnxruntime's com.microsoft
QuantizeLinear/DequantizeLinear, which have both; other targets fall back to per-tensor weights
(noted in the log) or refuse 16-bit types.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx_ir as ir

from onnxsmith.calibration import Ranges, calibrate
from onnxsmith.calibration.ranges import CONTEXT_KEY as RANGES_KEY
from onnxsmith.codegen.quant import ONNX_QUANT_MIN_OPSET
from onnxsmith.codegen.target import Target
from onnxsmith.codegen.targets import target_of
from onnxsmith.errors import OnnxsmithError, PassOptionError
from onnxsmith.passes.base import ALL, Pass, PassContext, PassResult
from onnxsmith.passes.quant.calibration_setup import CalibrationSetup
from onnxsmith.passes.quant.op_roles import elementwise_ops_for, linear_ops_for
from onnxsmith.passes.quant.plan import CONTEXT_KEY as PLAN_KEY
from onnxsmith.passes.quant.planner import PlanSettings, activation_values, build_plan, select_nodes
from onnxsmith.passes.registry import register_pass

__all__ = ["AnnotateOptions", "AnnotateQuant", "MICROSOFT_DOMAIN"]

logger = logging.getLogger(__name__)

MICROSOFT_DOMAIN = "com.microsoft"
_OVERRIDE_SETTINGS = ("skip", "symmetric", "asymmetric", "uint8", "int8", "uint16", "int16")
_SIXTEEN_BITS = frozenset({"uint16", "int16"})


@dataclass
class AnnotateOptions:
    """Options of ``annotate-quant``.

    Attributes:
        include: Also quantize nodes matching these node names, op types or name regexes.
        exclude: Never quantize nodes matching these node names, op types or name regexes.
        overrides: ``VALUE:SETTING`` items; SETTING is ``skip``, ``symmetric``, ``asymmetric`` or an
            integer type (``int16`` for an A16W8 tensor).
        activation_dtype: ``auto`` (the target's preferred type), ``uint8``, ``int8``, ``uint16``, ``int16``.
        weight_dtype: ``auto`` (the target's preferred type), ``int8`` or ``uint8``.
        per_channel: One weight scale per output channel.
        symmetric_activations: Zero-point-free activations (default: what the target requires).
        max_range: Activations whose calibrated range reaches this magnitude stay float.
    """

    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    activation_dtype: Literal["auto", "uint8", "int8", "uint16", "int16"] = "auto"
    weight_dtype: Literal["auto", "int8", "uint8"] = "auto"
    per_channel: bool = True
    symmetric_activations: bool | None = None
    max_range: float = 1e4


@register_pass
class AnnotateQuant(Pass):
    """Plan static quantization (what, which types, which scales) from calibration ranges."""

    name = "annotate-quant"
    Options = AnnotateOptions
    provides = frozenset({PLAN_KEY})
    preserves = ALL

    def check_context(self, ctx: PassContext) -> None:
        if not isinstance(ctx.data.get(RANGES_KEY), Ranges) and CalibrationSetup.from_context(ctx) is None:
            raise _no_ranges()

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        options: AnnotateOptions = self.options
        target = target_of(ctx)
        settings, domain = _settings(options, target, model)
        selection = select_nodes(model.graph, settings)
        symmetric = settings.symmetric_activations and "asymmetric" not in settings.overrides.values()
        ranges = _activation_ranges(model, ctx, activation_values(selection), symmetric=symmetric)
        plan = build_plan(model.graph, selection, ranges, settings, target=target.name, qdq_domain=domain)
        plan.store(ctx)
        logger.info("quantization plan: %s", plan.stats())
        return PassResult(False, plan.stats())


def _overrides(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        value, sep, setting = item.rpartition(":")
        if not sep or not value or setting not in _OVERRIDE_SETTINGS:
            raise PassOptionError(f"override '{item}' of 'annotate-quant' is not VALUE:SETTING",
                                  f"SETTING is one of {', '.join(_OVERRIDE_SETTINGS)}")
        out[value] = setting
    return out


def _settings(options: AnnotateOptions, target: Target, model: ir.Model) -> tuple[PlanSettings, str]:
    """The options resolved against the target, and the domain of the Q/DQ nodes."""
    quant = target.quant
    activation = quant.preferred_activation.name.lower() if options.activation_dtype == "auto" else options.activation_dtype
    weight = quant.preferred_weight.name.lower() if options.weight_dtype == "auto" else options.weight_dtype
    allowed = {t.name.lower() for t in quant.activation_dtypes}
    if activation not in allowed:
        raise PassOptionError(f"target '{target.name}' does not take {activation} activations",
                              f"use one of {', '.join(sorted(allowed))}")
    if weight not in {t.name.lower() for t in quant.weight_dtypes}:
        raise PassOptionError(f"target '{target.name}' does not take {weight} weights")
    overrides = _overrides(options.overrides)
    symmetric = quant.symmetric_activations if options.symmetric_activations is None else options.symmetric_activations
    per_channel = options.per_channel and quant.per_channel_weights
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
    sixteen = activation in _SIXTEEN_BITS or any(s in _SIXTEEN_BITS for s in overrides.values())
    needed = max(ONNX_QUANT_MIN_OPSET["int8"], ONNX_QUANT_MIN_OPSET["per-channel"] if per_channel else 0,
                 ONNX_QUANT_MIN_OPSET["int16"] if sixteen else 0)
    domain = ""
    if opset < needed:
        if "qoperator" in quant.formats:  # onnxruntime's own Q/DQ take axis and 16-bit types at any opset
            domain = MICROSOFT_DOMAIN
        elif sixteen:
            raise PassOptionError(f"16-bit activations need opset {ONNX_QUANT_MIN_OPSET['int16']}; the model "
                                  f"imports opset {opset}", "convert the model to opset 21 or quantize to 8 bits")
        else:
            logger.warning("opset %d has no per-channel QuantizeLinear: weights are quantized per tensor", opset)
            per_channel = False
    settings = PlanSettings(linear_ops=linear_ops_for(target), activation_dtype=activation, weight_dtype=weight,
                            symmetric_activations=symmetric, per_channel=per_channel, include=list(options.include),
                            exclude=list(options.exclude), overrides=overrides, max_range=options.max_range,
                            elementwise_ops=elementwise_ops_for(target))
    return settings, domain


def _extremes(record) -> tuple[float, float]:
    low, high = record.bounds()
    return float(np.min(low)), float(np.max(high))


def _no_ranges() -> OnnxsmithError:
    return OnnxsmithError("'annotate-quant' needs activation ranges: the context has no ranges and no calibration data",
                          "give --calib-data DIR or --ranges FILE")


def _activation_ranges(model: ir.Model, ctx: PassContext, names: list[str], *, symmetric: bool
                       ) -> dict[str, tuple[float, float]]:
    """Ranges by current value name: from the context, else by calibrating ``names`` now.

    With ``symmetric`` (the target's activations have no zero point and no value asks for one) the
    calibrator searches ``(-T, T)`` ranges, unless the calibration options say otherwise.
    """
    stored = ctx.data.get(RANGES_KEY)
    if isinstance(stored, Ranges):
        resolution = stored.resolve(model)
        if resolution.unmatched:
            logger.warning("%d calibration ranges match no value of the model:\n%s", len(resolution.unmatched),
                           resolution.describe())
        return {name: _extremes(record) for name, record in resolution.records.items()}
    setup = CalibrationSetup.from_context(ctx)
    if setup is None:
        raise _no_ranges()
    if not names:
        return {}
    options = {"symmetric": True, **setup.options} if symmetric else setup.options
    ranges = calibrate(model, setup.data, calibrator=setup.calibrator, values=names, progress=setup.progress,
                       **options)
    ranges.store(ctx)
    return {name: _extremes(record) for name, record in ranges.items()}
