"""Untying parameters that an exporter merged because their values happened to be equal.

The TorchScript exporter (``torch.onnx.export`` in eval mode) deduplicates initializers: when
several parameters hold equal values (zero biases, LayerNorm scales of ones, freshly initialized
weights of the same kind), it keeps one initializer and re-creates each of the others as
``Identity(kept)`` whose output bears the dropped parameter's name. For inference this is exact;
for training it ties parameters that the model trains independently: they would all receive the
sum of their gradients and stay equal forever.

:func:`untie_initializers` undoes that: every Identity node that reads a floating-point
initializer (and is not itself a graph output) is replaced by an initializer of its own, named
as the Identity's output and holding a copy of the value. Parameters shared on purpose (e.g. tied
input/output embeddings) are read directly by several nodes, not through Identity, and stay tied.
"""

from __future__ import annotations

import logging

import onnx_ir as ir

__all__ = ["untie_initializers"]

log = logging.getLogger(__name__)


def untie_initializers(graph: ir.Graph, dtypes: frozenset[ir.DataType]) -> list[str]:
    """Gives every ``Identity(initializer)`` of an element type in ``dtypes`` its own initializer.

    Args:
        graph: The graph to change (only its top level is searched).
        dtypes: Element types of the initializers to untie (the differentiable ones).

    Returns:
        The names of the new initializers, in graph order.
    """
    inputs = set(graph.inputs)
    untied = []
    for node in list(graph):
        if node.op_type != "Identity" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 1:
            continue
        source, out = node.inputs[0], node.outputs[0]
        if (source is None or not source.is_initializer() or source in inputs or source.const_value is None
                or source.dtype not in dtypes or out.is_graph_output() or not out.name):
            continue
        name = out.name
        copy = ir.Value(type=source.type, shape=source.shape,
                        const_value=ir.tensor(source.const_value.numpy().copy(), name=name))
        ir.convenience.replace_all_uses_with(out, copy)
        graph.remove(node, safe=True)
        copy.name = name
        graph.register_initializer(copy)
        untied.append(name)
    if untied:
        log.info("untied %d parameters the exporter had merged: %s", len(untied), ", ".join(untied[:10]))
    return untied
