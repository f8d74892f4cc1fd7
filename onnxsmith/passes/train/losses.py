"""Loss functions appended to a model's graph as plain ONNX.

Each term reads one model output ``y`` of shape ``[..., C]`` (logits, embeddings, predictions),
compares it with a new graph input (the labels, the target or the teacher) and reduces to a 0-d
loss. "Rows" are all positions but the last axis, ``R`` their number:

- ``cross-entropy`` (logits ``z``, integer ``labels`` in ``[0, C)`` of shape ``[...]``, smoothing
  ``e``): the target distribution is ``t = (1 - e) * onehot(label) + e / C`` (built with Equal and
  Where: onnxruntime's OneHot has no double kernel) and
  ``loss = -(1/R) * sum_rows sum_c t_c * log_softmax(z)_c``, torch's
  ``cross_entropy(z, labels, label_smoothing=e)``. ``C`` must be static.
- ``mse`` (``y``, ``target`` of the same shape): ``mean((y - target)^2)`` over every element.
- ``cosine`` (``y``, ``target``): ``(1/R) * sum_rows (1 - <y, t> / sqrt(|y|^2 |t|^2 + 1e-16))``
  along the last axis (torch's ``cosine_similarity`` with ``eps=1e-8`` up to where the norms
  vanish).
- ``kl-div`` (student logits ``z``, teacher logits ``u`` or probabilities ``p``, temperature
  ``T``): the teacher's softened distribution is ``q = softmax(u / T)``, from probabilities
  ``softmax(log(max(p, 1e-30)) / T)`` (``p^(1/T)`` renormalised), and
  ``loss = T^2 * (1/R) * sum_rows sum_c q_c * (log q_c - log_softmax(z / T)_c)`` (Hinton et al.
  2015; torch's ``kl_div(..., reduction='batchmean') * T^2`` for 2-D logits; for more axes the
  mean runs over every row, not only the batch axis).
- a weighted sum ``sum_i w_i * loss_i`` of any of these.

An output that is already a softmax over its last axis (ONNX Softmax, or the Exp / row-sum
division of jax2tf and tf2onnx exports) is read through its logits by cross-entropy and by the
student side of kl-div (``softmax_logits``): the loss is then ``-log p_label`` of the model's own
probabilities, not a second softmax over them.

Every op a term applies to ``y`` has a gradient rule (LogSoftmax, Mul, Sub, Div, Sqrt,
ReduceSum, ReduceMean, ...), so ``build-gradients`` differentiates through it; the labels, target
and teacher are inputs and get no gradient. (A teacher computed inside the same graph must have
its parameters frozen.)

Names of the new inputs: ``labels`` (cross-entropy), ``target`` (mse, cosine), ``teacher_logits``
or ``teacher_probs`` (kl-div), prefixed with ``<output>_`` when the terms read several outputs.
A term's ``target`` names its input explicitly; an existing value of that name (an input of the
model, a teacher's output) is used as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import PassOptionError, UnsupportedError, did_you_mean
from onnxsmith.passes.train._emit import Emitter
from onnxsmith.passes.train.context import dims_of
from onnxsmith.passes.train.softmax_logits import softmax_logits

__all__ = ["LOSSES", "Loss", "add_loss", "add_losses"]

log = logging.getLogger(__name__)

#: The loss kinds, by name.
LOSSES = ("cross-entropy", "mse", "cosine", "kl-div")

_DEFAULT_TARGET = {"cross-entropy": "labels", "mse": "target", "cosine": "target"}
_FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16})
_COSINE_EPS = 1e-16  # added to |y|^2 |t|^2: torch's eps = 1e-8 on the product of the norms
_TINY_PROBABILITY = 1e-30  # teacher probabilities are clamped to it before the logarithm


@dataclass(frozen=True)
class Loss:
    """One term of a loss.

    Attributes:
        kind: One of :data:`LOSSES`.
        output: The model output it reads (the only output when empty).
        weight: Its factor in the sum of terms.
        target: Name of the labels/target/teacher value (a default per kind when empty).
        label_smoothing: ``e`` of cross-entropy, in ``[0, 1)``.
        temperature: ``T`` of kl-div, positive.
        teacher: What the kl-div teacher input holds: ``logits`` or ``probs``.
    """

    kind: str
    output: str = ""
    weight: float = 1.0
    target: str = ""
    label_smoothing: float = 0.0
    temperature: float = 1.0
    teacher: Literal["logits", "probs"] = "logits"

    def check(self) -> None:
        """Raises PassOptionError for an unknown kind or an option out of range or of another kind."""
        if self.kind not in LOSSES:
            raise PassOptionError(f"unknown loss '{self.kind}' (losses: {', '.join(LOSSES)})",
                                  did_you_mean(self.kind, list(LOSSES)))
        if not 0.0 <= self.label_smoothing < 1.0:
            raise PassOptionError(f"label smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.kind != "cross-entropy":
            raise PassOptionError(f"label smoothing applies to cross-entropy, not to {self.kind}")
        if self.temperature <= 0.0:
            raise PassOptionError(f"the temperature must be positive, got {self.temperature}")
        if self.kind != "kl-div" and (self.temperature != 1.0 or self.teacher != "logits"):
            raise PassOptionError(f"temperature and teacher apply to kl-div, not to {self.kind}")
        if self.teacher not in ("logits", "probs"):
            raise PassOptionError(f"the teacher must be 'logits' or 'probs', got '{self.teacher}'")


def add_loss(model: ir.Model, kind: str, *, output: str = "", name: str = "loss", target: str = "",
             label_smoothing: float = 0.0, temperature: float = 1.0,
             teacher: Literal["logits", "probs"] = "logits") -> str:
    """Appends one loss term to ``model`` as a new 0-d output; see the module docstring.

    Example: ``add_loss(model, "cross-entropy", output="logits", label_smoothing=0.1)`` adds an
    int64 input ``labels`` and returns ``"loss"``.

    Returns:
        The name of the loss output.
    """
    term = Loss(kind, output, target=target, label_smoothing=label_smoothing, temperature=temperature, teacher=teacher)
    return add_losses(model, [term], name=name)


def add_losses(model: ir.Model, terms: Sequence[Loss], *, name: str = "loss") -> str:
    """Appends ``sum_i weight_i * term_i`` to ``model`` as a new 0-d output named ``name``.

    The model's types and shapes must be inferred (the outputs' element types and last axes are read).

    Returns:
        The name of the loss output (``name``, made unique when taken).

    Raises:
        PassOptionError: No term, an unknown kind or output, an option out of range, or a default
            input name that the model already uses.
        UnsupportedError: An output is not floating point, or cross-entropy's class axis is not static.
    """
    if not terms:
        raise PassOptionError("no loss term given", f"choose among {', '.join(LOSSES)}")
    for term in terms:
        term.check()
    graph = model.graph
    emit = Emitter(graph, "loss")
    outputs = [_output(graph, term.output) for term in terms]
    several = len({id(v) for v in outputs}) > 1
    total: ir.Value | None = None
    for term, y in zip(terms, outputs):
        target = _target(emit, term, y, several)
        value = _BUILDERS[term.kind](emit, term, y, target)
        if term.weight != 1.0:
            value = emit.op("Mul", value, emit.scalar(term.weight, y.dtype))
        total = value if total is None else emit.op("Add", total, value)
        log.debug("loss term %s on '%s' against '%s' (weight %g)", term.kind, y.name, target.name, term.weight)
    assert total is not None
    total.name = emit.fresh(name)
    total.type, total.shape = ir.TensorType(outputs[0].dtype), ir.Shape([])
    graph.outputs.append(total)
    return total.name


def _output(graph: ir.Graph, name: str) -> ir.Value:
    outputs = {v.name: v for v in graph.outputs}
    if not name:
        if len(graph.outputs) != 1:
            raise PassOptionError(f"the model has {len(outputs)} outputs ({', '.join(outputs)}): which one does the "
                                  "loss read?", "name it with output=NAME")
        value = graph.outputs[0]
    elif name not in outputs:
        raise PassOptionError(f"the model has no output '{name}' for the loss", did_you_mean(name, list(outputs)))
    else:
        value = outputs[name]
    if value.dtype not in _FLOAT_TYPES or value.shape is None or len(value.shape) == 0:
        raise UnsupportedError(f"the loss reads output '{value.name}', which is not a floating-point tensor of "
                               f"known rank >= 1 (type {value.type}, shape {value.shape})", "run infer-shapes first")
    return value


def _target(emit: Emitter, term: Loss, y: ir.Value, several: bool) -> ir.Value:
    """The labels/target/teacher value of ``term``: an existing value when named so, else a new input."""
    dims = dims_of(y)
    assert dims is not None
    dtype = ir.DataType.INT64 if term.kind == "cross-entropy" else y.dtype
    shape = dims[:-1] if term.kind == "cross-entropy" else dims
    if term.target:
        existing = _find_value(emit.graph, term.target)
        if existing is not None:
            if term.kind == "cross-entropy" and existing.dtype not in (ir.DataType.INT64, ir.DataType.INT32):
                raise UnsupportedError(f"the labels '{term.target}' must be int64 or int32, not {existing.dtype}")
            if term.kind != "cross-entropy" and existing.dtype != y.dtype:
                raise UnsupportedError(f"the {term.kind} target '{term.target}' has type {existing.dtype}, the output "
                                       f"'{y.name}' has {y.dtype}")
            return existing
        return emit.input(term.target, dtype, shape)
    base = _DEFAULT_TARGET.get(term.kind, f"teacher_{term.teacher}")
    name = f"{y.name}_{base}" if several else base
    if emit.taken(name):
        raise PassOptionError(f"the model already has a value '{name}': name the {term.kind} input another way",
                              f"give the loss term a target name (target=...), or target='{name}' to use that value")
    return emit.input(name, dtype, shape)


def _find_value(graph: ir.Graph, name: str) -> ir.Value | None:
    for value in graph.inputs:
        if value.name == name:
            return value
    if name in graph.initializers:
        return graph.initializers[name]
    for node in graph:
        for value in node.outputs:
            if value.name == name:
                return value
    return None


def _row_mean(emit: Emitter, per_element: ir.Value) -> ir.Value:
    """``(1/R) * sum over rows of (sum over the last axis)``: a 0-d value."""
    per_row = emit.op("ReduceSum", per_element, emit.ints([-1]), keepdims=0)
    return emit.op("ReduceMean", per_row, keepdims=0)


def _logits(y: ir.Value, kind: str) -> ir.Value:
    """``y``, or the logits under it when ``y`` is a softmax's probabilities (see ``softmax_logits``)."""
    logits = softmax_logits(y)
    if logits is None:
        return y
    log.info("%s reads the logits '%s' under the softmax output '%s'", kind, logits.name, y.name)
    return logits


