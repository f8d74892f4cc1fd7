"""Family ``skip-layer-norm``: residual Add + LayerNormalization as ``com.microsoft.SkipLayerNormalization``.

onnxruntime's ``SkipLayerNormalization(input, skip, gamma, beta?, bias?)`` (version 1, float32 on
CPU) computes, over the last axis of a 2-D or 3-D ``input``::

    s = input + skip (+ bias)                 output 3: input_skip_bias_sum
    y = (s - mean(s)) / sqrt(var(s) + epsilon) * gamma (+ beta)      output 0

with ``gamma``, ``beta`` and ``bias`` 1-D ``[H]``. That is a transformer's residual connection and
its LayerNormalization (``axis = -1``) in one pass over the data::

    LayerNormalization(Add(Add(x, b), skip), g, beta?)  -> SkipLayerNormalization(x, skip, g, beta?, b)
    LayerNormalization(Add(x, skip), g, beta?)          -> SkipLayerNormalization(x, skip, g, beta?)

When the residual sum is also read elsewhere (pre-LN transformers keep it for the next residual),
``skip-layer-norm-shared-sum`` replaces that Add by the node's ``input_skip_bias_sum`` output and
``skip-layer-norm-of-sum`` then lets the LayerNormalization reading it take output 0::

    Add(x, skip) [also read elsewhere] -> SkipLayerNormalization(x, skip, g, beta?).output(3)
    LayerNormalization(SkipLayerNormalization(x, skip, g, beta?).output(3), g, beta?)
                                        -> SkipLayerNormalization(...).output(0)

Declined when the LayerNormalization does not normalise the last axis only, its Mean/InvStdDev
outputs are used, the dtype is not float32, or the two summands do not have the same known shape
of rank 2 or 3 (the kernel's layouts) with a static hidden size equal to ``gamma``'s (and
``beta``'s) length. ``b`` must be a constant ``[H]`` or ``[1, ..., H]`` (see ``_bias``). The sum is
the same; the kernel accumulates mean and variance in its own order, so results move by float32
re-association only.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.passes.fusion._bias import last_axis_bias
from onnxsmith.passes.fusion._gelu_forms import FLOAT32
from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Opt, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S

__all__ = ["FAMILY", "RULES"]

FAMILY = "skip-layer-norm"

MS_DOMAIN = "com.microsoft"

_DEFAULT_EPSILON = 1e-5


def _dims(value: ir.Value) -> tuple[object, ...] | None:
    return None if value.shape is None else tuple(value.shape.dims)


def _show(dims: tuple[object, ...]) -> str:
    """``[batch, ?, 384]``: named dimensions by name, unnamed ones as ``?``."""
    names = ["?" if isinstance(d, ir.SymbolicDim) and d.value is None else str(d) for d in dims]
    return f"[{', '.join(names)}]"


def _layer_norm_decline(node: ir.Node, m: Match) -> Decline | None:
    """Why a LayerNormalization node cannot become the normalisation of a SkipLayerNormalization."""
    x = node.inputs[0]
    assert x is not None
    rank = x.shape.rank() if x.shape is not None else None
    axis = int(m.attr(node, "axis", -1))
    if axis != -1 and (rank is None or axis != rank - 1):
        return Decline(f"LayerNormalization '{node.name}' normalises from axis {axis}, not the last axis only")
    if any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
        return Decline(f"the Mean/InvStdDev outputs of LayerNormalization '{node.name}' are used")
    return None


def _operands_decline(a: ir.Value, b: ir.Value, gamma: ir.Value, beta: ir.Value | None) -> Decline | None:
    """Why ``a + b`` normalised with ``gamma``/``beta`` does not fit the kernel's layouts."""
    da, db = _dims(a), _dims(b)
    if da is None or db is None:
        unknown = a if da is None else b
        return Decline(f"the shape of '{unknown.name}' is unknown (run cleanup's shape inference first)")
    if any(isinstance(d, ir.SymbolicDim) and d.value is None for d in da + db):
        return Decline(f"the summands have shapes {_show(da)} and {_show(db)} with unnamed dimensions")
    if da != db:
        return Decline(f"the summands have shapes {_show(da)} and {_show(db)}, not one shape")
    if len(da) not in (2, 3):
        return Decline(f"the summands have rank {len(da)}; SkipLayerNormalization takes rank 2 or 3")
    hidden = da[-1]
    for name, value in (("gamma", gamma), ("beta", beta)):
        if value is not None and (_dims(value) != (hidden,) or not isinstance(hidden, int)):
            return Decline(f"{name} '{value.name}' has shape {_dims(value)}, expected [{hidden}] (the hidden size)")
    return None


def _skip_layer_norm(op: RewriterContext, x: ir.Value, skip: ir.Value, gamma: ir.Value, beta: ir.Value | None,
                     bias: ir.Value | None, epsilon: float, outputs: int = 1) -> ir.Value | tuple[ir.Value, ...]:
    op.import_opset(MS_DOMAIN, 1)
    return op.SkipLayerNormalization(x, skip, gamma, beta, bias, _domain=MS_DOMAIN, _outputs=outputs,
                                     epsilon=epsilon)


def _fused_layer_norm(op: RewriterContext, m: Match, *, with_bias: bool) -> Replacement | Decline:
    """The matched LayerNormalization ``ln`` of ``x + skip`` (``+ bias`` too ``with_bias``) as one
    SkipLayerNormalization, or why not; the Mean/InvStdDev outputs it replaces are unused."""
    ln = m.node("ln")
    decline = _layer_norm_decline(ln, m) or _operands_decline(m["x"], m["skip"], m["gamma"], m["beta"])
    if decline:
        return decline
    bias = last_axis_bias(op, m) if with_bias else None
    if isinstance(bias, Decline):
        return bias
    fused = _skip_layer_norm(op, m["x"], m["skip"], m["gamma"], m["beta"], bias,
                             float(m.attr(ln, "epsilon", _DEFAULT_EPSILON)))
    return [fused] + [None] * (len(ln.outputs) - 1)


