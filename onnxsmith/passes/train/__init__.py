"""Training on ONNX: reverse-mode gradient graphs as a compiler pass.

- :func:`gradient` registers the gradient rule of an operator (``gradients/`` holds the built-in
  rules, one family per module); :func:`registered_ops` lists them;
- :func:`differentiate` appends the gradients of a loss with respect to chosen values to a graph
  (the reverse sweep, ``autodiff.py``);
- the ``build-gradients`` pass turns an inference model into a graph whose outputs are the loss
  and the gradients of the parameters (``build_gradients.py``).
"""

from __future__ import annotations

from onnxsmith.passes.train.autodiff import GradientGraph, differentiate
from onnxsmith.passes.train.build_gradients import BuildGradients, BuildGradientsOptions, select_parameters
from onnxsmith.passes.train.context import GradContext
from onnxsmith.passes.train.registry import GradientRule, get_rule, gradient, registered_ops

__all__ = [
    "BuildGradients",
    "BuildGradientsOptions",
    "GradContext",
    "GradientGraph",
    "GradientRule",
    "differentiate",
    "get_rule",
    "gradient",
    "registered_ops",
    "select_parameters",
]
