"""Family ``pad-into-conv``: a constant Pad before a Conv or pooling op folded into that op's ``pads``.

``Pad(x, pads, value, mode="constant")`` surrounds ``x`` with ``value``; a Conv's own ``pads``
surround its input with zeros. So a Pad that pads only the spatial axes (``N`` and ``C`` pads 0),
by non-negative amounts, with zeros, moves into the Conv exactly::

    Conv(Pad(x, p, 0), W, b?, pads=q) = Conv(x, W, b?, pads=q + p)

Pooling ops differ in what their padding means, and the rules follow them exactly:

- ``AveragePool`` with ``count_include_pad=1`` counts padded positions as zeros in each average,
  which is what explicit zeros are: the Pad folds, and a pool with ``count_include_pad=0`` takes
  it only when its own pads are all zero (it then gets ``count_include_pad=1``; with its own pads
  it would have to count some padded positions and not others).
- ``MaxPool`` ignores its padded positions. The explicit padding values change no maximum when
  every window still holds an element of ``x`` (true when the total padding on each side of an
  axis is below the kernel size, without dilation or ``ceil_mode``) and the value is ``-inf`` or
  at most a known lower bound of ``x``: the output of Relu, Sigmoid, Softplus or Abs (``>= 0``),
  or of Clip with a constant minimum. Otherwise it declines: a zero pad can be the maximum of an
  all-negative window.

Pads come from the ``pads`` input (opset 11+, with optional ``axes`` from 18) or attribute (opset
2-10); the pad value from ``constant_value`` or the ``value`` attribute (default 0). All rewrites
only move data, so they are exact. Declined when the pads, value or axes are not constants, the
mode is not ``constant``, a pad is negative or on the batch or channel axis, the op uses
``auto_pad``, pooling uses dilations or ``ceil_mode``, MaxPool's indices are used, or the Pad output
is used elsewhere (the engine's shared-intermediate check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx_ir as ir

from onnxsmith.passes.rewrite import Decline, Match, Op, Opt, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite.constants import constant_array, non_constant_reason

__all__ = ["FAMILY", "RULES"]

FAMILY = "pad-into-conv"

#: Ops whose outputs are never below 0.
_NON_NEGATIVE = frozenset({"Relu", "Sigmoid", "Softplus", "Abs"})


@dataclass(frozen=True)
class _Padding:
    """A Pad's spatial padding: amounts before and after each spatial axis, and the pad value."""

    begin: tuple[int, ...]
    end: tuple[int, ...]
    value: float


def _pad() -> Op:
    return Op("Pad", Var("x"), Opt(Var("pads")), Opt(Var("value")), Opt(Var("axes")), _name="pad")


def _ints(m: Match, name: str, what: str) -> list[int] | Decline:
    value = m[name]
    assert value is not None
    why = non_constant_reason(value)
    if why is not None:
        return Decline(f"the Pad's {what} {why}")
    return [int(v) for v in constant_array(value).reshape(-1)]


def _padding(m: Match, rank: int) -> _Padding | Decline:
    """The matched Pad's spatial padding for an input of ``rank``, or why it cannot fold."""
    if m.attr("pad", "mode", "constant") != "constant":
        return Decline(f"the Pad's mode is {m.attr('pad', 'mode')!r}, not 'constant'")
    if (m.opset("") or 0) < 11:
        pads = [int(p) for p in m.attr("pad", "pads", ())]
        value = float(m.attr("pad", "value", 0.0))
    else:
        if m["pads"] is None:
            return Decline("the Pad has no pads")
        pads = _ints(m, "pads", "pads")
        if isinstance(pads, Decline):
            return pads
        value = 0.0
        if m["value"] is not None:
            why = non_constant_reason(m["value"])
            if why is not None:
                return Decline(f"the Pad's constant_value {why}")
            value = float(constant_array(m["value"]).reshape(()))
    axes = list(range(rank))
    if m["axes"] is not None:
        given = _ints(m, "axes", "axes")
        if isinstance(given, Decline):
            return given
        axes = [a % rank for a in given]
    if len(pads) != 2 * len(axes):
        return Decline(f"the Pad has {len(pads)} pads for {len(axes)} axes")
    begin, end = [0] * rank, [0] * rank
    for axis, before, after in zip(axes, pads[:len(axes)], pads[len(axes):], strict=True):
        begin[axis], end[axis] = before, after
    if any(p < 0 for p in begin + end):
        return Decline(f"the Pad crops (negative pads {pads})")
    if begin[:2] != [0, 0] or end[:2] != [0, 0]:
        return Decline(f"the Pad pads the batch or channel axis (pads {pads})")
    return _Padding(tuple(begin[2:]), tuple(end[2:]), value)


def _new_pads(m: Match, padding: _Padding) -> list[int] | Decline:
    """The matched op's ``pads`` plus ``padding`` (the op must not use ``auto_pad``)."""
    auto_pad = m.attr("op", "auto_pad", "NOTSET")
    if auto_pad != "NOTSET":
        return Decline(f"the {m.node('op').op_type} uses auto_pad={auto_pad}")
    spatial = len(padding.begin)
    old = [int(p) for p in m.attr("op", "pads", ())] or [0] * (2 * spatial)
    return [p + q for p, q in zip(old, padding.begin + padding.end, strict=True)]


