"""``build-gradients``: turn an inference model into a training graph.

The result computes, from the data inputs and the parameters, the loss and either the gradient
of the loss with respect to every trainable parameter, or one optimizer step:

- **loss**: the model's only output, or the output named by ``loss``. With ``seed=scalar`` it
  must hold one element; ``seed=ones`` differentiates the sum of its elements instead. With
  ``loss-fn`` the loss is appended first (:mod:`~onnxsmith.passes.train.losses`): one or more
  terms (``cross-entropy``, ``mse``, ``cosine``, ``kl-div``, weighted by ``loss-weights``) over the
  model output named by ``output``, with ``label-smoothing`` (cross-entropy), ``temperature`` and
  ``teacher=logits|probs`` (kl-div); the labels/target/teacher become new inputs;
- **parameters** are the floating-point initializers selected by ``wrt`` (a regular expression
  searched in the name; by default all of them but the 0-d ones) minus those matched by ``freeze``.
  In exported graphs 0-d initializers are the constants of decomposed ops (epsilon, ``1/N`` of a
  mean, ``-inf``, ``0.5``); training them breaks the model (magika's LayerNorm ``1/N`` got a
  gradient of 412), so they are parameters only when ``wrt`` names them, ``scalars=true``, or
  they are the scale of a QuantizeLinear/DequantizeLinear (trained with ``quant-scales=lsq``). Each becomes
  a graph input, its initializer staying as its initial value (so the graph also runs without
  feeding it); parameters the loss does not depend on stay constants and are listed in the stats;
- **gradients only** (without ``optimizer``, or ``gradients-only=true``): the outputs are the
  loss (its name unchanged) followed by one gradient per parameter, named ``<parameter>_grad``;
- **optimizer step** (``optimizer=sgd|adamw``, :mod:`~onnxsmith.passes.train.optimizers`): the
  inputs are the data, the labels/targets, the parameters, the optimizer state (``<p>_momentum``,
  or ``<p>_m`` and ``<p>_v``; feed zeros at the first step), ``lr`` and, for AdamW, ``step``
  (updates done before this one); the outputs are the loss, the updated parameters and the
  updated state, each named ``<input>_new``. Options: ``momentum``, ``nesterov`` (SGD),
  ``beta1``, ``beta2``, ``eps`` (AdamW) and ``weight-decay`` (L2 for SGD, default 0; decoupled
  for AdamW, default 0.01). ``clip-norm=c`` first scales every gradient by
  ``min(1, c / (||g|| + 1e-6))``, ``||g||`` the global L2 norm over all of them (torch's
  ``clip_grad_norm_``).

**Tied initializers**: the TorchScript exporter merges parameters of equal value (zero biases,
LayerNorm scales of ones) into one initializer read through Identity nodes, which training would
tie together. By default (``untie=true``) each such Identity becomes an initializer of its own,
named as its output, before parameters are selected (:mod:`~onnxsmith.passes.train.untie`);
``untie=false`` keeps the ties (one parameter receiving the sum of the gradients).

**GELU**: a decomposed exact or tanh GELU (``x * 0.5 * (1 + Erf(x / sqrt(2)))`` and the exporters'
variants) is differentiated primitive by primitive unless fused first: by default
(``fuse-gelu=true``) the ``gelu`` fusion family (ONNX Gelu, opset 20 or later) or, below opset
20, the ``contrib-gelu`` family (onnxruntime's ``com.microsoft.Gelu``, float32) runs before
differentiating, so the forward is one kernel and the backward one short formula. Both kernels
evaluate erf with onnxruntime's own approximation, a few float32 ulps from the Erf chain;
``fuse-gelu=false`` keeps the chain.

Other outputs and every node they alone needed are removed. ``quant-scales=lsq`` trains the scales
of QuantizeLinear/DequantizeLinear pairs (LSQ; ``lsq-grad-scale`` adds its gradient scale),
see :mod:`~onnxsmith.passes.train.gradients.quantize`. The model's metadata entry
``onnxsmith.training`` records, as JSON, the loss, the parameters, the state inputs with their
parameters and which output feeds which input at the next step. The backward nodes are plain
default-domain ONNX at the model's opset (13 or later); see :mod:`onnxsmith.passes.train.autodiff`
for the reverse sweep.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

import onnx_ir as ir

from onnxsmith.errors import PassOptionError, UnsupportedError, did_you_mean
from onnxsmith.ir.shapes import infer_shapes
from onnxsmith.passes.base import Pass, PassContext, PassResult
from onnxsmith.passes.cleanup.remove_unused import RemoveUnused
from onnxsmith.passes.fusion import contrib_gelu, gelu
from onnxsmith.passes.registry import register_pass
from onnxsmith.passes.rewrite import apply_rules
from onnxsmith.passes.train.autodiff import DIFFERENTIABLE_TYPES, differentiate
from onnxsmith.passes.train.context import RuleOptions
from onnxsmith.passes.train.losses import Loss, add_losses
from onnxsmith.passes.train.optimizers import SGD, AdamW, Optimizer, append_optimizer, clip_by_global_norm
from onnxsmith.passes.train.untie import untie_initializers

__all__ = ["BuildGradients", "BuildGradientsOptions", "GRADIENT_SUFFIX", "METADATA_KEY", "select_parameters"]

#: Gradient outputs are named ``<parameter><GRADIENT_SUFFIX>``.
GRADIENT_SUFFIX = "_grad"

#: The model metadata entry describing the training graph (JSON).
METADATA_KEY = "onnxsmith.training"


@dataclass
class BuildGradientsOptions:
    """Options of ``build-gradients`` (see the module docstring).

    Attributes:
        wrt: Regular expression searched in initializer names: the parameters (all float ones if empty).
        freeze: Regular expression searched in initializer names: parameters to keep constant.
        loss: Name of the output to differentiate (the only output if empty).
        seed: ``scalar`` (the loss holds one element) or ``ones`` (differentiate the sum of its elements).
        loss_fn: Loss terms to append (``cross-entropy``, ``mse``, ``cosine``, ``kl-div``).
        loss_weights: One weight per term of ``loss_fn`` (all 1 if empty).
        output: The model output the loss terms read (the only output if empty).
        label_smoothing: Label smoothing of cross-entropy.
        temperature: Temperature of kl-div.
        teacher: What kl-div's teacher input holds: ``logits`` or ``probs``.
        optimizer: ``sgd`` or ``adamw``: append one update step; empty: output the gradients.
        gradients_only: Output the gradients (the behaviour without ``optimizer``), stated explicitly.
        momentum: SGD momentum.
        nesterov: SGD Nesterov momentum.
        weight_decay: SGD L2 penalty (default 0) or AdamW decoupled decay (default 0.01).
        beta1: AdamW first-moment decay.
        beta2: AdamW second-moment decay.
        eps: AdamW denominator term.
        clip_norm: Scale the gradients to this global L2 norm when they exceed it (0: no clipping).
        quant_scales: ``frozen`` or ``lsq``: whether fake-quantization scales are trained.
        lsq_grad_scale: Scale LSQ gradients by ``1 / sqrt(N * qmax)``.
        fuse_gelu: Fuse decomposed GELU into one Gelu node before differentiating.
        untie: Give every initializer read through an Identity node (an exporter's merge of
            equal-valued parameters) its own copy, so they train independently.
        scalars: Train 0-d initializers too, without naming them in ``wrt``.
    """

    wrt: str = ""
    freeze: str = ""
    loss: str = ""
    seed: Literal["scalar", "ones"] = "scalar"
    loss_fn: list[str] = field(default_factory=list)
    loss_weights: list[float] = field(default_factory=list)
    output: str = ""
    label_smoothing: float = 0.0
    temperature: float = 1.0
    teacher: Literal["logits", "probs"] = "logits"
    optimizer: Literal["", "sgd", "adamw"] = ""
    gradients_only: bool = False
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float | None = None
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    clip_norm: float = 0.0
    quant_scales: Literal["frozen", "lsq"] = "frozen"
    lsq_grad_scale: bool = False
    fuse_gelu: bool = True
    untie: bool = True
    scalars: bool = False

    def __post_init__(self) -> None:
        self._require(bool(self.loss_fn), "loss-fn", output="", loss_weights=[], label_smoothing=0.0,
                      temperature=1.0, teacher="logits")
        if self.loss_fn and self.loss:
            raise PassOptionError("build-gradients: give either loss (an existing output) or loss-fn (a new one)")
        if self.loss_weights and len(self.loss_weights) != len(self.loss_fn):
            raise PassOptionError(f"build-gradients: {len(self.loss_weights)} loss-weights for "
                                  f"{len(self.loss_fn)} loss-fn terms")
        self._require("cross-entropy" in self.loss_fn, "loss-fn=cross-entropy", label_smoothing=0.0)
        self._require("kl-div" in self.loss_fn, "loss-fn=kl-div", temperature=1.0, teacher="logits")
        if self.gradients_only and self.optimizer:
            raise PassOptionError(f"build-gradients: gradients-only=true and optimizer={self.optimizer} contradict")
        self._require(self.optimizer == "sgd", "optimizer=sgd", momentum=0.0, nesterov=False)
        self._require(self.optimizer == "adamw", "optimizer=adamw", beta1=0.9, beta2=0.999, eps=1e-8)
        self._require(bool(self.optimizer), "an optimizer", weight_decay=None, clip_norm=0.0)
        if self.clip_norm < 0.0:
            raise PassOptionError(f"build-gradients: clip-norm must be >= 0, got {self.clip_norm}")
        self._require(self.quant_scales == "lsq", "quant-scales=lsq", lsq_grad_scale=False)
        for term in self.loss_terms():
            term.check()
        self.optimizer_step()  # checks the optimizer's own ranges

    def _require(self, condition: bool, what: str, **defaults: object) -> None:
        """Options in ``defaults`` may differ from their default only when ``condition`` holds."""
        if condition:
            return
        for name, default in defaults.items():
            if getattr(self, name) != default:
                raise PassOptionError(f"build-gradients: option '{name.replace('_', '-')}' needs {what}")

    def loss_terms(self) -> list[Loss]:
        """The terms of ``loss-fn``, with their weights and the options of their kind."""
        weights = self.loss_weights or [1.0] * len(self.loss_fn)
        return [Loss(kind, self.output, weight,
                     label_smoothing=self.label_smoothing if kind == "cross-entropy" else 0.0,
                     temperature=self.temperature if kind == "kl-div" else 1.0,
                     teacher=self.teacher if kind == "kl-div" else "logits")
                for kind, weight in zip(self.loss_fn, weights)]

    def optimizer_step(self) -> Optimizer | None:
        """The optimizer, or None for gradient outputs."""
        if self.optimizer == "sgd":
            return SGD(self.momentum, self.weight_decay or 0.0, self.nesterov)
        if self.optimizer == "adamw":
            decay = self.weight_decay if self.weight_decay is not None else AdamW.weight_decay
            return AdamW(self.beta1, self.beta2, self.eps, decay)
        return None


@register_pass
class BuildGradients(Pass):
    """Append reverse-mode gradients: outputs become the loss and the gradients of the parameters."""

    name = "build-gradients"
    Options = BuildGradientsOptions
    builds_new_program = True
    provides = frozenset({"shapes"})

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        options: BuildGradientsOptions = self.options
        graph = model.graph
        untied = untie_initializers(graph, DIFFERENTIABLE_TYPES) if options.untie else []
        infer_shapes(model)  # the GELU rules match on element types, which a fresh export may not carry
        gelus = _fuse_gelu(model) if options.fuse_gelu else 0
        if gelus:
            infer_shapes(model)
        if options.loss_fn:
            loss_name = add_losses(model, options.loss_terms())
            infer_shapes(model)
            loss = _loss_output(graph, loss_name)
        else:
            loss = _loss_output(graph, options.loss)
        parameters = select_parameters(graph, options.wrt, options.freeze, scalars=options.scalars)
        rule_options = RuleOptions(options.quant_scales, options.lsq_grad_scale)
        result = differentiate(graph, parameters, loss, seed=options.seed, options=rule_options)
        trained = [(p, g) for p, g in result.gradients.items() if g is not None]
        if not trained:
            raise UnsupportedError(f"the loss '{loss.name}' depends on none of the {len(parameters)} selected parameters",
                                   "check the wrt and freeze options")
        graph.outputs.clear()
        graph.outputs.append(loss)
        graph.inputs.extend(p for p, _ in trained)
        optimizer = options.optimizer_step()
        if optimizer is None:
            description = _gradient_outputs(graph, trained, result.nodes)
        else:
            if options.clip_norm:
                trained = clip_by_global_norm(graph, trained, options.clip_norm)
            description = _optimizer_outputs(graph, trained, optimizer)
        removed = RemoveUnused().run(model, ctx).stats
        infer_shapes(model)
        model.metadata_props[METADATA_KEY] = json.dumps({"loss": loss.name, **description})
        constant = sorted(p.name for p, g in result.gradients.items() if g is None)
        return PassResult(True, {
            "parameters": len(trained),
            "constant_parameters": len(constant),
            "backward_nodes": len(set(result.nodes).intersection(graph)),
            "removed_nodes": removed["removed_nodes"],
            **({"optimizer": optimizer.name} if optimizer is not None else {}),
            **({"untied": len(untied)} if untied else {}),
            **({"fused_gelu": gelus} if gelus else {}),
            **({"without_gradient": ", ".join(constant[:10])} if constant else {}),
        })


def _fuse_gelu(model: ir.Model) -> int:
    """Fuses decomposed GELUs (ONNX Gelu from opset 20, else com.microsoft.Gelu); returns how many."""
    return sum(apply_rules(model, [*gelu.RULES, *contrib_gelu.RULES]).applied.values())  # gelu declines below 20


def _gradient_outputs(graph: ir.Graph, trained: list[tuple[ir.Value, ir.Value]], backward: list[ir.Node]
                      ) -> dict[str, object]:
    """Makes the gradients outputs; returns their description for the metadata."""
    gradients = {}
    for parameter, grad in trained:
        output = _gradient_output(graph, parameter, grad, backward)
        graph.outputs.append(output)
        gradients[parameter.name] = output.name
    return {"parameters": list(gradients), "gradients": gradients}


def _optimizer_outputs(graph: ir.Graph, trained: list[tuple[ir.Value, ir.Value]], optimizer: Optimizer
                       ) -> dict[str, object]:
    """Appends the optimizer step and makes the updated values outputs; returns their description."""
    step = append_optimizer(graph, optimizer, trained)
    for value in [*(p for p, _ in trained), *step.state]:
        graph.outputs.append(step.updates[value])
    return {"parameters": [p.name for p, _ in trained], "optimizer": optimizer.name,
            "state": {v.name: p.name for v, p in step.state.items()}, "lr": step.lr.name,
            **({"step": step.step.name} if step.step is not None else {}),
            "updates": {old.name: new.name for old, new in step.updates.items()}}


def select_parameters(graph: ir.Graph, wrt: str = "", freeze: str = "", *, scalars: bool = False) -> list[ir.Value]:
    """The floating-point initializers (not graph inputs) whose names match ``wrt`` and not ``freeze``;
    0-d ones only when ``wrt`` is given or ``scalars`` (see the module docstring).

    Raises:
        PassOptionError: A pattern is not a valid regular expression, or nothing is selected.
    """
    keep, drop = _pattern("wrt", wrt), _pattern("freeze", freeze)
    inputs = set(graph.inputs)
    selected = [v for name, v in graph.initializers.items()
                if v not in inputs and v.dtype in DIFFERENTIABLE_TYPES
                and (keep is not None or scalars or not _scalar_constant(v))
                and (keep is None or keep.search(name)) and not (drop is not None and drop.search(name))]
    if not selected:
        raise PassOptionError("build-gradients selected no parameter: no floating-point initializer of rank >= 1 "
                              f"matches wrt='{wrt}' and not freeze='{freeze}'",
                              "check the patterns against the initializer names (scalars=true trains 0-d ones)")
    return selected


def _scalar_constant(value: ir.Value) -> bool:
    """Whether ``value`` is 0-d and not the scale of a fake quantizer (which ``quant-scales=lsq`` trains)."""
    if value.shape is None or len(value.shape) != 0:
        return False
    return not any(node.op_type in ("QuantizeLinear", "DequantizeLinear") and index == 1
                   for node, index in value.uses())


def _pattern(option: str, text: str) -> re.Pattern[str] | None:
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as e:
        raise PassOptionError(f"option '{option}' of pass 'build-gradients' is not a regular expression: {e}") from e


def _loss_output(graph: ir.Graph, name: str) -> ir.Value:
    outputs = {v.name: v for v in graph.outputs}
    if name:
        if name not in outputs:
            raise PassOptionError(f"the model has no output '{name}' to differentiate", did_you_mean(name, list(outputs)))
        return outputs[name]
    if len(graph.outputs) != 1:
        raise PassOptionError(f"the model has {len(graph.outputs)} outputs ({', '.join(outputs)}): which is the loss?",
                              "name it with build-gradients{loss=NAME}")
    return graph.outputs[0]


def _gradient_output(graph: ir.Graph, parameter: ir.Value, grad: ir.Value, backward: list[ir.Node]) -> ir.Value:
    """``grad`` named ``<parameter>_grad``, through an Identity when the value cannot be renamed."""
    name = parameter.name + GRADIENT_SUFFIX
    renamable = grad.producer() in backward and not grad.is_graph_output()
    if not renamable:
        node = ir.Node("", "Identity", [grad], name=f"{name}_identity")
        graph.append(node)
        grad = node.outputs[0]
    grad.name = name
    grad.type = parameter.type
    grad.shape = parameter.shape
    return grad
