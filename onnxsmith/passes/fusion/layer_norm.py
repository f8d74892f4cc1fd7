"""Family ``layer-norm``: decomposed layer normalization as ONNX ``LayerNormalization`` (opset 17).

``LayerNormalization(x, scale, bias?, axis=a, epsilon=e)`` computes, over the trailing axes
``a .. rank-1`` of ``x``::

    y = (x - mean(x)) / sqrt(var(x) + e) * scale + bias

Exporters that predate the operator (or write layer norms by hand) spell it out. Two forms:

*Two-pass* (torch, Keras, hand-written): ``d = x - ReduceMean(x)``, then
``d / Sqrt(ReduceMean(d^2) + e)`` with ``d^2`` as ``Pow(d, 2)`` or ``Mul(d, d)`` and the division
as ``Div`` or ``Mul`` by ``Reciprocal``; optionally followed by ``* gamma`` and/or ``+ beta``::

    Add(Mul(Div(d, Sqrt(Add(ReduceMean(Pow(d, 2)), e))), gamma), beta)
        -> LayerNormalization(x, gamma, beta, axis=a, epsilon=e)

(``keepdims=1`` reductions over the same axes). One rule per spelling and affine tail
(``layer-norm-{pow,square}-{div,reciprocal}[-scale|-shift|-affine]``). Without ``gamma`` the
scale is ones; without ``beta`` there is no bias. A rule for a shorter tail declines when a
constant Mul/Add that the longer one would absorb follows, so the whole block becomes one node.

*Moments* (jax2tf, as in magika): ``var = max(0, E[x^2] - E[x]^2)`` from two ``keepdims=0``
ReduceSums times ``1/N``, each statistic brought back to the input's layout with
``Expand(Reshape(s, shape), shape)`` (the same ``shape`` value for both, and shape inference must
show the Reshape restoring the reduced axes as 1)::

    Add(Mul(Sub(x, keep(E[x])), Mul(Reciprocal(Sqrt(Add(keep(Max(0, E[x^2] - E[x]^2)), e))), gamma)), beta)
        -> LayerNormalization(x, gamma, beta, axis=a, epsilon=e)             (rule layer-norm-moments)

Declined when the reductions are not exactly the trailing axes (magika's first LayerNorm
normalises axis 1 of ``[B, 512, 256]``: transposing around a LayerNormalization would add two
full-tensor copies to save a handful of element-wise passes, so it is not done), when the model
imports ONNX opset < 17 (onnxruntime would run ``LayerNormalization`` there as its own contrib
kernel, but the ONNX checker rejects the node: "needs opset 17 (model has 15)"), when gamma or
beta vary along other axes or the normalised dimensions are not static, and for dtypes other
than float32.

Tolerance: within ``fuse``'s ``rtol=1e-4, atol=1e-5``. The kernel accumulates the mean and
variance in its own order (float32 re-association, relative error ~``n * 2^-24`` in the sums),
and ``(d * r) * gamma`` becomes ``d * (r * gamma)``. The moments form differs more: in float32,
``E[x^2] - E[x]^2`` loses ``log2(1 + mean^2/var)`` bits to cancellation, so the *original* model
is off by a relative ``~2^-24 * (1 + mean^2/var)`` in the variance; LayerNormalization's result is
closer to the exact (float64) value, and tests of that form compare with a float64 reference.
The ``max(0, .)`` clamp only guards that cancellation: a two-pass variance is never negative.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.fusion._gelu_forms import FLOAT32
from onnxsmith.passes.fusion._layer_norm_forms import (
    affine_parameter,
    normalised_shape,
    reduced_axes,
    show_dims,
    trailing_axis,
)
from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Opt, Replacement, RewriterContext, Rule, RuleSet, Var
from onnxsmith.passes.rewrite import ShapePolicy as S
from onnxsmith.passes.rewrite.constants import constant_array, constant_shape, non_constant_reason

__all__ = ["FAMILY", "RULES"]

FAMILY = "layer-norm"

_LAYER_NORM_OPSET = 17


def _equals(expected: float) -> Callable[[np.ndarray], bool]:
    def predicate(array: np.ndarray) -> bool:
        return array.size == 1 and float(array.reshape(())) == expected

    predicate.__name__ = f"equals_{expected:g}"
    return predicate


def _one_element(array: np.ndarray) -> bool:
    return array.size == 1


# --- patterns -------------------------------------------------------------------------------------

def _two_pass(square: str, divide: str) -> Op:
    """``(x - mean) / sqrt(mean((x - mean)^2) + e)`` in one spelling (see the module docstring)."""
    x = Var("x", dtype=FLOAT32)
    centred = Op("Sub", x, Op("ReduceMean", x, Opt(Var()), _name="mean"), _name="centre")
    squared = (Op("Pow", centred, Const("two", shape=S.ANY, where=_equals(2.0))) if square == "pow"
               else Op("Mul", centred, centred))
    variance = Op("ReduceMean", squared, Opt(Var()), _name="var")
    std = Op("Sqrt", Op("Add", variance, Const("eps", shape=S.ANY, where=_one_element), _name="add_eps"))
    if divide == "div":
        return Op("Div", centred, std, _name="norm")
    return Op("Mul", centred, Op("Reciprocal", std), _name="norm")


def _with_tail(core: Op, tail: str) -> Op:
    scaled = Op("Mul", core, Const("gamma", shape=S.ANY), _name="scale") if tail in ("scale", "affine") else core
    return Op("Add", scaled, Const("beta", shape=S.ANY), _name="shift") if tail in ("shift", "affine") else scaled


def _kept(stat: Op, name: str) -> Op:
    """``Expand(Reshape(stat, shape), shape)``: a ``keepdims=0`` statistic back in the input's layout."""
    shape = Var(f"{name}_shape")
    return Op("Expand", Op("Reshape", stat, shape, _name=f"{name}_reshape"), shape, _name=f"{name}_expand")


