"""``fold-scales``: store a QDQ model the way integer kernels want it, and drop Q/DQ that buy nothing.

In order, on any model in QDQ form (not only those ``insert-qdq`` made):

1. *Weights*: ``QuantizeLinear(W, s, z)`` of a constant becomes the integer initializer
   ``q = saturate(round(W / s) + z)``; only ``DequantizeLinear(q, s, z)`` remains, and the float
   ``W`` goes once nothing else reads it. Exact: it is the value the QuantizeLinear computed.
2. *Constant scaling*: a linear op (MatMul, Gemm, Conv) whose output is only multiplied or divided
   by a positive constant scalar ``c``, with an input read through its own DequantizeLinear::

       op(DQ(q, s, z), ...) * c  ==  op(DQ(q, s * c, z), ...)      (bias, if any, times c)

   since the op is linear in that input (and in its bias). The scaled scale is a new initializer.
3. *Biases*: a Conv/Gemm reading ``DQ(x; s_x)`` (per tensor) and ``DQ(w; s_w)`` (per tensor or per
   output channel) with a float constant bias ``b`` gets ``DQ(round(b / (s_x * s_w)); s_x * s_w, 0)``
   with an int32 ``b`` -- the form QLinearConv/QGemm take (onnxruntime fuses a QDQ Gemm only when
   every input, the bias included, comes from a DequantizeLinear). Error per output:
   ``s_x * s_w / 2``. A Gemm's ``[1, N]`` bias is stored as ``[N]`` (the same broadcast); a Gemm
   with ``alpha`` or ``beta`` other than 1 keeps its bias float
   (:func:`~onnxsmith.passes.quant.op_roles.is_channel_bias`). A channel whose quantized bias
   would overflow int32 keeps the whole bias float.
4. *Redundant pairs*: ``Q(DQ(q))`` with identical parameters is ``q`` (exact); a
   ``Q -> DQ`` pair whose value enters no integer computation (no reader is a linear op or sits
   in a QDQ group, and the producer is in none -- a Relu/Clip after a QDQ linear op or integer
   element-wise op such as Add is in its group) is removed, restoring the float value.

The error bound is the sum of the bounds of the Q/DQ pairs kept (``scale / 2`` per element) plus
step 3's; step 4 only removes error. The numeric check of the pass manager uses the loose
:data:`~onnxsmith.passes.quant.insert_qdq.QUANT_TOLERANCE`.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.ir.queries import op_key
from onnxsmith.passes.base import Pass, PassContext, PassResult
from onnxsmith.passes.quant.insert_qdq import QUANT_TOLERANCE
from onnxsmith.passes.quant.op_roles import LINEAR_OPS, fused_activation, is_channel_bias
from onnxsmith.passes.quant.qdq_nodes import QDQBuilder, constant_array, read_params, same_params
from onnxsmith.passes.quant.scales import quantize
from onnxsmith.passes.registry import register_pass

__all__ = ["FoldScales"]

_INT32 = (np.iinfo(np.int32).min, np.iinfo(np.int32).max)


@register_pass
class FoldScales(Pass):
    """Store weights and biases as integers, fold constant scaling into scales, drop useless Q/DQ."""

    name = "fold-scales"
    after = ("insert-qdq",)
    preserves = frozenset({"calibration-ranges"})
    tolerance = QUANT_TOLERANCE
    idempotent = True

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        graph = model.graph
        builder = QDQBuilder(graph)
        used_before = {name for name, value in graph.initializers.items() if value.uses()}
        stats = {
            "weights": _fold_weight_quantizers(graph, builder),
            "scalings": _fold_constant_scaling(graph, builder),
            "biases": _quantize_biases(graph, builder),
            "redundant": _remove_redundant_pairs(graph),
        }
        stats["initializers_removed"] = _drop_unused_initializers(graph, used_before)
        modified = any(stats.values())
        return PassResult(modified, stats)


def _remove(graph: ir.Graph, node: ir.Node) -> None:
    graph.remove(node, safe=True)


def _only_use(value: ir.Value) -> ir.Node | None:
    uses = value.uses()
    return uses[0].node if len(uses) == 1 and not value.is_graph_output() else None


def _fold_weight_quantizers(graph: ir.Graph, builder: QDQBuilder) -> int:
    """Step 1: constant QuantizeLinear -> integer initializer."""
    folded = 0
    for node in list(graph):
        if node.op_type != "QuantizeLinear" or node.outputs[0].is_graph_output():
            continue
        weight = constant_array(node.inputs[0])
        params = read_params(node)
        if weight is None or params is None or params.dtype == ir.DataType.INT32:
            continue
        if params.axis is not None:
            params = type(params)(params.scale, params.zero_point, params.dtype, params.axis % weight.ndim)
        integers = builder.initializer(quantize(weight, params), f"{node.inputs[0].name}_quantized")
        node.outputs[0].replace_all_uses_with(integers)
        _remove(graph, node)
        folded += 1
    return folded


def _private_dequantize(node: ir.Node, index: int) -> ir.Node | None:
    """The DequantizeLinear feeding ``node``'s input ``index`` and nothing else."""
    value = node.inputs[index] if index < len(node.inputs) else None
    producer = value.producer() if value is not None else None
    if producer is None or producer.op_type != "DequantizeLinear" or _only_use(value) is not node:
        return None
    return producer


