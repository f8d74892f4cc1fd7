"""Op generators for elementwise ops: unary math, broadcasting binary ops, comparisons and
logic, Where, Clip, Cast, Identity, Dropout (inference) and Constant.

Each generator reads operands from the draft's pool, appends one node (or a short fixed chain)
and adds its outputs with their interval bounds. Ops with a restricted domain only take
operands whose interval lies inside it: Log needs ``lo >= 0.5``, Sqrt ``lo >= 0``, Reciprocal
and the divisor of Div ``|x| >= 0.5``, Exp ``hi <= log(LIMIT)``. Rounding ops (Floor, Round,
float-to-integer Cast) are left out: a last-bit difference from an equivalent rewrite must not
turn into a whole unit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxsmith.verify._model_draft import (
    FLOAT_TYPES,
    INT_TYPES,
    LIMIT,
    Decline,
    ModelDraft,
    Operand,
    broadcast,
    broadcastable_to,
    span,
)

__all__ = ["GENERATORS"]

FLOATS = FLOAT_TYPES
NUMERIC = FLOAT_TYPES | INT_TYPES
BOOL = ir.DataType.BOOL

Interval = tuple[float, float]
FLOAT32 = frozenset({ir.DataType.FLOAT})


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _abs_image(lo: float, hi: float) -> Interval:
    low = 0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi))
    return low, max(abs(lo), abs(hi))


# op -> (element types, domain check on (lo, hi), image of the interval)
_UNARY: dict[str, tuple[frozenset[ir.DataType], Callable[[float, float], bool], Callable[[float, float], Interval]]] = {
    "Relu": (FLOATS, lambda lo, hi: True, lambda lo, hi: (max(lo, 0.0), max(hi, 0.0))),
    "LeakyRelu": (FLOAT32, lambda lo, hi: True, lambda lo, hi: (min(lo, 0.1 * lo), max(hi, 0.1 * hi))),
    "Sigmoid": (FLOATS, lambda lo, hi: True, lambda lo, hi: (_sigmoid(lo), _sigmoid(hi))),
    "Tanh": (FLOATS, lambda lo, hi: True, lambda lo, hi: (math.tanh(lo), math.tanh(hi))),
    "Erf": (FLOAT32, lambda lo, hi: True, lambda lo, hi: (math.erf(lo), math.erf(hi))),
    "Abs": (NUMERIC, lambda lo, hi: True, _abs_image),
    "Neg": (NUMERIC, lambda lo, hi: True, lambda lo, hi: (-hi, -lo)),
    "Exp": (FLOATS, lambda lo, hi: hi <= math.log(LIMIT), lambda lo, hi: (math.exp(lo), math.exp(hi))),
    "Log": (FLOATS, lambda lo, hi: lo >= 0.5, lambda lo, hi: (math.log(lo), math.log(hi))),
    "Sqrt": (FLOATS, lambda lo, hi: lo >= 0.0, lambda lo, hi: (math.sqrt(lo), math.sqrt(hi))),
    "Reciprocal": (FLOATS, lambda lo, hi: lo >= 0.5, lambda lo, hi: (1.0 / hi, 1.0 / lo)),
}

_BINARY: dict[str, frozenset[ir.DataType]] = {
    "Add": NUMERIC, "Sub": NUMERIC, "Mul": NUMERIC, "Div": FLOATS, "Max": NUMERIC, "Min": NUMERIC,
}


def _typed(d: ModelDraft, allowed: frozenset[ir.DataType]) -> Callable[[Operand], bool]:
    """Accepts operands whose element type is allowed by the op and by the strategy."""
    usable = allowed & set(d.dtypes)
    return lambda o: o.dtype in usable


def _usable(d: ModelDraft, allowed: frozenset[ir.DataType]) -> list[ir.DataType]:
    usable = [t for t in d.dtypes if t in allowed]
    if not usable:
        raise Decline
    return usable


def _any_operand(d: ModelDraft, allowed: frozenset[ir.DataType]) -> Operand:
    """A pool operand of an allowed type, or a fresh one."""
    return d.pick(_typed(d, allowed), lambda: d.fresh(d.choice(_usable(d, allowed)), d.shape(min_rank=0)))


def positive(d: ModelDraft, dtype: ir.DataType, like: tuple | None = None) -> Operand:
    """An operand of ``dtype`` bounded below by 0.5 (broadcasting against ``like`` when given).

    A pool operand that already is, a weight in [0.5, 2], or ``Abs(p) + c`` of a pool operand
    ``p`` with a constant ``c >= 0.5``.
    """

    def fits(o: Operand) -> bool:
        return o.dtype == dtype and (like is None or broadcast(o.shape, like) == tuple(like))

    def make() -> Operand:
        base = [o for o in d.pool if fits(o) and (o.constant or not d.constant_only)]
        if base and d.flag():
            p = d.choice(base)
            a = d.unary("Abs", p, *_abs_image(p.lo, p.hi))
            c = d.fresh(dtype, (), lo=0.5, hi=1.0)
            return d.node("Add", [a, c], outputs=[(dtype, a.shape, *span(a.lo + c.lo, a.hi + c.hi))])[0]
        shape = d.shape(min_rank=0) if like is None else broadcastable_to(d, like)
        return d.fresh(dtype, shape, lo=0.5, hi=2.0)

    return d.pick(lambda o: fits(o) and o.lo >= 0.5, make)


def boolean(d: ModelDraft, like: tuple | None = None) -> Operand:
    """A boolean operand (broadcasting against ``like`` when given), made by a comparison if needed."""

    def fits(o: Operand, dtypes: frozenset[ir.DataType]) -> bool:
        return o.dtype in dtypes and (like is None or broadcast(o.shape, like) == tuple(like))

    def make() -> Operand:
        x = d.pick(lambda o: fits(o, NUMERIC & set(d.dtypes)))
        if x.dtype in FLOATS:
            threshold = d.fresh(x.dtype, (), lo=-0.5, hi=0.5)
        else:
            threshold = d.weight(np.array(1, x.dtype.numpy()))
        return d.node("Greater", [x, threshold], outputs=[(BOOL, x.shape, 0, 1)])[0]

    return d.pick(lambda o: fits(o, frozenset({BOOL})), make)


def gen_unary(d: ModelDraft, op: str) -> None:
    allowed, domain, image = _UNARY[op]
    dtype = d.choice(_usable(d, allowed))
    if not domain(-1.0, 1.0):  # Log, Sqrt, Reciprocal: needs an operand away from zero
        x = positive(d, dtype)
    else:
        x = d.pick(lambda o: o.dtype == dtype and domain(o.lo, o.hi), lambda: d.fresh(dtype, d.shape(min_rank=0)))
    if not domain(x.lo, x.hi):
        raise Decline
    attrs = {"alpha": 0.1} if op == "LeakyRelu" else {}
    d.unary(op, x, *span(*image(x.lo, x.hi)), **attrs)


def _interval_op(op: str, a: Interval, b: Interval) -> Interval:
    (p, q), (r, s) = a, b
    if op == "Add":
        return span(p + r, q + s)
    if op == "Sub":
        return span(p - s, q - r)
    if op == "Mul":
        return span(p * r, p * s, q * r, q * s)
    if op == "Div":
        return span(p / r, p / s, q / r, q / s)
    if op == "Max":
        return span(max(p, r), max(q, s))
    return span(min(p, r), min(q, s))


def gen_binary(d: ModelDraft, op: str) -> None:
    a = _any_operand(d, _BINARY[op])
    if op == "Div":
        b = positive(d, a.dtype, a.shape)
    else:
        b = d.pick(lambda o: o.dtype == a.dtype and broadcast(a.shape, o.shape) is not None,
                   lambda: d.fresh(a.dtype, broadcastable_to(d, a.shape), broadcasting=True))
        if d.flag():
            a, b = b, a
    shape = broadcast(a.shape, b.shape)
    if shape is None:
        raise Decline
    lo, hi = _interval_op(op, (a.lo, a.hi), (b.lo, b.hi))
    d.node(op, [a, b], outputs=[(a.dtype, shape, lo, hi)])


def gen_compare(d: ModelDraft, op: str) -> None:
    a = _any_operand(d, NUMERIC)
    b = d.pick(lambda o: o.dtype == a.dtype and broadcast(a.shape, o.shape) is not None,
               lambda: d.fresh(a.dtype, broadcastable_to(d, a.shape), broadcasting=True))
    shape = broadcast(a.shape, b.shape)
    if shape is None:
        raise Decline
    d.node(op, [a, b], outputs=[(BOOL, shape, 0, 1)])


def gen_logic(d: ModelDraft, op: str) -> None:
    a = boolean(d)
    if op == "Not":
        d.unary("Not", a, 0, 1)
        return
    if d.flag():
        b = boolean(d, a.shape)
    else:
        b = d.pick(lambda o: o.dtype == BOOL and broadcast(a.shape, o.shape) is not None)
    shape = broadcast(a.shape, b.shape)
    if shape is None:
        raise Decline
    d.node(op, [a, b], outputs=[(BOOL, shape, 0, 1)])


def gen_where(d: ModelDraft, op: str) -> None:
    x = _any_operand(d, NUMERIC)
    y = d.pick(lambda o: o.dtype == x.dtype and broadcast(x.shape, o.shape) is not None,
               lambda: d.fresh(x.dtype, broadcastable_to(d, x.shape), broadcasting=True))
    shape = broadcast(x.shape, y.shape)
    if shape is None:
        raise Decline
    cond = boolean(d, shape)
    lo, hi = span(x.lo, x.hi, y.lo, y.hi)
    d.node("Where", [cond, x, y], outputs=[(x.dtype, broadcast(shape, cond.shape), lo, hi)])


def gen_clip(d: ModelDraft, op: str) -> None:
    x = _any_operand(d, FLOATS)
    low = d.fresh(x.dtype, (), lo=-1.0, hi=0.0) if d.flag() else None
    high = d.fresh(x.dtype, (), lo=0.5, hi=2.0) if d.flag() else None
    lo, hi = x.lo, x.hi
    if low is not None:
        lo, hi = max(lo, low.lo), max(hi, low.hi)
    if high is not None:
        lo, hi = min(lo, high.lo), min(hi, high.hi)
    inputs = [x, low, high] if high is not None else [x, low] if low is not None else [x]
    d.node("Clip", inputs, outputs=[(x.dtype, x.shape, *span(lo, hi))])


def gen_cast(d: ModelDraft, op: str) -> None:
    x = d.pick(lambda o: o.dtype in d.dtypes or o.dtype == BOOL,
               lambda: d.fresh(d.choice(d.dtypes), d.shape(min_rank=0)))
    targets = [t for t in d.dtypes if not (x.dtype in FLOATS and t in INT_TYPES)]
    if not targets:
        raise Decline
    to = d.choice(targets)
    d.unary("Cast", x, x.lo, x.hi, dtype=to, to=to)


def gen_identity(d: ModelDraft, op: str) -> None:
    x = d.pick(lambda o: True)
    d.unary("Identity", x, x.lo, x.hi)


def gen_dropout(d: ModelDraft, op: str) -> None:
    """Dropout in inference mode (no training_mode input): an identity, optionally with a mask."""
    x = _any_operand(d, FLOATS)
    ratio = d.fresh(x.dtype, (), lo=0.1, hi=0.5) if d.flag() else None
    outputs = [(x.dtype, x.shape, x.lo, x.hi)]
    if d.flag():
        outputs.append((BOOL, x.shape, 0, 1))
    d.node("Dropout", [x, ratio] if ratio else [x], outputs=outputs)


def gen_constant(d: ModelDraft, op: str) -> None:
    """A Constant node, written with ``value`` or one of the scalar/list attribute forms."""
    dtype = d.choice(d.dtypes)
    shape = d.shape(min_rank=0, max_rank=3)
    shape = tuple(1 if isinstance(s, str) else s for s in shape)
    array = d.random_array(dtype, shape)
    form = d.integer(0, 2)
    if form == 1 and dtype == ir.DataType.FLOAT and len(shape) <= 1:
        attrs = {"value_float": float(array)} if not shape else {"value_floats": [float(v) for v in array]}
    elif form == 2 and dtype == ir.DataType.INT64 and len(shape) <= 1:
        attrs = {"value_int": int(array)} if not shape else {"value_ints": [int(v) for v in array]}
    else:
        attrs = {"value": ir.tensor(array)}
    lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    d.node("Constant", [], outputs=[(dtype, shape, lo, hi)], **attrs)


GENERATORS: dict[str, Callable[[ModelDraft, str], None]] = {
    **{op: gen_unary for op in _UNARY},
    **{op: gen_binary for op in _BINARY},
    **{op: gen_compare for op in ("Greater", "Less", "Equal")},
    **{op: gen_logic for op in ("And", "Or", "Not")},
    "Where": gen_where,
    "Clip": gen_clip,
    "Cast": gen_cast,
    "Identity": gen_identity,
    "Dropout": gen_dropout,
    "Constant": gen_constant,
}