def _moments() -> Op:
    """The jax2tf moments form (see the module docstring)."""
    x = Var("x", dtype=FLOAT32)
    mean = Op("Mul", Op("ReduceSum", x, Opt(Var()), _name="sum"), Const("inv_n", shape=S.ANY), _name="mean")
    mean_sq = Op("Mul", Op("ReduceSum", Op("Mul", x, x), Opt(Var()), _name="sum_sq"), Const("inv_n_sq", shape=S.ANY))
    variance = Op("Max", Op("Sub", mean_sq, Op("Mul", mean, mean)), Const("zero", shape=S.ANY, where=_equals(0.0)))
    inv_std = Op("Reciprocal", Op("Sqrt", Op("Add", _kept(variance, "var"), Const("eps", shape=S.ANY,
                                                                                     where=_one_element))))
    centred = Op("Sub", x, _kept(mean, "mean"))
    return Op("Add", Op("Mul", centred, Op("Mul", inv_std, Const("gamma", shape=S.ANY))), Const("beta", shape=S.ANY))


# --- checks shared by the forms -------------------------------------------------------------------

def _axis(m: Match, reductions: tuple[str, str], keepdims: int) -> int | Decline:
    """LayerNormalization's axis when both reductions cover the same trailing axes of ``x``."""
    x = m["x"]
    assert x is not None
    found = []
    for name in reductions:
        axes = reduced_axes(m, m.node(name), keepdims)
        if isinstance(axes, str):
            return Decline(axes)
        axis = trailing_axis(x, axes)
        if isinstance(axis, str):
            return Decline(axis)
        found.append(axis)
    if found[0] != found[1]:
        return Decline(f"the mean and the variance reduce different axes of {show_dims(x)}")
    return found[0]


def _opset(m: Match) -> Decline | None:
    opset = m.opset("") or 0
    if opset < _LAYER_NORM_OPSET:
        return Decline(f"LayerNormalization needs opset {_LAYER_NORM_OPSET} (model has {opset})")
    return None


