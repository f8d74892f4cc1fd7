"""Training on ONNX: reverse-mode gradient graphs as a compiler pass.

- :func:`gradient` registers the gradient rule of an operator (``gradients/`` holds the built-in
  rules, one family per module); :func:`registered_ops` lists them;
- :func:`differentiate` appends the gradients of a loss with respect to chosen values to a graph
  (the reverse sweep, ``autodiff.py``);
- :func:`add_loss` / :func:`add_losses` append cross-entropy, mse, cosine, kl-div losses and
  weighted sums (``losses.py``); :func:`append_optimizer` appends an :class:`SGD` or
  :class:`AdamW` step (``optimizers.py``);
- the ``build-gradients`` pass turns an inference model into a training graph whose outputs are
  the loss and either the gradients of the parameters or their updated values and optimizer
  state (``build_gradients.py``).
"""

from __future__ import annotations

from onnxsmith.passes.train.autodiff import GradientGraph, differentiate
from onnxsmith.passes.train.build_gradients import (
    METADATA_KEY,
    BuildGradients,
    BuildGradientsOptions,
    select_parameters,
)
from onnxsmith.passes.train.context import GradContext, RuleOptions
from onnxsmith.passes.train.losses import LOSSES, Loss, add_loss, add_losses
from onnxsmith.passes.train.optimizers import SGD, AdamW, OptimizerGraph, append_optimizer
from onnxsmith.passes.train.registry import GradientRule, get_rule, gradient, registered_ops

__all__ = [
    "LOSSES",
    "METADATA_KEY",
    "SGD",
    "AdamW",
    "BuildGradients",
    "BuildGradientsOptions",
    "GradContext",
    "GradientGraph",
    "GradientRule",
    "Loss",
    "OptimizerGraph",
    "RuleOptions",
    "add_loss",
    "add_losses",
    "append_optimizer",
    "differentiate",
    "get_rule",
    "gradient",
    "registered_ops",
    "select_parameters",
]
