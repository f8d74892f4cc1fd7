"""Optimizer steps as graph fragments: SGD and AdamW appended after the gradients.

For each parameter ``p`` with gradient ``g`` the fragment computes the updated parameter and
optimizer state; the training graph takes the state and the hyperparameters as inputs and
returns the updated values as outputs, so a training loop feeds each step's outputs back as the
next step's inputs. The learning rate is an input (``lr``, 0-d), so schedules need no new graph.

SGD (torch.optim.SGD with dampening 0; momentum buffer ``b`` starting at zeros)::

    g = g + weight_decay * p                      (L2 penalty, coupled)
    b = momentum * b + g                          (when momentum > 0)
    g = g + momentum * b  if nesterov  else  b
    p = p - lr * g

AdamW (torch.optim.AdamW; ``m`` and ``v`` start at zeros; ``step`` is an int64 0-d input holding
the number of updates applied before this one, so ``t = step + 1``)::

    p = p * (1 - lr * weight_decay)               (decoupled weight decay)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The last line is computed as ``p - (m * a) / (sqrt(v) + b)`` with the 0-d factors
``a = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`` and ``b = eps * sqrt(1 - beta2^t)`` (multiply the
fraction's numerator and denominator by ``sqrt(1 - beta2^t)``). Every 0-d factor (``a``, ``b``,
``1 - lr * weight_decay``) is computed once per step for all parameters, so each parameter costs
12 element-wise passes (13 with weight decay); onnxruntime's CPU provider fuses none of them, so
the pass count is the update's cost. SGD with weight decay and no momentum likewise computes
``p * (1 - lr * weight_decay) - lr * g``.

Gradient clipping by global norm (torch's ``clip_grad_norm_``), before the update, over all
parameters ``i``::

    norm = sqrt(sum_i sum(g_i * g_i))             (in float32)
    g_i  = g_i * min(1, max_norm / (norm + 1e-6))

State inputs are named ``<p>_momentum`` (SGD) or ``<p>_m`` and ``<p>_v`` (AdamW); every updated
value is an output named ``<input>_new``. State has no initial value in the graph: feed zeros of
the parameter's shape at the first step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import onnx_ir as ir

from onnxsmith.errors import PassOptionError
from onnxsmith.passes.train._emit import Emitter

__all__ = ["OPTIMIZERS", "UPDATED_SUFFIX", "AdamW", "Optimizer", "OptimizerGraph", "SGD", "append_optimizer",
           "clip_by_global_norm"]

#: Updated parameters and state are outputs named ``<input><UPDATED_SUFFIX>``.
UPDATED_SUFFIX = "_new"

_CLIP_EPS = 1e-6  # added to the norm before dividing, as torch does


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay."""

    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    name = "sgd"

    def __post_init__(self) -> None:
        if self.momentum < 0.0 or self.weight_decay < 0.0:
            raise PassOptionError(f"SGD momentum and weight decay must be >= 0, got {self.momentum} and "
                                  f"{self.weight_decay}")
        if self.nesterov and self.momentum == 0.0:
            raise PassOptionError("Nesterov momentum needs momentum > 0")

    @property
    def state(self) -> tuple[str, ...]:
        """Names of the per-parameter state tensors."""
        return ("momentum",) if self.momentum else ()

    def update(self, emit: Emitter, p: ir.Value, g: ir.Value, state: Sequence[ir.Value], hyper: _Hyper
               ) -> tuple[ir.Value, list[ir.Value]]:
        """The updated parameter and state."""
        dtype = p.dtype
        if not self.momentum:
            if self.weight_decay:
                p = emit.op("Mul", p, hyper.decay(self.weight_decay, dtype))
            return emit.op("Sub", p, emit.op("Mul", g, hyper.lr(dtype))), []
        if self.weight_decay:
            g = emit.op("Add", g, emit.op("Mul", p, emit.scalar(self.weight_decay, dtype)))
        mu = emit.scalar(self.momentum, dtype)
        buffer = emit.op("Add", emit.op("Mul", state[0], mu), g)
        step = emit.op("Add", g, emit.op("Mul", buffer, mu)) if self.nesterov else buffer
        return emit.op("Sub", p, emit.op("Mul", step, hyper.lr(dtype))), [buffer]