def _positive_scalar(node: ir.Node, linear_out: ir.Value) -> float | None:
    """``c`` when ``node`` is ``linear_out * c`` or ``linear_out / c`` with a positive constant scalar."""
    if op_key(node) not in ("Mul", "Div") or len(node.inputs) != 2:
        return None
    if op_key(node) == "Div" and node.inputs[0] is not linear_out:
        return None
    other = node.inputs[1] if node.inputs[0] is linear_out else node.inputs[0]
    array = constant_array(other)
    if array is None or array.size != 1 or other.dtype != linear_out.dtype:
        return None
    c = float(array.reshape(()))
    c = 1.0 / c if op_key(node) == "Div" and c != 0 else c
    return c if np.isfinite(c) and c > 0 else None


def _fold_constant_scaling(graph: ir.Graph, builder: QDQBuilder) -> int:
    """Step 2: ``linear(DQ(q, s), ...) * c`` -> ``linear(DQ(q, s * c), ...)``."""
    folded = 0
    for node in list(graph):
        role = LINEAR_OPS.get(op_key(node))
        if role is None:
            continue
        out = node.outputs[0]
        scaling = _only_use(out)
        c = _positive_scalar(scaling, out) if scaling is not None else None
        if c is None or scaling is None or scaling.outputs[0].is_graph_output():
            continue
        dq = next((d for i in reversed(role.inputs) if (d := _private_dequantize(node, i)) is not None), None)
        bias = node.inputs[role.bias] if role.bias is not None and role.bias < len(node.inputs) else None
        if dq is None or (bias is not None and not _scale_bias(node, role.bias, c, builder)):
            continue
        scale = constant_array(dq.inputs[1])
        if scale is None:
            continue
        dq.replace_input_with(1, builder.initializer((scale * c).astype(scale.dtype), f"{dq.inputs[1].name}_scaled"))
        scaling.outputs[0].replace_all_uses_with(out)
        out.name, scaling.outputs[0].name = scaling.outputs[0].name, f"{out.name}_unscaled"
        _remove(graph, scaling)
        folded += 1
    return folded


def _scale_bias(node: ir.Node, index: int, c: float, builder: QDQBuilder) -> bool:
    """Multiplies a float constant bias, or an int32 bias's DequantizeLinear scale, by ``c``."""
    bias = node.inputs[index]
    array = constant_array(bias)
    if array is not None:
        node.replace_input_with(index, builder.initializer((array * c).astype(array.dtype), f"{bias.name}_scaled"))
        return True
    dq = _private_dequantize(node, index)
    scale = constant_array(dq.inputs[1]) if dq is not None else None
    if dq is None or scale is None:
        return False
    dq.replace_input_with(1, builder.initializer((scale * c).astype(scale.dtype), f"{dq.inputs[1].name}_scaled"))
    return True


