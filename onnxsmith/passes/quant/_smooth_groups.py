"""Where SmoothQuant can migrate scale: activations, the linear ops reading them, and who absorbs ``1/s``.

A *group* is one float activation ``X`` (channels on its last axis) with the linear ops that read
it as their left operand and hold a constant weight whose rows are indexed by ``X``'s channels:

- ``MatMul(X, W)``, ``W`` a 2-D ``[K, N]`` constant: rows on axis 0;
- ``Gemm(X, B, C?)`` with ``transA = 0``: ``B`` is ``[K, N]`` (axis 0), or ``[N, K]`` with
  ``transB`` (axis 1);
- com.microsoft ``Attention(X, W_qkv, ...)``: the packed ``[K, q + k + v]`` weight, axis 0.

Smoothing multiplies those rows by ``s`` and ``X`` by ``1/s``. The ``1/s`` is *absorbed* exactly
into ``X``'s producer when every reader of ``X`` is in the group (anything else would see the
scaled ``X``):

- ``LayerNormalization`` over the last axis, com.microsoft ``SkipLayerNormalization`` (output 0):
  ``X = n * gamma + beta`` with ``n`` the normalized input, so ``X / s = n * (gamma / s) + beta / s``;
- a linear producer ``X = A @ W (+ b)``: ``MatMul`` (alone, or through an ``Add`` of a ``[K]``
  constant bias that alone reads it) or ``Gemm`` with a per-channel or absent ``C``: column ``k``
  of the weight and ``b[k]`` are divided by ``s[k]``;
- com.microsoft ``Attention`` without past state: its output channel ``k`` is a softmax-weighted sum
  of value channel ``k``, so the value columns of the packed weight and bias absorb ``1/s``.

Otherwise (a graph input, a producer such as Gelu, or a reader outside the group, typically the
residual ``Add`` after a post-norm LayerNorm) the ``1/s`` needs an explicit ``Mul`` before the
group's readers, which costs an element-wise op at run time: only with ``insert_mul``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxsmith.ir.queries import op_key
from onnxsmith.passes.quant.qdq_nodes import constant_array

__all__ = ["Absorber", "Consumer", "ScaledConstant", "SmoothGroup", "consumer_op", "find_groups", "matches"]

_FLOATS = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE})
_ATTENTION = "com.microsoft::Attention"
#: Normalizations ``X = n * gamma + beta``: input indices of gamma and beta.
_NORMS = {"LayerNormalization": (1, 2), "com.microsoft::SkipLayerNormalization": (2, 3)}
#: Short names of the consumer op types (the ``op-types`` option).
_CONSUMER_OPS = {"MatMul": "MatMul", "Gemm": "Gemm", _ATTENTION: "Attention"}


@dataclass(frozen=True)
class ScaledConstant:
    """A constant input of ``node`` whose entries along ``axis`` (those in ``[start, stop)`` of ``span``,
    else all) take a channel factor."""

    node: ir.Node
    index: int
    axis: int
    span: tuple[int, int] | None = None

    def positions(self) -> slice:
        return slice(*self.span) if self.span is not None else slice(None)


@dataclass(frozen=True)
class Consumer:
    """A linear op reading the group's activation; its weight rows are ``weight.axis`` entries."""

    node: ir.Node
    weight: ScaledConstant


@dataclass(frozen=True)
class Absorber:
    """How ``X / s`` is computed: the producer constants that take ``1/s``, or an explicit Mul (no constants)."""

    kind: str
    constants: tuple[ScaledConstant, ...] = ()
    node: ir.Node | None = None

    def describe(self) -> str:
        return "an inserted Mul" if self.kind == "mul" else f"{op_key(self.node)} '{self.node.name}'"


@dataclass
class SmoothGroup:
    """One activation, its channels, the linear ops reading it, and the absorber of ``1/s``."""

    value: ir.Value
    channels: int
    consumers: list[Consumer] = field(default_factory=list)
    absorber: Absorber | None = None


def consumer_op(node: ir.Node) -> str | None:
    """The ``op-types`` name of a node SmoothQuant may smooth (``MatMul``, ``Gemm``, ``Attention``), else None."""
    return _CONSUMER_OPS.get(op_key(node))


