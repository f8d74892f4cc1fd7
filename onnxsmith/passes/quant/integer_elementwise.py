"""Element-wise ops between integer kernels: which Add/Mul the plan runs on integers.

Quantizing an element-wise op buys no speed by itself (../shared/QUANT-NOTES.md), so in general
Add and Mul stay float. The exception is an op that sits *between* integer kernels, such as
ResNet's residual ``Relu(Add(conv2(h), h))`` whose output feeds the next block's Conv. In float
it costs a DequantizeLinear per input and a QuantizeLinear after it, and the float Add reading the
exact ``h`` keeps onnxruntime from removing the Relu that writes ``h``. Planned on integers, its
inputs come from the same QuantizeLinear the Convs read, onnxruntime removes the Relu before the
output QuantizeLinear, and ``DQ, DQ -> Add -> Q`` becomes one com.microsoft QLinearAdd: no Q/DQ
is left on the path.

The rule, for the element-wise ops whose integer kernel the target has
(:func:`~onnxsmith.passes.quant.op_roles.elementwise_ops_for`): such an op runs on integers when

1. every input is *integer data*: the output of a quantized node whose kernel writes integers
   (a Conv, the Relu/Clip fused into one, an element-wise op of this set, a scale-preserving op
   sharing such a value's scale), and
2. its output (after the Relu/Clip fused into it) is read by an integer kernel, so that its
   QuantizeLinear exists anyway, and every other reader reads integers too -- or is an
   element-wise op that fails only this condition: such an op reads all its inputs through
   DequantizeLinear, the next op of the set or not. A graph output, or any other float reader,
   keeps the op float.

Both conditions refer to the set being decided, and both only get harder as the set shrinks, so
the answer is the largest set meeting them: start from every candidate and drop one that fails
until none does. In ResNet's chain of residual blocks the last Add feeds the float
GlobalAveragePool and stays float; every Add before it runs on integers, and the last one reads
its neighbour's output through a DequantizeLinear.

Error bound: the op reads each input quantized (``s_in / 2`` per element, where a float op could
read an exact value) and rounds its output (``s_out / 2``); a fused Relu/Clip is 1-Lipschitz.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import onnx_ir as ir

from onnxsmith.ir.queries import op_key
from onnxsmith.passes.quant.op_roles import (
    FUSABLE_ACTIVATIONS,
    LINEAR_OPS,
    SCALE_PRESERVING_OPS,
    fused_activation,
    writes_integers,
)

__all__ = ["integer_elementwise", "may_run_on_integers"]


def may_run_on_integers(node: ir.Node, linear_ops: Collection[str], elementwise: Collection[ir.Node]) -> bool:
    """Whether every input of ``node`` *could* be integer data, from the graph alone (before ranges).

    Looks through scale-preserving ops and a Relu/Clip to the producing op: one of ``linear_ops``
    writing integers (Conv), or a node of ``elementwise`` (the element-wise nodes before ``node``
    that passed this test). It lets calibration observe only the element-wise ops that
    :func:`integer_elementwise` may choose.
    """
    def source(value: ir.Value | None) -> ir.Node | None:
        producer = value.producer() if value is not None else None
        while producer is not None and op_key(producer) in SCALE_PRESERVING_OPS and producer.inputs:
            producer = producer.inputs[0].producer() if producer.inputs[0] is not None else None
        if producer is not None and op_key(producer) in FUSABLE_ACTIVATIONS and producer.inputs[0] is not None:
            producer = producer.inputs[0].producer()
        return producer

    def integer_op(producer: ir.Node | None) -> bool:
        if producer is None:
            return False
        op = op_key(producer)
        return producer in elementwise or (op in linear_ops and LINEAR_OPS[op].output_quantized)

    return bool(node.inputs) and all(integer_op(source(v)) for v in node.inputs)


class _Decider:
    """The two conditions of the module docstring against the current set ``kept``."""

    def __init__(self, candidates: Sequence[ir.Node], quantized: Collection[ir.Node],
                 shared: Mapping[ir.Value, ir.Value], wanted: Collection[ir.Value]) -> None:
        self.candidates = frozenset(candidates)
        self.kept = set(candidates)
        self.quantized = quantized
        self.shared = shared
        self.wanted = wanted

    def _integer_node(self, node: ir.Node) -> bool:
        return node in self.kept or (node in self.quantized and writes_integers(node))

    def integer_data(self, value: ir.Value) -> bool:
        """Condition 1 for one value."""
        if value in self.shared:
            return True
        producer = value.producer()
        if producer is None:
            return False
        if self._integer_node(producer):
            return fused_activation(producer) is None
        base = producer.inputs[0].producer() if producer.inputs and producer.inputs[0] is not None else None
        return base is not None and self._integer_node(base) and fused_activation(base) is producer

    def input_problem(self, node: ir.Node) -> str:
        """Condition 1."""
        bad = next((v for v in node.inputs if v is not None and not self.integer_data(v)), None)
        return "" if bad is None else f"input '{bad.name}' is not integer data"

    def _reads_integers(self, reader: ir.Node, index: int) -> bool:
        if reader in self.kept:
            return True
        if reader in self.quantized:
            role = LINEAR_OPS.get(op_key(reader))
            return role is None or index in role.inputs
        return op_key(reader) in SCALE_PRESERVING_OPS and index == 0 and reader.outputs[0] in self.wanted

    def output_problem(self, node: ir.Node) -> str:
        """Condition 2."""
        activation = fused_activation(node)
        out = (activation or node).outputs[0]
        if out.is_graph_output():
            return f"its output '{out.name}' is a graph output"
        integer_reader = False
        for use in out.uses():
            if self._reads_integers(use.node, use.idx):
                integer_reader = True
            elif use.node not in self.candidates or self.input_problem(use.node):
                return f"{use.node.op_type} '{use.node.name}' reads its output in float"
        return "" if integer_reader else "no integer kernel reads its output"


def integer_elementwise(candidates: Sequence[ir.Node], quantized: Collection[ir.Node],
                        shared: Mapping[ir.Value, ir.Value],
                        wanted: Collection[ir.Value]) -> tuple[list[ir.Node], dict[ir.Node, str]]:
    """The element-wise ``candidates`` that run on integers (module docstring).

    Args:
        candidates: Element-wise nodes the target has integer kernels for, in graph order.
        quantized: The plan's other integer nodes (linear ops, user includes).
        shared: Output -> input of the scale-preserving ops running on integers.
        wanted: Values the plan quantizes.

    Returns:
        The chosen nodes in graph order, and why each other candidate stays float.
    """
    decider = _Decider(candidates, quantized, shared, wanted)
    reasons: dict[ir.Node, str] = {}
    changed = True
    while changed:
        changed = False
        for node in candidates:
            if node not in decider.kept:
                continue
            problem = decider.input_problem(node) or decider.output_problem(node)
            if problem:
                decider.kept.discard(node)
                reasons[node] = f"not between integer kernels: {problem}"
                changed = True
    return [n for n in candidates if n in decider.kept], reasons