def _quantize_biases(graph: ir.Graph, builder: QDQBuilder) -> int:
    """Step 3: float constant bias of a QDQ Conv/Gemm -> int32 with scale ``s_x * s_w``."""
    done = 0
    for node in list(graph):
        role = LINEAR_OPS.get(op_key(node))
        if role is None or role.bias is None or role.bias >= len(node.inputs) or node.inputs[role.bias] is None:
            continue
        bias_value = node.inputs[role.bias]
        bias = constant_array(bias_value)
        dq_x, dq_w = (_dequantize_of(node, i) for i in role.inputs)
        if bias is None or not is_channel_bias(node, bias.shape) or dq_x is None or dq_w is None:
            continue
        bias = bias.reshape(-1)
        px, pw = read_params(dq_x), read_params(dq_w)
        if px is None or pw is None or px.axis is not None or constant_array(dq_w.inputs[0]) is None:
            continue
        scale = (px.scale.astype(np.float64) * pw.scale.astype(np.float64)).reshape(-1)
        if scale.size not in (1, bias.size):
            continue
        integers = np.round(bias.astype(np.float64) / scale)
        if np.any(integers < _INT32[0]) or np.any(integers > _INT32[1]):
            continue
        params_scale = scale.astype(np.float32)
        q_bias = builder.initializer(integers.astype(np.int32), f"{bias_value.name}_quantized")
        s = builder.initializer(params_scale if scale.size > 1 else params_scale.reshape(()), f"{bias_value.name}_scale")
        zero = builder.initializer(np.zeros(s.shape.dims, np.int32), f"{bias_value.name}_zero_point")
        attributes = [ir.AttrInt64("axis", 0)] if scale.size > 1 else []
        dq = ir.Node(dq_w.domain, "DequantizeLinear", [q_bias, s, zero], attributes=attributes, num_outputs=1,
                     name=builder.fresh(f"{bias_value.name}_DequantizeLinear"))
        dq.outputs[0].name = builder.fresh(f"{bias_value.name}_dequantized")
        dq.outputs[0].type = bias_value.type
        dq.outputs[0].shape = ir.Shape(bias.shape)
        graph.insert_before(node, dq)
        node.replace_input_with(role.bias, dq.outputs[0])
        done += 1
    return done


def _dequantize_of(node: ir.Node, index: int) -> ir.Node | None:
    value = node.inputs[index] if index < len(node.inputs) else None
    producer = value.producer() if value is not None else None
    return producer if producer is not None and producer.op_type == "DequantizeLinear" else None


def _in_qdq_group(node: ir.Node) -> bool:
    """The node computes on integers: a linear op, or its output is quantized right away or after
    the Relu/Clip its integer kernel absorbs."""
    activation = fused_activation(node)
    return op_key(node) in LINEAR_OPS or any(
        use.node.op_type == "QuantizeLinear" for out in (activation or node).outputs for use in out.uses())


def _remove_redundant_pairs(graph: ir.Graph) -> int:
    """Step 4: ``Q(DQ(q))`` with the same parameters, and Q/DQ pairs no integer op reads."""
    removed = 0
    for node in list(graph):
        if node.op_type != "QuantizeLinear" or node.graph is None:
            continue
        source = node.inputs[0].producer() if node.inputs[0] is not None else None
        q_params = read_params(node)
        if q_params is None or node.outputs[0].is_graph_output():
            continue
        if source is not None and source.op_type == "DequantizeLinear":
            dq_params = read_params(source)
            if dq_params is not None and same_params(q_params, dq_params):
                node.outputs[0].replace_all_uses_with(source.inputs[0])
                _remove(graph, node)
                if not source.outputs[0].uses() and not source.outputs[0].is_graph_output():
                    _remove(graph, source)
                removed += 1
                continue
        removed += _remove_idle_pair(graph, node, source)
    return removed


def _reads_dequantized(node: ir.Node) -> bool:
    return any(v is not None and (p := v.producer()) is not None and p.op_type == "DequantizeLinear"
               for v in node.inputs)


def _remove_idle_pair(graph: ir.Graph, q: ir.Node, source: ir.Node | None) -> int:
    dqs = [use.node for use in q.outputs[0].uses()]
    if not dqs or any(d.op_type != "DequantizeLinear" or d.outputs[0].is_graph_output() for d in dqs):
        return 0
    if source is not None and _reads_dequantized(source):
        return 0  # the producer sits in a QDQ group: this Q is its output quantizer
    activation_of = source.inputs[0].producer() if source is not None and source.inputs[0] is not None else None
    if activation_of is not None and fused_activation(activation_of) is source and _reads_dequantized(activation_of):
        return 0  # the Relu/Clip of a QDQ Conv or Add: onnxruntime folds it into this Q, which the kernel needs
    if any(_in_qdq_group(use.node) for d in dqs for use in d.outputs[0].uses()):
        return 0
    for d in dqs:
        d.outputs[0].replace_all_uses_with(q.inputs[0])
        _remove(graph, d)
    _remove(graph, q)
    return 1


def _drop_unused_initializers(graph: ir.Graph, used_before: set[str]) -> int:
    """Removes the initializers this pass left without readers (float weights, replaced scales)."""
    unused = [name for name in used_before if name in graph.initializers and not graph.initializers[name].uses()
              and not graph.initializers[name].is_graph_output() and graph.initializers[name] not in graph.inputs]
    for name in unused:
        graph.initializers.pop(name)
    return len(unused)
