"""One run-time quantization per activation: readers of the same float value share its ``DynamicQuantizeLinear``.

``DynamicQuantizeLinear(A)`` is a function of ``A`` alone (its own range, uint8, asymmetric), so
every integer MatMul that reads ``A`` can read the same ``(A_q, s_a, zp_a)``. In a transformer the
query, key and value projections read one activation: quantized once instead of three times,
as ``onnxruntime.quantization``'s models do after onnxruntime's fusions (MiniLM: 6 shared
``DynamicQuantizeLinear`` feeding 18 ``MatMulIntegerToFloat``, instead of 36 self-quantizing
``DynamicQuantizeMatMul``).

Two rewrites, both exact (the shared node computes what each duplicate computed):

- duplicate ``DynamicQuantizeLinear`` nodes of one value are merged into the first (the standard
  ``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul`` form emits one per MatMul);
- where a value is read by ``com.microsoft::DynamicQuantizeMatMul`` and by at least one other
  integer reader (another such node, or a ``DynamicQuantizeLinear`` of it already there), each
  ``DynamicQuantizeMatMul(A, W_q, s_w, zp_w?, b?)`` becomes
  ``MatMulIntegerToFloat(A_q, W_q, s_a, s_w, zp_a, zp_w?, b?)`` on one shared
  ``DynamicQuantizeLinear(A)``. ``MatMulIntegerToFloat``'s contract: ``A`` and ``B`` 8-bit
  (uint8 ``A_q`` here, the weight's own type), ``a_scale`` a scalar, ``b_scale`` and
  ``b_zero_point`` scalars or ``[N]`` per column, ``bias`` ``[N]``; ``Y = (A - zp_a) s_a @
  (B - zp_w) s_w + bias``, exactly ``DynamicQuantizeMatMul``'s product. A value with one reader
  keeps its ``DynamicQuantizeMatMul`` (onnxruntime fuses the pair back into it anyway).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import onnx_ir as ir

from onnxsmith.ir.names import GraphNames
from onnxsmith.ir.queries import all_graphs

__all__ = ["share_activation_quantization"]

MS_DOMAIN = "com.microsoft"


def _is(node: ir.Node, op_type: str, domain: str = "") -> bool:
    return node.op_type == op_type and node.domain in ((domain, "ai.onnx") if domain == "" else (domain,))


def _readers(graph: ir.Graph) -> dict[ir.Value, tuple[list[ir.Node], list[ir.Node]]]:
    """Per float value: its ``DynamicQuantizeLinear`` nodes and its ``DynamicQuantizeMatMul`` readers, in graph order."""
    found: dict[ir.Value, tuple[list[ir.Node], list[ir.Node]]] = defaultdict(lambda: ([], []))
    for node in graph:
        if not node.inputs or node.inputs[0] is None:
            continue
        if _is(node, "DynamicQuantizeLinear"):
            found[node.inputs[0]][0].append(node)
        elif _is(node, "DynamicQuantizeMatMul", MS_DOMAIN):
            found[node.inputs[0]][1].append(node)
    return found


def _merge(keep: ir.Node, duplicate: ir.Node, graph: ir.Graph) -> bool:
    """Points every use of ``duplicate``'s outputs at ``keep``'s and removes ``duplicate``; False (and
    nothing changed) when one of them is a graph output, whose name is part of the interface."""
    if any(old.is_graph_output() for old in duplicate.outputs):
        return False
    for old, new in zip(duplicate.outputs, keep.outputs, strict=True):
        old.replace_all_uses_with(new)
    graph.remove(duplicate, safe=True)
    return True


def _quantize_node(value: ir.Value, name: str, names: GraphNames) -> ir.Node:
    """``DynamicQuantizeLinear(value)`` with typed outputs ``(A_q uint8, s_a float, zp_a uint8)`` named
    after ``name`` where those names are free (a weight quantized beside it may hold them)."""
    node = ir.Node("", "DynamicQuantizeLinear", [value], num_outputs=3, name=names.fresh(f"{name}_quantize_input"))
    a_q, a_scale, a_zero = node.outputs
    for output, suffix, dtype in ((a_q, "quantized", ir.DataType.UINT8), (a_scale, "scale", ir.DataType.FLOAT),
                                  (a_zero, "zero_point", ir.DataType.UINT8)):
        output.name = names.fresh(f"{name}_{suffix}")
        output.dtype = dtype
    a_q.shape = value.shape
    a_scale.shape = a_zero.shape = ir.Shape([])
    return node


def _to_integer_to_float(node: ir.Node, quantized: ir.Node, graph: ir.Graph) -> None:
    """Replaces ``DynamicQuantizeMatMul(A, W_q, s_w, zp_w?, b?)`` by ``MatMulIntegerToFloat`` on ``quantized``'s outputs."""
    _, w_q, w_scale, *rest = node.inputs
    w_zero = rest[0] if rest else None
    bias = rest[1] if len(rest) > 1 else None
    a_q, a_scale, a_zero = quantized.outputs
    inputs = [a_q, w_q, a_scale, w_scale, a_zero, w_zero, bias]
    while inputs[-1] is None:
        inputs.pop()
    replacement = ir.Node(MS_DOMAIN, "MatMulIntegerToFloat", inputs, name=node.name, num_outputs=1)
    graph.insert_before(node, replacement)
    out, new = node.outputs[0], replacement.outputs[0]
    name, out.name = out.name, None
    new.name, new.type, new.shape = name, out.type, out.shape
    out.replace_all_uses_with(new, replace_graph_outputs=True)
    graph.remove(node, safe=True)


def _share(graph: ir.Graph, fused: bool, names: Callable[[], GraphNames]) -> int:
    rewrites = 0
    for value, (quantizers, matmuls) in _readers(graph).items():
        rewrites += sum(_merge(quantizers[0], duplicate, graph) for duplicate in quantizers[1:])
        if not fused or not matmuls or len(matmuls) + bool(quantizers) < 2:
            continue
        shared = quantizers[0] if quantizers else None
        if shared is None or graph.index(shared) > graph.index(matmuls[0]):
            created = _quantize_node(value, value.name or matmuls[0].name or "activation", names())
            graph.insert_before(matmuls[0], created)
            if shared is not None:
                _merge(created, shared, graph)
            shared = created
        for matmul in matmuls:
            _to_integer_to_float(matmul, shared, graph)
            rewrites += 1
    return rewrites


def share_activation_quantization(model: ir.Model, *, fused: bool) -> int:
    """Shares each activation's run-time quantization among its integer readers (see the module docstring).

    Args:
        model: The model, changed in place.
        fused: The target runs ``com.microsoft::MatMulIntegerToFloat``: ``DynamicQuantizeMatMul`` readers
            of a shared value are split into a shared ``DynamicQuantizeLinear`` and one of those each.
            Without it only duplicate ``DynamicQuantizeLinear`` nodes are merged.

    Returns:
        The number of nodes merged or replaced.
    """
    taken: list[GraphNames] = []  # the model's names (subgraphs included), collected when first needed

    def names() -> GraphNames:
        if not taken:
            taken.append(GraphNames(model.graph))
        return taken[0]

    return sum(_share(graph, fused, names) for graph in list(all_graphs(model)))
