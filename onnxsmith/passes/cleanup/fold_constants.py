"""``fold-constants``: evaluate nodes whose inputs are all constants and store their results.

Semantics: a node ``y = op(c1, ..., cn)`` whose inputs are all constants (initializers that are not
graph inputs, or ``Constant`` outputs) is replaced by an initializer ``y`` holding ``op(c1..cn)``,
computed by exact numpy kernels or by onnxruntime itself (see ``_evaluate``), so outputs are
bit-identical to running the original model in onnxruntime. ``Shape``/``Size`` fold whenever the
dimensions they read are static, whatever the data. Constant inputs (initializers or Constant
nodes) that the folded node was the last user of are removed with it, and the ``Constant`` nodes
still in use at the end become initializers (deferred, so that Constants consumed by folding are
never turned into initializers first).

What is never folded: random ops and Dropout unless it is in inference mode; nodes with
subgraphs (If/Loop/Scan); domains other than ONNX and ``ai.onnx.ml`` (custom ops and model-local
functions); ops listed in ``skip-ops`` (``DequantizeLinear`` by default, so quantized QDQ models
keep their int8 weights); dead nodes (``remove-unused`` drops those).

Size rule (folding must never bloat a model): with ``out`` the bytes of the node's outputs and
``freed`` the bytes of the constant inputs only this node reads, a node folds only if
``out - freed <= max-size``. The sizes come from tensor headers and static output shapes, so a
weight is read only when its node is actually folded; a node whose output size cannot be known
before evaluating is left alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxsmith.ir._fields import node_list
from onnxsmith.passes.base import Pass, PassContext, PassResult
from onnxsmith.passes.cleanup._constants import (
    constant_node_tensor,
    constant_tensor,
    is_default_domain,
    is_nondeterministic,
    tensor_nbytes,
)
from onnxsmith.passes.cleanup._evaluate import EvaluationError, evaluate
from onnxsmith.passes.cleanup._graphs import Discarded, drop_unused_initializers, node_subgraphs
from onnxsmith.passes.cleanup._output_size import output_bytes
from onnxsmith.passes.registry import register_pass

__all__ = ["FoldConstants", "FoldConstantsOptions"]

_FOLDABLE_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


@dataclass
class FoldConstantsOptions:
    """Options of ``fold-constants``.

    Attributes:
        max_size: Most bytes of new constant data one folded node may add (outputs minus the
            constant inputs it frees).
        skip_ops: Op types never folded.
    """

    max_size: int = 1 << 20
    skip_ops: list[str] = field(default_factory=lambda: ["DequantizeLinear"])

    def __post_init__(self) -> None:
        if self.max_size < 0:
            raise ValueError("max-size must be >= 0")


@register_pass
class FoldConstants(Pass):
    """Evaluate nodes whose inputs are all constants and replace them by initializers.

    See the module docstring for what is folded and the size rule.
    """

    name = "fold-constants"
    Options = FoldConstantsOptions
    preserves = frozenset({"shapes", "topologically-sorted"})

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        folder = _Folder(model, self.options, ctx, self.name)
        folder.fold_graph(model.graph)
        stats = {k: v for k, v in folder.stats.items() if v}
        return PassResult(folder.modified, stats)


class _Folder:
    """One run of the pass over a model."""

    def __init__(self, model: ir.Model, options: FoldConstantsOptions, ctx: PassContext, pass_name: str) -> None:
        self.opset_imports = dict(model.opset_imports)
        self.ir_version = model.ir_version
        self.options = options
        self.skip_ops = frozenset(options.skip_ops)
        self.ctx = ctx
        self.pass_name = pass_name
        #: Folded nodes and consumed Constants, removed at the end of each graph's loop.
        self.discarded = Discarded()
        self.stats = {"folded_nodes": 0, "lifted_constants": 0, "net_bytes": 0, "removed_initializers": 0,
                      "removed_constant_nodes": 0, "kept_too_large": 0, "kept_unknown_size": 0,
                      "kept_unevaluable": 0}

    @property
    def modified(self) -> bool:
        return any(self.stats[k] for k in ("folded_nodes", "lifted_constants", "removed_constant_nodes"))

    def fold_graph(self, graph: ir.Graph) -> None:
        for node in node_list(graph):
            if node.attributes.data:  # most nodes have none: skip the call (hot on large graphs)
                for sub in node_subgraphs(node):
                    self.fold_graph(sub)
            if node.op_type != "Constant" and _worth_trying(node) and self._may_fold(node):
                self._try_fold(graph, node)
        self.discarded.remove(graph)
        for node in node_list(graph):
            if node.op_type == "Constant" and is_default_domain(node) and node.graph is graph:
                self._lift_constant(graph, node)
        self.discarded.remove(graph)

    def _imports_for(self, node: ir.Node) -> dict[str, int]:
        """The opset imports a single-node model of ``node`` needs: ONNX and the node's domain."""
        imports = {"": self.opset_imports.get("", self.opset_imports.get("ai.onnx", 1))}
        if not is_default_domain(node) and node.domain in self.opset_imports:
            imports[node.domain] = self.opset_imports[node.domain]
        return imports

    def _explain(self, node: ir.Node, why: str) -> None:
        self.ctx.explain(self.pass_name, f"kept {node.op_type} node '{node.name}': {why}")

    def _may_fold(self, node: ir.Node) -> bool:
        if node.domain not in _FOLDABLE_DOMAINS or node.op_type in self.skip_ops or is_nondeterministic(node):
            return False
        if any(out.type is not None and not isinstance(out.type, ir.TensorType) for out in node.outputs):
            return False  # sequences, optionals: initializers can only hold tensors
        if not any(out.uses() or out.is_graph_output() for out in node.outputs):
            return False  # dead (or no outputs): remove-unused's business
        return not any(attr.is_ref() or attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
                       for attr in node.attributes.data.values())

    def _lift_constant(self, graph: ir.Graph, node: ir.Node) -> None:
        tensor = constant_node_tensor(node)
        if tensor is None or not self._can_store(graph, node):
            return
        if not any(out.uses() or out.is_graph_output() for out in node.outputs):
            return  # dead: remove-unused drops it
        self._store(graph, node, [tensor])
        self.stats["lifted_constants"] += 1

    def _can_store(self, graph: ir.Graph, node: ir.Node) -> bool:
        """Outputs can become initializers of ``graph`` (not outputs of another graph, names free)."""
        return all(
            (not out.is_graph_output() or out.graph is graph) and out.name and out.name not in graph.initializers
            for out in node.outputs
        )

    def _try_fold(self, graph: ir.Graph, node: ir.Node) -> None:
        if node.op_type in ("Shape", "Size") and is_default_domain(node):
            array = _static_shape_result(node)
            if array is not None:
                if self._can_store(graph, node):
                    self._replace(graph, node, [ir.Tensor(array)])
                return
        tensors: list[ir.TensorProtocol | None] = []
        for value in node.inputs:
            tensor = constant_tensor(value)
            if value is not None and tensor is None:
                return  # reads a computed value
            tensors.append(tensor)
        if all(t is None for t in tensors) or not self._can_store(graph, node):
            return
        out_bytes = output_bytes(node, tensors, self._imports_for(node), self.ir_version)
        if out_bytes is None:
            self.stats["kept_unknown_size"] += 1
            self._explain(node, "output size unknown before evaluation")
            return
        operands = _operands(node, tensors)
        freed = self._freed_bytes(node, operands)
        if out_bytes - freed > self.options.max_size:
            self.stats["kept_too_large"] += 1
            self._explain(node, f"would add {out_bytes - freed} bytes (max-size {self.options.max_size})")
            return
        arrays = [None if t is None else t.numpy() for t in tensors]
        try:
            results = evaluate(node, arrays, self._imports_for(node), self.ir_version)
        except EvaluationError as e:
            self.stats["kept_unevaluable"] += 1
            self._explain(node, f"cannot evaluate ({e})")
            return
        if not self._results_fit(node, results, freed):
            return
        self._replace(graph, node, [_to_tensor(a) for a in results], operands)

    def _results_fit(self, node: ir.Node, results: list[np.ndarray], freed: int) -> bool:
        if len(results) != len(node.outputs):
            self.stats["kept_unevaluable"] += 1
            self._explain(node, f"evaluation gave {len(results)} outputs instead of {len(node.outputs)}")
            return False
        for out, array in zip(node.outputs, results):
            if out.dtype is not None and array.dtype != object and ir.DataType.from_numpy(array.dtype) != out.dtype:
                self.stats["kept_unevaluable"] += 1
                self._explain(node, f"evaluation gave {array.dtype} for '{out.name}' declared {out.dtype}")
                return False
        if sum(a.nbytes for a in results) - freed > self.options.max_size:
            self.stats["kept_too_large"] += 1
            self._explain(node, "result larger than announced by its static shape")
            return False
        return True

    def _freed_bytes(self, node: ir.Node, operands: dict[ir.Value, ir.TensorProtocol]) -> int:
        """Bytes of the constant inputs that only this node reads (removed after folding it)."""
        freed = 0
        for value, tensor in operands.items():
            if not value.is_graph_output() and all(u.node is node for u in value.uses()):
                freed += tensor_nbytes(tensor)
        return freed

    def _replace(self, graph: ir.Graph, node: ir.Node, tensors: list[ir.TensorProtocol],
                 operands: dict[ir.Value, ir.TensorProtocol] | None = None) -> None:
        """Replaces a folded node by initializers and drops the constants only it read.

        ``operands`` are the node's constant inputs with their tensors (``_operands``), when known.
        """
        inputs = list(node.inputs)
        if operands is None:
            operands = {value: tensor for value in inputs if (tensor := constant_tensor(value)) is not None}
        self._store(graph, node, tensors)
        self.stats["folded_nodes"] += 1
        self.stats["net_bytes"] += sum(tensor_nbytes(t) for t in tensors)
        for value in drop_unused_initializers(inputs):
            self.stats["removed_initializers"] += 1
            self.stats["net_bytes"] -= tensor_nbytes(value.const_value)  # type: ignore[arg-type]
        for value, tensor in operands.items():
            producer = value.producer()
            if producer is not None and producer.op_type == "Constant" and not value.uses() \
                    and not value.is_graph_output() and producer.graph is not None:
                self.stats["net_bytes"] -= tensor_nbytes(tensor)
                self.discarded.add(producer)
                self.stats["removed_constant_nodes"] += 1

    def _store(self, graph: ir.Graph, node: ir.Node, tensors: list[ir.TensorProtocol]) -> None:
        """Turns the node's outputs into initializers holding ``tensors`` and removes the node."""
        for old, tensor in zip(node.outputs, tensors):
            name = old.name
            assert name is not None
            old.name = None
            tensor.name = name
            new = ir.Value(name=name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(tensor.shape.dims),
                           const_value=tensor)
            graph.register_initializer(new)
            old.replace_all_uses_with(new, replace_graph_outputs=True)
        self.discarded.add(node)


