"""Checking gradient graphs against central finite differences.

For a parameter ``p`` and a loss ``L``, the numeric gradient of element ``i`` is
``(L(p + h e_i) - L(p - h e_i)) / 2h``; its error is ``O(h^2)`` plus the rounding error of ``L``
divided by ``2h``, so float64 models check to ~1e-8 with ``h = 1e-6`` while float32 ones need
``h`` around ``1e-2`` and tolerances of a few 1e-3 (and inputs kept away from kinks such as
Relu's 0 or a max-pooling tie). Both gradients come from one onnxruntime session of the
``build-gradients`` result, whose parameters are graph inputs with their values as defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.base import PassContext
from onnxsmith.passes.train.build_gradients import GRADIENT_SUFFIX, BuildGradients

__all__ = ["GradientCheck", "check_gradients"]


@dataclass
class GradientCheck:
    """The analytic (graph) and numeric (finite difference) gradients of one parameter."""

    name: str
    analytic: np.ndarray
    numeric: np.ndarray

    def max_error(self) -> float:
        """The largest absolute difference."""
        return float(np.max(np.abs(self.analytic - self.numeric), initial=0.0))

    def close(self, rtol: float, atol: float) -> bool:
        """Whether every element agrees within ``atol + rtol * |numeric|``."""
        return bool(np.allclose(self.analytic, self.numeric, rtol=rtol, atol=atol))


def check_gradients(model: ir.Model, feeds: Mapping[str, np.ndarray] | None = None, *, step: float | None = None,
                    **options: str) -> list[GradientCheck]:
    """Builds the gradients of ``model`` and compares them with central finite differences.

    Args:
        model: The model (left unchanged).
        feeds: Values of its data inputs.
        step: The finite-difference step ``h``; 1e-6 for float64 parameters, 1e-2 otherwise.
        **options: Options of ``build-gradients`` (``wrt``, ``freeze``, ``loss``, ``seed``); 0-d
            initializers are checked too unless ``scalars=False``.

    Returns:
        One check per parameter with a gradient.
    """
    from onnxsmith.verify._session import make_session

    training = ir.from_proto(ir.to_proto(model))
    BuildGradients(**{"scalars": True, **options}).run(training, PassContext())
    session = make_session(training)
    loss_name = training.graph.outputs[0].name
    grad_names = [v.name for v in training.graph.outputs[1:]]
    params = {name[: -len(GRADIENT_SUFFIX)]: training.graph.initializers[name[: -len(GRADIENT_SUFFIX)]]
              for name in grad_names}
    base = dict(feeds or {})
    base.update({name: v.const_value.numpy().copy() for name, v in params.items()})
    analytic = dict(zip(grad_names, session.run(grad_names, base)))
    checks = []
    for name, value in params.items():
        h = step if step is not None else (1e-6 if value.dtype == ir.DataType.DOUBLE else 1e-2)
        numeric = np.zeros(base[name].shape, dtype=np.float64)
        for i in np.ndindex(*base[name].shape):
            losses = []
            for sign in (1.0, -1.0):
                shifted = base[name].copy()
                shifted[i] += sign * h
                losses.append(float(np.sum(session.run([loss_name], {**base, name: shifted})[0], dtype=np.float64)))
            numeric[i] = (losses[0] - losses[1]) / (2 * h)
        checks.append(GradientCheck(name, analytic[name + GRADIENT_SUFFIX].astype(np.float64), numeric))
    return checks