def _with_pads(m: Match, pads: list[int], **changes: object) -> dict[str, object]:
    return {**m.attributes("op"), "pads": pads, **changes}


# Conv(Pad(x, p, 0), W, b?, pads=q) -> Conv(x, W, b?, pads=q + p)
@rule("pad-into-conv", Op("Conv", _pad(), Var("w"), Opt(Var("b")), _name="op"))
def pad_into_conv(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Conv(Pad(x, p, 0), W, b?, pads=q) -> Conv(x, W, b?, pads=q + p)"""
    w = m["w"]
    assert w is not None
    kernel = m.attr("op", "kernel_shape")
    rank = len(kernel) + 2 if kernel else w.shape.rank() if w.shape is not None else None
    if rank is None:
        return Decline("the Conv's rank is unknown (no kernel_shape, W's shape unknown)")
    padding = _padding(m, rank)
    if isinstance(padding, Decline):
        return padding
    if padding.value != 0:
        return Decline(f"the Pad's value is {padding.value:g}; a Conv pads with zeros")
    pads = _new_pads(m, padding)
    if isinstance(pads, Decline):
        return pads
    return op.Conv(m["x"], w, m["b"], **_with_pads(m, pads))


def _pool_check(m: Match) -> tuple[list[int], _Padding] | Decline:
    """The pool's kernel and the Pad's padding, when the pool has no dilation and no ceil_mode."""
    kernel = [int(k) for k in m.attr("op", "kernel_shape")]
    if any(int(d) != 1 for d in m.attr("op", "dilations", ()) or ()):
        return Decline("the pool uses dilations")
    if m.attr("op", "ceil_mode", 0):
        return Decline("the pool uses ceil_mode")
    padding = _padding(m, len(kernel) + 2)
    if isinstance(padding, Decline):
        return padding
    return kernel, padding


# AveragePool(Pad(x, p, 0), pads=q, count_include_pad=1) -> AveragePool(x, pads=q + p, count_include_pad=1)
@rule("pad-into-average-pool", Op("AveragePool", _pad(), _name="op"))
def pad_into_average_pool(op: RewriterContext, m: Match) -> Replacement | Decline:
    """AveragePool(Pad(x, p, 0), pads=q) -> AveragePool(x, pads=q + p, count_include_pad=1)"""
    checked = _pool_check(m)
    if isinstance(checked, Decline):
        return checked
    _, padding = checked
    if padding.value != 0:
        return Decline(f"the Pad's value is {padding.value:g}; AveragePool pads with zeros")
    if not m.attr("op", "count_include_pad", 0) and any(int(p) for p in m.attr("op", "pads", ()) or ()):
        return Decline("the pool has pads of its own that count_include_pad=0 leaves out of its averages")
    pads = _new_pads(m, padding)
    if isinstance(pads, Decline):
        return pads
    return op.AveragePool(m["x"], **_with_pads(m, pads, count_include_pad=1))


def _lower_bound(m: Match, value: ir.Value) -> float | None:
    """A known lower bound of ``value`` from its producer (None if unknown)."""
    producer = value.producer()
    if producer is None or producer.domain not in ("", "ai.onnx"):
        return None
    if producer.op_type in _NON_NEGATIVE:
        return 0.0
    if producer.op_type != "Clip":
        return None
    if (m.opset("") or 0) < 11:
        low = producer.attributes.get("min")
        return None if low is None else float(low.value)
    if len(producer.inputs) < 2 or producer.inputs[1] is None or non_constant_reason(producer.inputs[1]):
        return None
    return float(constant_array(producer.inputs[1]).reshape(()))


# MaxPool(Pad(x, p, v), pads=q) -> MaxPool(x, pads=q + p)      [v = -inf or v <= min(x); windows keep an x]
@rule("pad-into-max-pool", Op("MaxPool", _pad(), _name="op"))
def pad_into_max_pool(op: RewriterContext, m: Match) -> Replacement | Decline:
    """MaxPool(Pad(x, p, v), pads=q) -> MaxPool(x, pads=q + p)"""
    node = m.node("op")
    if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
        return Decline("MaxPool's indices are used (they count padded positions)")
    checked = _pool_check(m)
    if isinstance(checked, Decline):
        return checked
    kernel, padding = checked
    x = m["x"]
    assert x is not None
    if padding.value != -math.inf:
        bound = _lower_bound(m, x)
        if bound is None or not padding.value <= bound:
            known = "x has no known lower bound" if bound is None else f"x is only known to be >= {bound:g}"
            return Decline(f"the Pad's value {padding.value:g} could be a window's maximum ({known})")
    pads = _new_pads(m, padding)
    if isinstance(pads, Decline):
        return pads
    spatial = len(kernel)
    if any(max(pads[i], pads[i + spatial]) >= k for i, k in enumerate(kernel)):
        return Decline(f"pads {pads} reach a kernel size {kernel}: a window could hold only padding")
    fused = op.MaxPool(m["x"], **_with_pads(m, pads))
    return [fused] + [None] * (len(node.outputs) - 1)


RULES = RuleSet([pad_into_conv, pad_into_average_pool, pad_into_max_pool])
