"""``lower-qoperator``: QDQ groups rewritten as explicit integer (QOperator) ops, for the cpu target.

In QDQ form an op computes in float between DequantizeLinear on its inputs and QuantizeLinear on
its output; each group below has an integer op with the same meaning (``DQ(q) = (q - zp) * s``,
``Q(x) = saturate(round(x / s) + zp)``)::

    Q(Conv(DQ(x), DQ(w), DQ(b)?))  -> QLinearConv(x, s_x, zp_x, w, s_w, zp_w, s_y, zp_y, b?)
    Q(MatMul(DQ(a), DQ(b)))        -> QLinearMatMul(a, s_a, zp_a, b, s_b, zp_b, s_y, zp_y)
    Q(Add(DQ(a), DQ(b)))           -> com.microsoft QLinearAdd(a, s_a, zp_a, b, s_b, zp_b, s_y, zp_y)
    Q(Mul(DQ(a), DQ(b)))           -> com.microsoft QLinearMul(...)
    Q(op(DQ(x), ...), s, zp)       -> op(x, ...)     op in MaxPool, Reshape, Transpose, same s and zp

Activation scales and zero points must be per tensor (scalar or ``[1]`` constants); weights may
be per output channel (Conv ``w`` along axis 0, MatMul ``b`` along its columns). A Conv bias must
already be int32 with scale ``s_x * s_w`` and zero point 0 (``fold-scales`` stores it so).
A missing zero point is a zero of the quantized type. The float op's output must feed only the
QuantizeLinear; a DequantizeLinear shared with other consumers stays for them.

Error: the pass-through ops are exact (max, reshape and transpose commute with the monotone
per-tensor DQ and Q). The integer kernels accumulate exactly in int32 and requantize once, where
the QDQ graph accumulates in float32 and rounds: each lowered node's integer output equals the
QDQ node's or differs by one step (``s_y``) where float rounding lands near a rounding boundary;
a step in an inner layer then propagates through the rest of the network like any other
perturbation of that size. ``tolerance`` is a typical-case figure for unit-scale data; the tests
check the one-step bound node by node.

Only the ``cpu`` target runs these ops (``QuantConstraints.formats`` lists ``qoperator``); on other
targets the pass fails with a one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxsmith.codegen.targets import target_of
from onnxsmith.errors import UnsupportedError
from onnxsmith.passes.base import PassContext, PassResult, Tolerance
from onnxsmith.passes.quant._apply import apply_traced
from onnxsmith.passes.registry import register_pass
from onnxsmith.passes.rewrite import (
    Const,
    Decline,
    Match,
    Op,
    Opt,
    Replacement,
    RewriteOptions,
    RewritePass,
    RewriterContext,
    Rule,
    RuleSet,
    Var,
    rule,
)
from onnxsmith.passes.rewrite import ShapePolicy as S

__all__ = ["LowerQOperator"]

MS_DOMAIN = "com.microsoft"
_INT8_TYPES = frozenset({ir.DataType.INT8, ir.DataType.UINT8})


def _dq(name: str, *, per_channel: bool = False, dtype: frozenset[ir.DataType] | None = None) -> Op:
    """``DequantizeLinear(<name>, <name>_scale, <name>_zero?)``, per tensor unless ``per_channel``."""
    policy = S.ANY if per_channel else S.SCALAR_LIKE
    return Op("DequantizeLinear", Var(name, dtype=dtype), Const(f"{name}_scale", shape=policy),
              Opt(Const(f"{name}_zero", shape=policy)), _name=f"{name}_dq")


def _q(inner: Op) -> Op:
    """``QuantizeLinear(inner, y_scale, y_zero?)`` per tensor: the root of every rule."""
    return Op("QuantizeLinear", inner, Const("y_scale", shape=S.SCALAR_LIKE), Opt(Const("y_zero", shape=S.SCALAR_LIKE)),
              _name="q")


def _input_dtype(m: Match, name: str) -> ir.DataType | None:
    """The integer type of DQ input ``name``: its own, else its zero point's (intermediate types may
    not be inferred)."""
    zero = m[f"{name}_zero"]
    return m[name].dtype or (zero.dtype if zero is not None else None)


def _output_dtype(m: Match) -> ir.DataType:
    """The QuantizeLinear's integer type: its zero point's, its output's, ``output_dtype``, else uint8."""
    zero = m["y_zero"]
    known = (zero.dtype if zero is not None else None) or m.root.outputs[0].dtype
    if known is not None:
        return known
    declared = m.attr("q", "output_dtype", 0)
    return ir.DataType(declared) if declared else ir.DataType.UINT8


def _zero(op: RewriterContext, m: Match, name: str, dtype: ir.DataType) -> ir.Value:
    """The captured zero point ``name``, or a new zero of ``dtype`` (DQ/Q's default)."""
    value = m[name]
    return value if value is not None else op.initializer(np.zeros((), dtype.numpy()), name)