def _epsilon(m: Match) -> float | Decline:
    x, eps = m["x"], m["eps"]
    assert x is not None and x.shape is not None and eps is not None
    if len(constant_shape(eps)) > x.shape.rank():
        return Decline(f"epsilon '{eps.name}' has shape {list(constant_shape(eps))}: it would broadcast x")
    return float(constant_array(eps).reshape(()))


def _parameters(m: Match, axis: int) -> tuple[ir.Value | np.ndarray, ir.Value | np.ndarray | None] | Decline:
    """Scale (ones without gamma) and bias (None without beta) at the normalised shape.

    A gamma or beta constant that already has that shape is used as it is; others are copied.
    """
    x = m["x"]
    assert x is not None
    shape = normalised_shape(x, axis)
    if isinstance(shape, str):
        return Decline(shape)
    found: dict[str, ir.Value | np.ndarray | None] = {"gamma": np.ones(shape, np.float32), "beta": None}
    for role in found:
        value = m[role] if role in m else None
        if value is None:
            continue
        array = affine_parameter(value, x, axis, role)
        if isinstance(array, str):
            return Decline(array)
        found[role] = value if constant_shape(value) == shape else array
    scale = found["gamma"]
    assert scale is not None
    return scale, found["beta"]


def _layer_norm(op: RewriterContext, m: Match, axis: int, epsilon: float,
                params: tuple[ir.Value | np.ndarray, ir.Value | np.ndarray | None]) -> ir.Value:
    base = m.root.name or "layer_norm"
    scale, bias = (op.initializer(p, f"{base}_{role}") if isinstance(p, np.ndarray) else p
                   for p, role in zip(params, ("scale", "bias")))
    return op.LayerNormalization(m["x"], scale, bias, axis=axis, epsilon=epsilon)


# --- the two-pass rules ---------------------------------------------------------------------------

#: For each tail, the (op type, role) of a following constant node that a longer tail would absorb.
_ABSORBABLE = {"none": (("Mul", "gamma"), ("Add", "beta")), "scale": (("Add", "beta"),),
               "shift": (), "affine": ()}


def _longer_tail_follows(m: Match, tail: str, axis: int) -> Decline | None:
    """Declines when the root's only reader is a constant Mul/Add that a longer tail's rule absorbs."""
    out = m.root.outputs[0]
    if len(out.uses()) != 1 or out.is_graph_output():
        return None
    reader = out.uses()[0].node
    x = m["x"]
    assert x is not None
    for op_type, role in _ABSORBABLE[tail]:
        if reader.op_type != op_type or reader.domain not in ("", "ai.onnx") or len(reader.inputs) != 2:
            continue
        other = reader.inputs[1] if reader.inputs[0] is out else reader.inputs[0]
        if (other is not None and non_constant_reason(other) is None
                and not isinstance(affine_parameter(other, x, axis, role), str)):
            return Decline(f"{op_type} '{reader.name}' after it is the {role} (fused where the block ends)")
    return None


def _two_pass_rewrite(tail: str) -> Callable[[RewriterContext, Match], Replacement | Decline]:
    def rewrite(op: RewriterContext, m: Match) -> Replacement | Decline:
        axis = _axis(m, ("mean", "var"), keepdims=1)
        if isinstance(axis, Decline):
            return axis
        decline = _longer_tail_follows(m, tail, axis) or _opset(m)
        if decline:
            return decline
        epsilon, params = _epsilon(m), _parameters(m, axis)
        for answer in (epsilon, params):
            if isinstance(answer, Decline):
                return answer
        return _layer_norm(op, m, axis, epsilon, params)  # type: ignore[arg-type]

    return rewrite