def _operands(node: ir.Node, tensors: list[ir.TensorProtocol | None]) -> dict[ir.Value, ir.TensorProtocol]:
    """Each distinct input of the node with its constant tensor (``tensors``: by input position)."""
    return {value: tensor for value, tensor in zip(node.inputs, tensors) if value is not None}


def _worth_trying(node: ir.Node) -> bool:
    """A cheap first filter: the node is a Shape/Size or reads only constants (or nothing)."""
    if node.op_type in ("Shape", "Size"):
        return True
    for value in node.inputs:  # a loop, not all() over a generator: this runs for every node
        if value is not None and constant_tensor(value) is None:
            return False
    return True


def _static_shape_result(node: ir.Node) -> np.ndarray | None:
    """What Shape/Size returns when the dimensions it reads are static, else None."""
    x = node.inputs[0]
    if x is None or x.shape is None:
        return None
    dims = list(x.shape.dims)
    if node.op_type == "Shape":
        dims = dims[node.attributes.get_int("start", 0):node.attributes.get_int("end", len(dims))]
    if not all(isinstance(d, int) for d in dims):
        return None
    if node.op_type == "Size":
        return np.array(math.prod(dims), dtype=np.int64)
    return np.array(dims, dtype=np.int64)


def _to_tensor(array: np.ndarray) -> ir.TensorProtocol:
    if array.dtype == object or array.dtype.kind in "SU":
        return ir.StringTensor(np.array([s.encode() if isinstance(s, str) else s for s in array.reshape(-1)],
                                        dtype=object).reshape(array.shape))
    # Not np.ascontiguousarray: it turns a 0-d array into a 1-d one.
    return ir.Tensor(array if array.flags.c_contiguous else array.copy(order="C"))