def _types_reason(m: Match, *names: str) -> Decline | None:
    """The DQ inputs ``names`` and the Q output must be 8-bit integers of known type."""
    for name, dtype in [*((n, _input_dtype(m, n)) for n in names), ("the output", _output_dtype(m))]:
        if dtype is None:
            return Decline(f"the integer type of {name} is unknown (run infer-shapes first)")
        if dtype not in _INT8_TYPES:
            return Decline(f"{name} is {dtype.name.lower()}; QOperator ops take int8/uint8")
    return None


def _blockwise(m: Match, *nodes: str) -> Decline | None:
    for node in nodes:
        if m.attr(node, "block_size", 0):
            return Decline(f"{m.node(node).name or node} is blockwise")
    return None


def _only_feeds_q(m: Match, node: str) -> Decline | None:
    """The float op's output must feed the QuantizeLinear alone (nothing else reads the float value)."""
    out = m.node(node).outputs[0]
    if len(out.uses()) > 1 or out.is_graph_output():
        return Decline(f"the output of {m.node(node).name or node} is also used outside the QuantizeLinear")
    return None


def _weight_axis(m: Match, weight: str, axis: int) -> Decline | None:
    """Per-channel scales of ``weight`` must run along ``axis`` (per tensor always fits)."""
    array = m.const(f"{weight}_scale")
    assert array is not None
    if array.size == 1:
        return None
    shape = m[weight].shape
    if shape is None:
        return Decline(f"the rank of {weight} is unknown (run infer-shapes first)")
    scale, declared = f"{weight}_scale", int(m.attr(f"{weight}_dq", "axis", 1))
    if array.ndim != 1 or declared % shape.rank() != axis:
        return Decline(f"{scale} has shape {list(array.shape)} along axis {declared}; QOperator ops take "
                       f"per-channel scales along axis {axis} only")
    return None


def _pair_inputs(op: RewriterContext, m: Match, a: str, b: str) -> list[ir.Value]:
    """``a, s_a, zp_a, b, s_b, zp_b, s_y, zp_y`` with absent zero points made explicit (types checked)."""
    values: list[ir.Value] = []
    for name in (a, b):
        dtype = _input_dtype(m, name)
        assert dtype is not None
        values += [m[name], m[f"{name}_scale"], _zero(op, m, f"{name}_zero", dtype)]
    return [*values, m["y_scale"], _zero(op, m, "y_zero", _output_dtype(m))]


# Q(Conv(DQ(x), DQ(w), DQ(b)?)) -> QLinearConv(x, s_x, zp_x, w, s_w, zp_w, s_y, zp_y, b?)
@rule("qlinear-conv",
      _q(Op("Conv", _dq("x"), _dq("w", per_channel=True),
            Opt(_dq("b", per_channel=True, dtype=frozenset({ir.DataType.INT32}))), _name="conv")),
      allow_shared_intermediates=True)