@dataclass(frozen=True)
class AdamW:
    """Adam with decoupled weight decay and bias correction."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01

    name = "adamw"

    def __post_init__(self) -> None:
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise PassOptionError(f"AdamW betas must lie in [0, 1), got {self.beta1}, {self.beta2}")
        if self.eps <= 0.0 or self.weight_decay < 0.0:
            raise PassOptionError(f"AdamW needs eps > 0 and weight decay >= 0, got {self.eps}, {self.weight_decay}")

    @property
    def state(self) -> tuple[str, ...]:
        """Names of the per-parameter state tensors."""
        return ("m", "v")

    def update(self, emit: Emitter, p: ir.Value, g: ir.Value, state: Sequence[ir.Value], hyper: _Hyper
               ) -> tuple[ir.Value, list[ir.Value]]:
        """The updated parameter and state."""
        dtype = p.dtype
        m, v = state
        if self.weight_decay:
            p = emit.op("Mul", p, hyper.decay(self.weight_decay, dtype))
        m = emit.op("Add", emit.op("Mul", m, emit.scalar(self.beta1, dtype)),
                    emit.op("Mul", g, emit.scalar(1.0 - self.beta1, dtype)))
        v = emit.op("Add", emit.op("Mul", v, emit.scalar(self.beta2, dtype)),
                    emit.op("Mul", emit.op("Mul", g, g), emit.scalar(1.0 - self.beta2, dtype)))
        step_size, eps = hyper.adam_factors(self, dtype)
        denominator = emit.op("Add", emit.op("Sqrt", v), eps)
        p = emit.op("Sub", p, emit.op("Div", emit.op("Mul", m, step_size), denominator))
        return p, [m, v]


Optimizer = SGD | AdamW

#: Optimizers by name.
OPTIMIZERS: dict[str, type[SGD] | type[AdamW]] = {"sgd": SGD, "adamw": AdamW}


class _Hyper:
    """The hyperparameter inputs and the values derived from them, built once per element type."""

    def __init__(self, emit: Emitter, lr: ir.Value, step: ir.Value | None) -> None:
        self.emit = emit
        self.lr_input = lr
        self.step_input = step
        self._cache: dict[tuple, object] = {}

    def lr(self, dtype: ir.DataType) -> ir.Value:
        """The learning rate in ``dtype``."""
        key = ("lr", dtype)
        if key not in self._cache:
            if self.lr_input.dtype == dtype:
                self._cache[key] = self.lr_input
            else:
                with self._shared() as emit:
                    self._cache[key] = emit.op("Cast", self.lr_input, to=dtype)
        return self._cache[key]  # type: ignore[return-value]

    def decay(self, weight_decay: float, dtype: ir.DataType) -> ir.Value:
        """``1 - lr * weight_decay`` in ``dtype``."""
        key = ("decay", dtype, weight_decay)
        if key not in self._cache:
            lr = self.lr(dtype)
            with self._shared() as emit:
                self._cache[key] = emit.op("Sub", emit.scalar(1.0, dtype),
                                           emit.op("Mul", lr, emit.scalar(weight_decay, dtype)))
        return self._cache[key]  # type: ignore[return-value]

    def adam_factors(self, adam: AdamW, dtype: ir.DataType) -> tuple[ir.Value, ir.Value]:
        """``lr * sqrt(1 - beta2^t) / (1 - beta1^t)`` and ``eps * sqrt(1 - beta2^t)``, ``t = step + 1``."""
        key = ("adam", dtype)
        if key not in self._cache:
            lr = self.lr(dtype)
            assert self.step_input is not None
            with self._shared() as emit:
                t = emit.op("Add", emit.op("Cast", self.step_input, to=dtype), emit.scalar(1.0, dtype))
                one = emit.scalar(1.0, dtype)

                def correction(beta: float) -> ir.Value:
                    return emit.op("Sub", one, emit.op("Pow", emit.scalar(beta, dtype), t))

                root = emit.op("Sqrt", correction(adam.beta2))
                self._cache[key] = (emit.op("Div", emit.op("Mul", lr, root), correction(adam.beta1)),
                                    emit.op("Mul", root, emit.scalar(adam.eps, dtype)))
        return self._cache[key]  # type: ignore[return-value]

    @contextmanager
    def _shared(self) -> Iterator[Emitter]:
        """The emitter, naming nodes after the hyperparameters rather than the current parameter."""
        saved, self.emit.prefix = self.emit.prefix, self.lr_input.name
        try:
            yield self.emit
        finally:
            self.emit.prefix = saved


@dataclass
class OptimizerGraph:
    """What :func:`append_optimizer` added.

    Attributes:
        lr: The learning-rate input.
        step: The step input (AdamW), else None.
        state: Each state input and its parameter, parameter by parameter, in the order of the
            optimizer's ``state``.
        updates: Each input (parameter or state) and the output holding its updated value.
    """

    lr: ir.Value
    step: ir.Value | None
    state: dict[ir.Value, ir.Value] = field(default_factory=dict)
    updates: dict[ir.Value, ir.Value] = field(default_factory=dict)


def append_optimizer(graph: ir.Graph, optimizer: Optimizer, gradients: Sequence[tuple[ir.Value, ir.Value]], *,
                     lr: str = "lr", step: str = "step") -> OptimizerGraph:
    """Appends one optimizer step for each ``(parameter, gradient)`` pair to ``graph``.

    Appends the state inputs, then the ``lr`` input (0-d, the first parameter's element type) and
    the ``step`` input (AdamW; 0-d int64) to the graph's inputs. The updated values are returned,
    named ``<input>_new``, but not made graph outputs.

    Raises:
        PassOptionError: No parameter is given.
    """
    if not gradients:
        raise PassOptionError("the optimizer has no parameter to update")
    emit = Emitter(graph, optimizer.name)
    states = [[emit.input(emit.fresh(f"{p.name}_{s}"), p.dtype, list(p.shape.dims) if p.shape is not None else None)
               for s in optimizer.state] for p, _ in gradients]
    lr_input = emit.input(emit.fresh(lr), gradients[0][0].dtype, [])
    step_input = emit.input(emit.fresh(step), ir.DataType.INT64, []) if isinstance(optimizer, AdamW) else None
    hyper = _Hyper(emit, lr_input, step_input)
    result = OptimizerGraph(lr_input, step_input, {v: p for (p, _), state in zip(gradients, states) for v in state})
    for (p, g), state in zip(gradients, states):
        emit.prefix = f"{p.name}_{optimizer.name}"
        new_p, new_state = optimizer.update(emit, p, g, state, hyper)
        for old, new in zip([p, *state], [new_p, *new_state]):
            new.name = emit.fresh(old.name + UPDATED_SUFFIX)
            new.type, new.shape = old.type, old.shape
            result.updates[old] = new
    return result



def clip_by_global_norm(graph: ir.Graph, gradients: Sequence[tuple[ir.Value, ir.Value]], max_norm: float
                        ) -> list[tuple[ir.Value, ir.Value]]:
    """Appends the scaling of every gradient to the global L2 norm ``max_norm`` (see the module docstring).

    Returns:
        The ``(parameter, clipped gradient)`` pairs, in the order given.
    """
    if max_norm <= 0.0:
        raise PassOptionError(f"the gradient clipping norm must be positive, got {max_norm}")
    emit = Emitter(graph, "clip_norm")
    f32 = ir.DataType.FLOAT
    squares = [emit.op("ReduceSumSquare", g, keepdims=0) for _, g in gradients]
    squares = [s if p.dtype == f32 else emit.op("Cast", s, to=f32) for s, (p, _) in zip(squares, gradients)]
    total = squares[0] if len(squares) == 1 else emit.op("Sum", *squares)
    norm = emit.op("Add", emit.op("Sqrt", total), emit.scalar(_CLIP_EPS, f32))
    factor = emit.op("Min", emit.op("Div", emit.scalar(max_norm, f32), norm), emit.scalar(1.0, f32))
    factors: dict[ir.DataType, ir.Value] = {f32: factor}
    clipped = []
    for p, g in gradients:  # a gradient has its parameter's type (its own may not be inferred yet)
        if p.dtype not in factors:
            factors[p.dtype] = emit.op("Cast", factor, to=p.dtype)
        clipped.append((p, emit.op("Mul", g, factors[p.dtype])))
    return clipped