def _two_pass_rules() -> list[Rule]:
    rules = []
    for square in ("pow", "square"):
        for divide in ("div", "reciprocal"):
            for tail in ("affine", "scale", "shift", "none"):
                name = f"layer-norm-{square}-{divide}" + ("" if tail == "none" else f"-{tail}")
                description = (f"{'Div(d, std)' if divide == 'div' else 'd * Reciprocal(std)'} with "
                               f"{'Pow(d, 2)' if square == 'pow' else 'Mul(d, d)'}"
                               f"{'' if tail == 'none' else f' and {tail}'} -> LayerNormalization")
                rules.append(Rule(name, _with_tail(_two_pass(square, divide), tail), _two_pass_rewrite(tail),
                                  description=description))
    return rules


# --- the moments rule -----------------------------------------------------------------------------

def _same_dim(a: object, b: object) -> bool:
    """Provably equal dims: equal ints, or the same named symbol."""
    if isinstance(a, int) or isinstance(b, int):
        return a == b
    return isinstance(a, ir.SymbolicDim) and a.value is not None and a == b


def _restores_layout(m: Match, name: str, axis: int) -> Decline | None:
    """Declines unless ``Expand(Reshape(s, shape), shape)`` is ``s`` with the reduced axes kept as 1.

    Shape inference must give the Reshape rank ``x``'s rank with 1 on the reduced axes and, on the
    other axes, at most one dim not provably ``x``'s (the element count then forces it), and the
    Expand the Reshape's shape.
    """
    x, reshape, expand = m["x"], m.node(f"{name}_reshape"), m.node(f"{name}_expand")
    assert x is not None and x.shape is not None
    kept, expanded = reshape.outputs[0].shape, expand.outputs[0].shape
    rank = x.shape.rank()
    what = f"Reshape '{reshape.name}' does not provably restore the reduced axes of {show_dims(x)}"
    if kept is None or expanded is None or kept.rank() != rank or expanded.rank() != rank:
        return Decline(what)
    if any(kept[i] != 1 for i in range(rank + axis, rank)):
        return Decline(what)
    if sum(not _same_dim(kept[i], x.shape[i]) for i in range(rank + axis)) > 1:
        return Decline(what)
    if not all(_same_dim(a, b) or a == b == 1 for a, b in zip(kept, expanded)):
        return Decline(f"Expand '{expand.name}' may broadcast {show_dims(reshape.outputs[0])}")
    return None


def _inverse_count(m: Match, axis: int) -> Decline | None:
    """Declines unless both ``1/N`` constants are one element within 1e-6 of ``1 / prod(x.shape[axis:])``."""
    x = m["x"]
    assert x is not None and x.shape is not None
    count = math.prod(int(d) for d in tuple(x.shape)[axis:])  # static: checked by normalised_shape
    for name in ("inv_n", "inv_n_sq"):
        array = m.const(name)
        assert array is not None
        if array.size != 1 or not math.isclose(float(array.reshape(())), 1.0 / count, rel_tol=1e-6):
            return Decline(f"'{m[name].name}' is not 1/{count} (the mean over {show_dims(x)}[{axis}:])")
    return None


def _moments_rewrite(op: RewriterContext, m: Match) -> Replacement | Decline:
    """x - E[x] over sqrt(max(0, E[x^2] - E[x]^2) + e), times gamma, plus beta -> LayerNormalization"""
    axis = _axis(m, ("sum", "sum_sq"), keepdims=0)
    if isinstance(axis, Decline):
        return axis
    params = _parameters(m, axis)
    if isinstance(params, Decline):
        return params
    decline = (_restores_layout(m, "mean", axis) or _restores_layout(m, "var", axis) or _inverse_count(m, axis)
               or _opset(m))
    if decline:
        return decline
    epsilon = _epsilon(m)
    if isinstance(epsilon, Decline):
        return epsilon
    return _layer_norm(op, m, axis, epsilon, params)


RULES = RuleSet([*_two_pass_rules(),
                 Rule("layer-norm-moments", _moments(), _moments_rewrite,
                      description="x - E[x] over sqrt(max(0, E[x^2] - E[x]^2) + e) -> LayerNormalization")])