def qlinear_conv(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Q(Conv(DQ(x), DQ(w), DQ(b)?)) -> QLinearConv"""
    reason = (_only_feeds_q(m, "conv") or _types_reason(m, "x", "w") or _blockwise(m, "x_dq", "w_dq")
              or _weight_axis(m, "w", 0)
              or (_bias_reason(m) if m["b"] is not None else None))
    if reason is not None:
        return reason
    return op.QLinearConv(*_pair_inputs(op, m, "x", "w"), m["b"], **m.attributes("conv"))


def _bias_reason(m: Match) -> Decline | None:
    """The int32 bias must have zero point 0 and scale ``s_x * s_w`` (per output channel)."""
    zero = m.const("b_zero")
    if zero is not None and np.any(zero != 0):
        return Decline("the bias zero point is not 0")
    x_scale, w_scale, b_scale = (m.const(n).astype(np.float64) for n in ("x_scale", "w_scale", "b_scale"))
    if not np.allclose(b_scale.reshape(-1), (x_scale * w_scale).reshape(-1), rtol=1e-6, atol=0):
        return Decline("the bias scale is not x_scale * w_scale")
    return None


# Q(MatMul(DQ(a), DQ(b))) -> QLinearMatMul(a, s_a, zp_a, b, s_b, zp_b, s_y, zp_y)
@rule("qlinear-matmul", _q(Op("MatMul", _dq("a"), _dq("b", per_channel=True), _name="mm")),
      allow_shared_intermediates=True)
def qlinear_matmul(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Q(MatMul(DQ(a), DQ(b))) -> QLinearMatMul"""
    reason = (_only_feeds_q(m, "mm") or _types_reason(m, "a", "b") or _blockwise(m, "a_dq", "b_dq")
              or _weight_axis(m, "b", 1))
    if reason is not None:
        return reason
    if m.const("b_scale").size > 1 and m["b"].shape.rank() != 2:
        return Decline("per-column scales need a 2-D b")
    return op.QLinearMatMul(*_pair_inputs(op, m, "a", "b"))


def _lower_binary(op_type: str) -> Rule:
    """The rule for ``Q(op_type(DQ(a), DQ(b)))``, op_type Add or Mul."""

    def lower(op: RewriterContext, m: Match) -> Replacement | Decline:
        reason = _only_feeds_q(m, "binary") or _types_reason(m, "a", "b") or _blockwise(m, "a_dq", "b_dq")
        if reason is not None:
            return reason
        if len({_input_dtype(m, "a"), _input_dtype(m, "b"), _output_dtype(m)}) != 1:
            return Decline(f"QLinear{op_type} needs one integer type for both inputs and the output")
        inputs = _pair_inputs(op, m, "a", "b")
        op.import_opset(MS_DOMAIN, 1)
        return op.add_node(f"QLinear{op_type}", *inputs, _domain=MS_DOMAIN)

    # Q(Add|Mul(DQ(a), DQ(b))) -> com.microsoft QLinearAdd|QLinearMul(a, s_a, zp_a, b, s_b, zp_b, s_y, zp_y)
    lower.__doc__ = f"Q({op_type}(DQ(a), DQ(b))) -> QLinear{op_type}"
    return rule(f"qlinear-{op_type.lower()}", _q(Op(op_type, _dq("a"), _dq("b"), _name="binary")),
                allow_shared_intermediates=True)(lower)


@dataclass(frozen=True)
class _PassThrough:
    op_type: str
    extra_inputs: int  # inputs after the data input (Reshape's shape)
    min_opset: int  # first opset whose kernel takes int8/uint8


_PASS_THROUGH = (_PassThrough("MaxPool", 0, 12), _PassThrough("Reshape", 1, 5), _PassThrough("Transpose", 0, 1))


def _lower_pass_through(spec: _PassThrough) -> Rule:
    """The rule for ``Q(op(DQ(x), ...))`` with the same parameters on both sides."""
    extra = [Var(f"in{i}") for i in range(spec.extra_inputs)]

    def lower(op: RewriterContext, m: Match) -> Replacement | Decline:
        node = m.node("op")
        reason = _only_feeds_q(m, "op") or _types_reason(m, "x") or _blockwise(m, "x_dq") or _same_params(m)
        if reason is not None:
            return reason
        if any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
            return Decline(f"{spec.op_type}'s second output is used")
        opset = m.opset("") or 0
        if opset < spec.min_opset:
            return Decline(f"{spec.op_type} takes 8-bit integers from opset {spec.min_opset}, "
                           f"the graph imports {opset}")
        return op.add_node(spec.op_type, m["x"], *(m[f"in{i}"] for i in range(spec.extra_inputs)),
                           **m.attributes("op"))

    # Q(op(DQ(x, s, zp), ...), s, zp) -> op(x, ...)
    lower.__doc__ = f"Q({spec.op_type}(DQ(x, s, zp)), s, zp) -> {spec.op_type}(x)"
    return rule(f"qdq-{spec.op_type.lower()}", _q(Op(spec.op_type, _dq("x"), *extra, _name="op")),
                allow_shared_intermediates=True)(lower)


def _same_params(m: Match) -> Decline | None:
    """The DQ and the Q must share scale, zero point and integer type (otherwise it is a requantization)."""
    if _input_dtype(m, "x") != _output_dtype(m):
        return Decline("the QuantizeLinear changes the integer type")
    x_scale, y_scale = m.const("x_scale"), m.const("y_scale")
    x_zero, y_zero = m.const("x_zero"), m.const("y_zero")
    zeros = [np.zeros(1) if z is None else z.reshape(-1).astype(np.int64) for z in (x_zero, y_zero)]
    if x_scale.reshape(-1)[0] != y_scale.reshape(-1)[0] or zeros[0][0] != zeros[1][0]:
        return Decline("the QuantizeLinear has another scale or zero point than the DequantizeLinear")
    return None


RULES = RuleSet([qlinear_conv, qlinear_matmul, _lower_binary("Add"), _lower_binary("Mul"),
                 *(_lower_pass_through(spec) for spec in _PASS_THROUGH)])


@register_pass
class LowerQOperator(RewritePass):
    """Rewrite QDQ groups as QLinearConv/QLinearMatMul/QLinearAdd/QLinearMul (cpu target)."""

    name = "lower-qoperator"
    rules = RULES
    tolerance = Tolerance(rtol=0.02, atol=0.02)
    idempotent = True

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        target = target_of(ctx)
        if "qoperator" not in target.quant.formats:
            raise UnsupportedError(f"lower-qoperator: target '{target.name}' takes quantized models in QDQ form only",
                                   "leave the model in QDQ form, or use --target cpu")
        options: RewriteOptions = self.options
        rules = self.rules.select(options.rules, owner=self.name) if options.rules else self.rules
        return apply_traced(self.name, model, rules, ctx, explain=options.explain, max_rewrites=options.max_rewrites)