def matches(node: ir.Node, patterns: list[str]) -> bool:
    """Whether a pattern is the node's name or op type, or fully matches its name as a regex."""
    for pattern in patterns:
        if pattern in (node.name, node.op_type, op_key(node)):
            return True
        try:
            if node.name and re.fullmatch(pattern, node.name):
                return True
        except re.error:
            continue
    return False


def _float_constant(value: ir.Value | None, rank: int) -> np.ndarray | None:
    array = constant_array(value)
    if array is None or array.ndim != rank or ir.DataType.from_numpy(array.dtype) not in _FLOATS:
        return None
    return array


def _int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return attr.as_int() if attr is not None else default


def _consumer(node: ir.Node) -> Consumer | str:
    """``node`` as a group member, or why it cannot be one."""
    op = consumer_op(node)
    weight = _float_constant(node.inputs[1] if len(node.inputs) > 1 else None, 2)
    if weight is None:
        return "its second operand is not a 2-D float constant"
    if op == "Gemm" and _int_attr(node, "transA", 0):
        return "Gemm with transA"
    axis = 1 if op == "Gemm" and _int_attr(node, "transB", 0) else 0
    if op == "Attention" and len(node.inputs) > 4 and node.inputs[4] is not None:
        return "Attention with past state"
    return Consumer(node, ScaledConstant(node, 1, axis))


def _channel_vector(value: ir.Value | None, channels: int) -> bool:
    """A float constant with ``channels`` entries on its last axis and 1 elsewhere (a per-channel bias)."""
    array = constant_array(value)
    return (array is not None and array.ndim >= 1 and array.size == channels and array.shape[-1] == channels
            and ir.DataType.from_numpy(array.dtype) in _FLOATS)


def _norm_absorber(node: ir.Node, x: ir.Value, channels: int) -> Absorber | None:
    gamma_index, beta_index = _NORMS[op_key(node)]
    if node.outputs[0] is not x or not _channel_vector(node.inputs[gamma_index], channels):
        return None
    if op_key(node) == "LayerNormalization":
        rank = len(x.shape) if x.shape is not None else None
        axis = _int_attr(node, "axis", -1)
        if axis != -1 and (rank is None or axis != rank - 1):
            return None
    constants = [ScaledConstant(node, gamma_index, 0)]
    if len(node.inputs) > beta_index and node.inputs[beta_index] is not None:
        if not _channel_vector(node.inputs[beta_index], channels):
            return None
        constants.append(ScaledConstant(node, beta_index, 0))
    return Absorber("layer-norm", tuple(constants), node)


def _bias_add(add: ir.Node, channels: int) -> tuple[ir.Node, ScaledConstant] | None:
    """``Add(MatMul(A, W), b)`` with a per-channel constant ``b``: the MatMul (read by the Add alone) and ``b``."""
    for index in (0, 1):
        other = add.inputs[1 - index]
        matmul = other.producer() if other is not None else None
        if (_channel_vector(add.inputs[index], channels) and matmul is not None and op_key(matmul) == "MatMul"
                and len(other.uses()) == 1 and not other.is_graph_output()):
            return matmul, ScaledConstant(add, index, constant_array(add.inputs[index]).ndim - 1)
    return None


def _linear_absorber(producer: ir.Node, channels: int) -> Absorber | None:
    """``X = A @ W (+ b)``: MatMul, MatMul + Add of a per-channel bias, or Gemm with a per-channel or no ``C``."""
    linear, constants = producer, []
    if op_key(producer) == "Add":
        found = _bias_add(producer, channels)
        if found is None:
            return None
        linear, bias = found
        constants.append(bias)
    op = op_key(linear)
    weight = _float_constant(linear.inputs[1] if len(linear.inputs) > 1 else None, 2)
    axis = 0 if op == "Gemm" and _int_attr(linear, "transB", 0) else 1
    if weight is None or weight.shape[axis] != channels:
        return None
    constants.append(ScaledConstant(linear, 1, axis))
    if op == "Gemm" and len(linear.inputs) > 2 and linear.inputs[2] is not None:
        if not _channel_vector(linear.inputs[2], channels):
            return None
        constants.append(ScaledConstant(linear, 2, constant_array(linear.inputs[2]).ndim - 1))
    return Absorber("linear", tuple(constants), producer)


