"""Test support for the static quantization passes: contexts with generated calibration data.

The pass contract (:func:`onnxsmith.verify.check_pass`) runs a pass on random models; the
quantization passes need ranges, which need data. :func:`calibrated_context` builds, for a model,
a context holding calibration samples drawn like :func:`onnxsmith.verify.generate_inputs`
(including seed 0, the contract's own inputs, so that nothing it feeds is clipped) and runs
``annotate-quant`` first for a pass that needs its plan.

Generated samples stand in for data only in tests: real calibration needs real inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from onnxsmith.passes.base import Pass, PassContext
from onnxsmith.passes.quant.annotate import AnnotateQuant
from onnxsmith.passes.quant.calibration_setup import CalibrationSetup
from onnxsmith.passes.quant.plan import CONTEXT_KEY as PLAN_KEY
from onnxsmith.verify.inputs import generate_inputs

__all__ = ["calibrated_context", "generated_setup"]


def generated_setup(model: ir.Model, samples: int = 4, calibrator: str = "minmax") -> CalibrationSetup:
    """Calibration data of ``samples`` generated feeds (seeds ``0..samples-1``)."""
    return CalibrationSetup([generate_inputs(model, seed=seed) for seed in range(samples)], calibrator)


def calibrated_context(p: Pass | type[Pass] | str | None = None, *, target: str = "generic",
                       samples: int = 4) -> Callable[[ir.Model], PassContext]:
    """A ``check_pass``/``check_contract`` context factory for a quantization pass.

    Args:
        p: The pass to be checked (its ``requires`` decide whether ``annotate-quant`` runs first).
        target: Target of the context.
        samples: Generated calibration feeds.
    """
    requires = _requires(p)

    def make(model: ir.Model) -> PassContext:
        ctx = PassContext(target=target)
        generated_setup(model, samples).store(ctx)
        if PLAN_KEY in requires:
            AnnotateQuant().run(model, ctx)
        return ctx

    return make


def _requires(p: Pass | type[Pass] | str | None) -> frozenset[str]:
    if p is None:
        return frozenset()
    if isinstance(p, str):
        from onnxsmith.passes.registry import get_pass

        p = get_pass(p)
    return p.requires