def _cross_entropy(emit: Emitter, term: Loss, logits: ir.Value, labels: ir.Value) -> ir.Value:
    classes = dims_of(logits)[-1]  # type: ignore[index]
    logits = _logits(logits, "cross-entropy")
    if not isinstance(classes, int):
        raise UnsupportedError(f"cross-entropy needs a static number of classes, '{logits.name}' has last axis "
                               f"'{classes}'", "give the output a static last dimension")
    e = term.label_smoothing
    off, on = e / classes, 1.0 - e + e / classes
    if labels.dtype != ir.DataType.INT64:
        labels = emit.op("Cast", labels, to=ir.DataType.INT64)
    scalars = [emit.const(np.int64(k)) for k in (0, classes, 1)]
    hit = emit.op("Equal", emit.op("Unsqueeze", labels, emit.ints([-1])), emit.op("Range", *scalars))
    target = emit.op("Where", hit, emit.scalar(on, logits.dtype), emit.scalar(off, logits.dtype))
    log_probs = emit.op("LogSoftmax", logits, axis=-1)
    return emit.op("Neg", _row_mean(emit, emit.op("Mul", target, log_probs)))


def _mse(emit: Emitter, term: Loss, y: ir.Value, target: ir.Value) -> ir.Value:
    diff = emit.op("Sub", y, target)
    return emit.op("ReduceMean", emit.op("Mul", diff, diff), keepdims=0)


