"""``tune-quant``: make the quantization plan faithful by measuring it, between ``annotate-quant`` and ``insert-qdq``.

The pass leaves the model alone and edits only the plan in the context. The algorithm, greedy by
sensitivity:

1. *Trial 0*: materialise the plan on a copy of the model (``insert-qdq`` and ``fold-scales``
   through a :class:`~onnxsmith.passes.PassManager`) and score its outputs against the float
   model's on the first ``samples`` runs of the calibration data
   (:mod:`~onnxsmith.passes.quant._fidelity`: the worst output's mean cosine, SQNR in dB, or
   top-1 agreement). At or above ``threshold``: done, the plan is unchanged.
2. *Ranking, once*: :func:`~onnxsmith.quant_report.rank_sensitivity` orders the quantized
   tensors, the ``top-k`` with the lowest SQNR by the model-output SQNR they cause quantized alone
   in the float model, the rest by their own SQNR. Measured alone, a tensor's effect does not
   depend on what else is quantized, so the ranking is not redone after each exclusion.
3. *Trials 1..max-trials*: for the next tensor of the ranking, exclude the integer nodes that
   keep it quantized (:func:`~onnxsmith.passes.quant._replan.nodes_keeping_quantized`), re-plan,
   materialise and score. An exclusion that improves the score is kept and recorded in the
   node's decision (``tune-quant: cosine 0.962 -> 0.991 keeping 'x' float``); one that does not is
   undone (logged), so nothing is left in float that did not pay for itself. Stop when the
   score reaches the threshold, the ranking is exhausted, or the trials run out (a warning then;
   the plan is the best found and valid either way).

Cost, with ``S`` samples, ``R`` = ``rank-samples``, ``k`` = ``top-k`` and ``T`` trials: ``T + 1``
materialisations and quantized sessions of ``S`` runs each, plus one ranking (``R`` runs of both
models and ``k`` float sessions of ``R`` runs), i.e. ``O((T + k + 2) x (session + S runs))``;
memory holds the float outputs of ``S`` runs and one copy of the model at a time. On
all-MiniLM-L6-v2 that is about 1-2 s per trial. Every run is deterministic (one onnxruntime
thread, fixed samples, ordered ties).

Calibration data is the one ``annotate-quant`` used (the context's
:class:`~onnxsmith.passes.quant.calibration_setup.CalibrationSetup`); without it, or when it can
be read only once, the pass logs why and changes nothing. Progress goes to the log, one line per
trial. Interrupting the pass (Ctrl-C) leaves the context with the last plan it accepted, which is
always valid.

Pipelines: ``qdq-auto`` is ``qdq`` with ``tune-quant`` after ``annotate-quant``. ``qdq`` itself does
not tune: a plan there follows from the ranges alone (predictable, and what ``--ranges`` users
edit), and tuning costs a multiple of calibration when it acts (all-MiniLM-L6-v2: calibration
1.5-2 s, tuning 7-10 s for trial 0, the ranking and one exclusion; magika, already faithful:
0.6 s), which the calibration-time budget against onnxruntime cannot absorb.

Why only exclusion, not int16 activations: an A16W8 tensor has no integer kernel on onnxruntime's
CPU provider (and no 16-bit QDQ fusion on TensorRT), so it runs as float behind extra
Quantize/DequantizeLinear nodes -- the fidelity of exclusion at a higher cost.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

from onnxsmith.calibration import Ranges, open_data
from onnxsmith.calibration.ranges import CONTEXT_KEY as RANGES_KEY
from onnxsmith.errors import PassOptionError
from onnxsmith.passes.base import ALL, Pass, PassContext, PassResult
from onnxsmith.passes.manager import PassManager
from onnxsmith.passes.quant._fidelity import DEFAULT_THRESHOLDS, Fidelity, FidelityProbe, Metric, format_score
from onnxsmith.passes.quant._replan import node_names, nodes_keeping_quantized, plan_without
from onnxsmith.passes.quant.calibration_setup import CalibrationSetup
from onnxsmith.passes.quant.plan import CONTEXT_KEY as PLAN_KEY
from onnxsmith.passes.quant.plan import QuantPlan
from onnxsmith.passes.registry import register_pass

if TYPE_CHECKING:
    from onnxsmith.quant_report import Sensitivity

__all__ = ["TuneOptions", "TuneQuant"]

logger = logging.getLogger(__name__)

_MATERIALISE = "insert-qdq,fold-scales"


@dataclass
class TuneOptions:
    """Options of ``tune-quant``.

    Attributes:
        metric: ``cosine`` (mean per-sample cosine of each output), ``sqnr`` (output SQNR in dB) or
            ``top1`` (argmax agreement of 2-D classifier outputs); the worst output counts.
        threshold: The score to reach; default per metric: cosine 0.99, sqnr 20 dB, top1 0.99.
        samples: Calibration runs each trial measures.
        max_trials: Most exclusions tried after the first measurement.
        top_k: Tensors measured alone in the float model to rank them.
        rank_samples: Calibration runs the ranking measures (at most ``samples``).
    """

    metric: Metric = "cosine"
    threshold: float | None = None
    samples: int = 16
    max_trials: int = 12
    top_k: int = 4
    rank_samples: int = 4

    def __post_init__(self) -> None:
        if self.samples < 1 or self.rank_samples < 1 or self.max_trials < 0 or self.top_k < 0:
            raise PassOptionError("'tune-quant' needs samples >= 1, rank-samples >= 1, max-trials >= 0 and top-k >= 0")


@register_pass
class TuneQuant(Pass):
    """Keep in float the quantized tensors that cost output fidelity, until it meets a threshold."""

    name = "tune-quant"
    Options = TuneOptions
    requires = frozenset({PLAN_KEY})
    preserves = ALL
    after = ("annotate-quant",)
    before = ("insert-qdq",)

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        options: TuneOptions = self.options
        plan = QuantPlan.from_context(ctx)
        setup = CalibrationSetup.from_context(ctx)
        if not plan.quantized_nodes():
            return PassResult(False, {"tuned": 0, "why": "nothing quantized"})
        if setup is None or not open_data(setup.data).reiterable:
            why = "no calibration data" if setup is None else "calibration data that can be read only once"
            logger.warning("tune-quant: %s in the context; the plan is not tuned", why)
            return PassResult(False, {"tuned": 0, "why": why})
        return PassResult(False, _Tuner(model, ctx, options, setup).tune(plan))


class _Tuner:
    """One run of the algorithm of the module docstring."""

    def __init__(self, model: ir.Model, ctx: PassContext, options: TuneOptions, setup: CalibrationSetup) -> None:
        self.model = model
        self.ctx = ctx
        self.options = options
        self.threshold = DEFAULT_THRESHOLDS[options.metric] if options.threshold is None else options.threshold
        batch_size = setup.options.get("batch_size", 1)
        self.started = time.perf_counter()
        self.probe = FidelityProbe(model, setup.data, metric=options.metric, samples=options.samples,
                                   batch_size=batch_size)
        self.names = node_names(model.graph)
        self.values = {v.name: v for v in (*model.graph.inputs, *model.graph.initializers.values(),
                                           *(o for n in model.graph for o in n.outputs))}
        self.trials = 0

    def tune(self, plan: QuantPlan) -> dict[str, Any]:
        metric = self.options.metric
        quantized = self._materialise(plan)
        fidelity = self.probe.measure(quantized)
        first = fidelity
        logger.info("tune-quant trial 0: %s on '%s' (threshold %s), %.1f s", format_score(metric, fidelity.score),
                    fidelity.output, format_score(metric, self.threshold), self._elapsed())
        excluded: list[str] = []
        kept_float: list[str] = []
        if not self._met(fidelity) and self.options.max_trials > 0:
            feeds = self.probe.feeds[:self.options.rank_samples]
            from onnxsmith.quant_report import rank_sensitivity  # imported when tuning runs, not at start-up

            ranking = rank_sensitivity(self.model, quantized, feeds, top_k=self.options.top_k, samples=len(feeds),
                                       batch_size=None)
            del quantized
            plan, fidelity = self._exclude_greedily(plan, fidelity, ranking, excluded, kept_float)
        stats = {"metric": metric, "threshold": self.threshold, "before": first.score, "after": fidelity.score,
                 "met": self._met(fidelity), "trials": self.trials, "excluded": len(excluded),
                 "float_tensors": kept_float, "seconds": round(self._elapsed(), 3)}
        if not stats["met"]:
            logger.warning("tune-quant: %s after %d trials is below the threshold %s; the plan keeps the best "
                           "found (raise max-trials or top-k, or lower the threshold)",
                           format_score(metric, fidelity.score), self.trials, format_score(metric, self.threshold))
        return stats

    def _exclude_greedily(self, plan: QuantPlan, fidelity: Fidelity, ranking: list[Sensitivity],
                          excluded: list[str], kept_float: list[str]) -> tuple[QuantPlan, Fidelity]:
        ranges = self._ranges()
        for entry in ranking:
            if self._met(fidelity) or self.trials >= self.options.max_trials:
                break
            value = self.values.get(entry.name)
            nodes = nodes_keeping_quantized(value, plan, self.names) if value is not None else []
            if not nodes:
                continue
            self.trials += 1
            reason = f"tune-quant: keeping '{entry.name}' float ({_describe(entry)})"
            trial = plan_without(plan, self.model.graph, {n: reason for n in nodes}, ranges)
            candidate = self.probe.measure(self._materialise(trial))
            change = format_score(self.options.metric, candidate.score, before=fidelity.score)
            if candidate.better_than(fidelity):
                plan, fidelity = _annotated(trial, nodes, change), candidate
                excluded.extend(nodes)
                kept_float.append(entry.name)
                plan.store(self.ctx)
                logger.info("tune-quant trial %d: excluded %s: %s, %.1f s", self.trials, ", ".join(nodes), change,
                            self._elapsed())
            else:
                logger.info("tune-quant trial %d: kept %s quantized: excluding it did not help (%s), %.1f s",
                            self.trials, ", ".join(nodes), change, self._elapsed())
        return plan, fidelity

    def _elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _met(self, fidelity: Fidelity) -> bool:
        return fidelity.score >= self.threshold

    def _materialise(self, plan: QuantPlan) -> ir.Model:
        """The model quantized by ``plan`` (a copy; the pass's model is untouched)."""
        copy = self.model.clone()
        ctx = PassContext(target=self.ctx.target)
        plan.store(ctx)
        PassManager(_MATERIALISE, verify="none").run(copy, ctx)
        return copy

    def _ranges(self) -> dict[str, tuple[float, float]]:
        """Calibrated ranges of the context by current value name (empty when there are none)."""
        stored = self.ctx.data.get(RANGES_KEY)
        if not isinstance(stored, Ranges):
            return {}
        out = {}
        for name, record in stored.resolve(self.model).records.items():
            low, high = record.bounds()
            out[name] = (float(np.min(low)), float(np.max(high)))
        return out


def _describe(entry: Sensitivity) -> str:
    if entry.output_sqnr_db is not None:
        return f"output SQNR {entry.output_sqnr_db:.1f} dB when quantized alone"
    return f"own SQNR {entry.sqnr_db:.1f} dB"


def _annotated(plan: QuantPlan, nodes: list[str], change: str) -> QuantPlan:
    """``plan`` with the measured change appended to the reasons of ``nodes``."""
    for name in nodes:
        decision = plan.nodes[name]
        decision.reason = f"{decision.reason}: {change}"
    return plan
