"""``build-gradients``: turn an inference model into a graph that computes its own gradients.

The result computes, from the data inputs and the parameters, the loss and the gradient of the
loss with respect to every trainable parameter:

- **parameters** are the floating-point initializers selected by ``wrt`` (a regular expression
  searched in the name; all of them by default) minus those matched by ``freeze``. Each becomes
  a graph input, its initializer staying as its initial value (so the graph also runs without
  feeding it); parameters the loss does not depend on stay constants and are listed in the stats;
- **outputs** are the loss (its name unchanged) followed by one gradient per parameter, named
  ``<parameter>_grad``, of the parameter's type and shape. Other outputs and every node they
  alone needed are removed.

The loss is the model's only output, or the output named by ``loss``. With ``seed=scalar`` it
must hold one element; ``seed=ones`` differentiates the sum of its elements instead. The backward
nodes are plain default-domain ONNX at the model's opset (13 or later); see
:mod:`onnxsmith.passes.train.autodiff` for the reverse sweep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import onnx_ir as ir

from onnxsmith.errors import PassOptionError, UnsupportedError, did_you_mean
from onnxsmith.ir.shapes import infer_shapes
from onnxsmith.passes.base import Pass, PassContext, PassResult
from onnxsmith.passes.cleanup.remove_unused import RemoveUnused
from onnxsmith.passes.registry import register_pass
from onnxsmith.passes.train.autodiff import DIFFERENTIABLE_TYPES, differentiate

__all__ = ["BuildGradients", "BuildGradientsOptions", "GRADIENT_SUFFIX", "select_parameters"]

#: Gradient outputs are named ``<parameter><GRADIENT_SUFFIX>``.
GRADIENT_SUFFIX = "_grad"


@dataclass
class BuildGradientsOptions:
    """Options of ``build-gradients``.

    Attributes:
        wrt: Regular expression searched in initializer names: the parameters (all float ones if empty).
        freeze: Regular expression searched in initializer names: parameters to keep constant.
        loss: Name of the output to differentiate (the only output if empty).
        seed: ``scalar`` (the loss holds one element) or ``ones`` (differentiate the sum of its elements).
    """

    wrt: str = ""
    freeze: str = ""
    loss: str = ""
    seed: Literal["scalar", "ones"] = "scalar"


@register_pass
class BuildGradients(Pass):
    """Append reverse-mode gradients: outputs become the loss and the gradients of the parameters."""

    name = "build-gradients"
    Options = BuildGradientsOptions
    provides = frozenset({"shapes"})

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        options: BuildGradientsOptions = self.options
        graph = model.graph
        infer_shapes(model)
        loss = _loss_output(graph, options.loss)
        parameters = select_parameters(graph, options.wrt, options.freeze)
        result = differentiate(graph, parameters, loss, seed=options.seed)
        trained = [(p, g) for p, g in result.gradients.items() if g is not None]
        if not trained:
            raise UnsupportedError(f"the loss '{loss.name}' depends on none of the {len(parameters)} selected parameters",
                                   "check the wrt and freeze options")
        graph.outputs.clear()
        graph.outputs.append(loss)
        for parameter, grad in trained:
            graph.inputs.append(parameter)
            graph.outputs.append(_gradient_output(graph, parameter, grad, result.nodes))
        removed = RemoveUnused().run(model, ctx).stats
        infer_shapes(model)
        constant = sorted(p.name for p, g in result.gradients.items() if g is None)
        return PassResult(True, {
            "parameters": len(trained),
            "constant_parameters": len(constant),
            "backward_nodes": len(set(result.nodes).intersection(graph)),
            "removed_nodes": removed["removed_nodes"],
            **({"without_gradient": ", ".join(constant[:10])} if constant else {}),
        })


def select_parameters(graph: ir.Graph, wrt: str = "", freeze: str = "") -> list[ir.Value]:
    """The floating-point initializers (not graph inputs) whose names match ``wrt`` and not ``freeze``.

    Raises:
        PassOptionError: A pattern is not a valid regular expression, or nothing is selected.
    """
    keep, drop = _pattern("wrt", wrt), _pattern("freeze", freeze)
    inputs = set(graph.inputs)
    selected = [v for name, v in graph.initializers.items()
                if v not in inputs and v.dtype in DIFFERENTIABLE_TYPES
                and (keep is None or keep.search(name)) and not (drop is not None and drop.search(name))]
    if not selected:
        raise PassOptionError("build-gradients selected no parameter: no floating-point initializer matches "
                              f"wrt='{wrt}' and not freeze='{freeze}'", "check the patterns against the initializer names")
    return selected


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