def _cosine(emit: Emitter, term: Loss, y: ir.Value, target: ir.Value) -> ir.Value:
    def dot(a: ir.Value, b: ir.Value) -> ir.Value:
        return emit.op("ReduceSum", emit.op("Mul", a, b), emit.ints([-1]), keepdims=0)

    norms = emit.op("Sqrt", emit.op("Add", emit.op("Mul", dot(y, y), dot(target, target)),
                                    emit.scalar(_COSINE_EPS, y.dtype)))
    distance = emit.op("Sub", emit.scalar(1.0, y.dtype), emit.op("Div", dot(y, target), norms))
    return emit.op("ReduceMean", distance, keepdims=0)


def _kl_div(emit: Emitter, term: Loss, logits: ir.Value, teacher: ir.Value) -> ir.Value:
    t = term.temperature
    if term.teacher == "probs":
        teacher = emit.op("Log", emit.op("Max", teacher, emit.scalar(_TINY_PROBABILITY, logits.dtype)))

    def soften(z: ir.Value) -> ir.Value:
        return emit.op("LogSoftmax", z if t == 1.0 else emit.op("Div", z, emit.scalar(t, logits.dtype)), axis=-1)

    log_q, log_student = soften(teacher), soften(_logits(logits, "kl-div"))
    kl = _row_mean(emit, emit.op("Mul", emit.op("Exp", log_q), emit.op("Sub", log_q, log_student)))
    return kl if t == 1.0 else emit.op("Mul", kl, emit.scalar(t * t, logits.dtype))


_BUILDERS = {"cross-entropy": _cross_entropy, "mse": _mse, "cosine": _cosine, "kl-div": _kl_div}