def _attention_absorber(node: ir.Node, channels: int) -> Absorber | None:
    """The value columns of a com.microsoft Attention's packed weight and bias (no past state)."""
    if (len(node.inputs) > 4 and node.inputs[4] is not None) or any(o.uses() or o.is_graph_output()
                                                                       for o in node.outputs[1:]):
        return None
    weight = _float_constant(node.inputs[1] if len(node.inputs) > 1 else None, 2)
    if weight is None:
        return None
    sizes = node.attributes.get("qkv_hidden_sizes")
    q, k, v = sizes.as_ints() if sizes is not None else (weight.shape[1] // 3,) * 3
    if v != channels or weight.shape[1] != q + k + v:
        return None
    span = (q + k, q + k + v)
    constants = [ScaledConstant(node, 1, 1, span)]
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        if _float_constant(node.inputs[2], 1) is None:
            return None
        constants.append(ScaledConstant(node, 2, 0, span))
    return Absorber("attention", tuple(constants), node)


def _absorber(x: ir.Value, channels: int) -> Absorber | None:
    """The producer of ``x`` as an absorber of ``1/s`` (module docstring), else None."""
    producer = x.producer()
    if producer is None:
        return None
    op = op_key(producer)
    if op in _NORMS:
        return _norm_absorber(producer, x, channels)
    if op == _ATTENTION and producer.outputs[0] is x:
        return _attention_absorber(producer, channels)
    if op in ("MatMul", "Gemm", "Add"):
        return _linear_absorber(producer, channels)
    return None


def _readers(x: ir.Value) -> list[ir.Node]:
    seen: dict[ir.Node, None] = {}
    for use in x.uses():
        seen[use.node] = None
    return list(seen)


def find_groups(graph: ir.Graph, selected: Callable[[ir.Node], bool], *, insert_mul: bool
                ) -> tuple[list[SmoothGroup], dict[str, str]]:
    """The groups of ``graph`` to smooth, in graph order, and why other activations are not smoothed.

    Args:
        graph: The graph.
        selected: Whether a node of a consumer op type may be smoothed (op types, include, exclude).
        insert_mul: Smooth activations that no producer can absorb with an explicit Mul.

    Returns:
        The groups (each with its absorber), and skip reasons by activation name.
    """
    groups: dict[ir.Value, SmoothGroup] = {}
    skipped: dict[str, str] = {}
    for node in graph:
        if consumer_op(node) is None or not selected(node) or not node.inputs or node.inputs[0] is None:
            continue
        x = node.inputs[0]
        member = _consumer(node)
        if isinstance(member, str):
            skipped.setdefault(x.name, f"'{node.name}': {member}")
            continue
        rows = constant_array(node.inputs[1]).shape[member.weight.axis]
        group = groups.setdefault(x, SmoothGroup(x, rows))
        if rows != group.channels:
            skipped[x.name] = f"its readers disagree on the channel count ({group.channels} and {rows})"
        group.consumers.append(member)
    kept = []
    for x, group in groups.items():
        reason = skipped.get(x.name) or _group_problem(group)
        if reason is None:
            kept.append(group)
            continue
        skipped[x.name] = reason
    for group in kept:
        members = {c.node for c in group.consumers}
        others = [n for n in _readers(group.value) if n not in members]
        absorber = None if others or group.value.is_graph_output() else _absorber(group.value, group.channels)
        if absorber is None and insert_mul:
            absorber = Absorber("mul")
        group.absorber = absorber
        if absorber is None:
            skipped[group.value.name] = (
                f"it also feeds {op_key(others[0])} '{others[0].name}' (insert-mul=true would scale it with a Mul)"
                if others else "it is a graph output" if group.value.is_graph_output() else
                "its producer cannot absorb 1/s (insert-mul=true would scale it with a Mul)")
    return [g for g in kept if g.absorber is not None], skipped


def _group_problem(group: SmoothGroup) -> str | None:
    x = group.value
    if x.dtype not in _FLOATS:
        return f"it is {x.dtype}, not float32/float64"
    last = x.shape[-1] if x.shape is not None and len(x.shape) else None
    if isinstance(last, int) and last != group.channels:
        return f"its last axis has {last} channels, its readers' weights {group.channels} rows"
    return None