# LayerNormalization(Add(Add(x, b), skip), g, beta?) -> SkipLayerNormalization(x, skip, g, beta?, b)
@rule("skip-layer-norm-bias",
      Op("LayerNormalization",
         Op("Add", Op("Add", Var("x", dtype=FLOAT32), Const("bias", shape=S.ANY)), Var("skip", dtype=FLOAT32)),
         Var("gamma"), Opt(Var("beta")), _name="ln"))
def skip_layer_norm_bias(op: RewriterContext, m: Match) -> Replacement | Decline:
    """LayerNormalization(Add(Add(x, b), skip), g, beta?) -> SkipLayerNormalization(x, skip, g, beta?, b)"""
    return _fused_layer_norm(op, m, with_bias=True)


# LayerNormalization(Add(x, skip), g, beta?) -> SkipLayerNormalization(x, skip, g, beta?)
@rule("skip-layer-norm",
      Op("LayerNormalization", Op("Add", Var("x", dtype=FLOAT32), Var("skip", dtype=FLOAT32)),
         Var("gamma"), Opt(Var("beta")), _name="ln"))
def skip_layer_norm(op: RewriterContext, m: Match) -> Replacement | Decline:
    """LayerNormalization(Add(x, skip), g, beta?) -> SkipLayerNormalization(x, skip, g, beta?)"""
    return _fused_layer_norm(op, m, with_bias=False)


def _normalising_consumer(m: Match, total: ir.Value) -> ir.Node | Decline:
    """The one LayerNormalization reading ``total`` that the shared-sum rule can fuse with."""
    norms = [node for node in total.consumers()
             if node.op_type == "LayerNormalization" and node.domain in ("", "ai.onnx") and node.inputs[0] is total]
    if not norms:
        return Decline(f"no LayerNormalization reads '{total.name}'")
    if len(total.uses()) == 1 and not total.is_graph_output():
        return Decline(f"only LayerNormalization '{norms[0].name}' reads '{total.name}' (rule skip-layer-norm)")
    ln = norms[0]
    gamma, beta = ln.inputs[1], ln.inputs[2] if len(ln.inputs) > 2 else None
    for value in (gamma, beta):
        if value is not None and value.producer() is not None:
            return Decline(f"'{value.name}' of LayerNormalization '{ln.name}' is computed, not an initializer or input")
    return _layer_norm_decline(ln, m) or ln


# Add(x, skip) [read by a LayerNormalization and elsewhere] -> SkipLayerNormalization(x, skip, g, beta?).output(3)
@rule("skip-layer-norm-shared-sum", Op("Add", Var("x", dtype=FLOAT32), Var("skip", dtype=FLOAT32), _name="add"))
def skip_layer_norm_shared_sum(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Add(x, skip) read by a LayerNormalization and others -> SkipLayerNormalization(...).output(3)"""
    total = m.node("add").outputs[0]
    ln = _normalising_consumer(m, total)
    if isinstance(ln, Decline):
        return ln
    gamma, beta = ln.inputs[1], ln.inputs[2] if len(ln.inputs) > 2 else None
    assert gamma is not None
    decline = _operands_decline(m["x"], m["skip"], gamma, beta)
    if decline:
        return decline
    outputs = _skip_layer_norm(op, m["x"], m["skip"], gamma, beta, None,
                               float(m.attr(ln, "epsilon", _DEFAULT_EPSILON)), outputs=4)
    for unused in outputs[1:3]:
        unused.name = ""  # mean and inv_std_var: absent optional outputs
    return outputs[3]


# LayerNormalization(SkipLayerNormalization(x, skip, g, beta?).output(3), g, beta?)
#     -> SkipLayerNormalization(...).output(0)
@rule("skip-layer-norm-of-sum",
      Op("LayerNormalization",
         Op("SkipLayerNormalization", Var("x"), Var("skip"), Var("gamma"), Opt(Var("beta")), Opt(Var("bias")),
            _domain=MS_DOMAIN, _name="skip_ln").output(3),
         Var("gamma"), Opt(Var("beta")), _name="ln"),
      allow_shared_intermediates=True)
def skip_layer_norm_of_sum(op: RewriterContext, m: Match) -> Replacement | Decline:
    """LayerNormalization(SkipLayerNormalization(...).output(3), g, beta?) -> SkipLayerNormalization(...).output(0)"""
    ln, fused = m.node("ln"), m.node("skip_ln")
    epsilon = float(m.attr(ln, "epsilon", _DEFAULT_EPSILON))
    if epsilon != float(m.attr(fused, "epsilon", _DEFAULT_EPSILON)):
        return Decline(f"LayerNormalization '{ln.name}' and '{fused.name}' use different epsilons")
    decline = _layer_norm_decline(ln, m)
    if decline:
        return decline
    if fused.outputs[0].uses() or fused.outputs[0].is_graph_output():
        return Decline(f"output 0 of '{fused.name}' already has a reader")
    return [fused.outputs[0]] + [None] * (len(ln.outputs) - 1)


RULES = RuleSet([skip_layer_norm_bias, skip_layer_norm, skip_layer_norm_shared_sum, skip_layer_norm_of_sum])
