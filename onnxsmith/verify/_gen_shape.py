"""Op generators for data movement: Reshape, Transpose, Squeeze, Unsqueeze, Flatten, Expand,
Concat, Split, Slice, Gather, Pad, and shape computations (Shape -> Gather -> Concat -> Reshape,
Expand to another value's shape, ConstantOfShape).

These ops never change element values, so outputs keep their input's interval (Pad adds its pad
value). Output shapes follow the ONNX shape-inference rules; a symbolic dimension is only moved
or kept, never split or merged with others, so every declared shape stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx_ir as ir
from hypothesis import strategies as st

from onnxsmith.verify._model_draft import Decline, Dim, ModelDraft, Operand, axis_arg, broadcast, span

__all__ = ["GENERATORS"]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def _operand(d: ModelDraft, accept: Callable[[Operand], bool] = lambda o: True, *, min_rank: int = 0) -> Operand:
    """Any pool operand of rank >= ``min_rank`` that ``accept``s, or a fresh one."""
    return d.pick(lambda o: o.rank >= min_rank and accept(o),
                  lambda: d.fresh(d.choice(d.dtypes), d.shape(min_rank=max(min_rank, 1))))


def _factorize(d: ModelDraft, n: int) -> list[int]:
    """``n`` as a product of 1 to 3 drawn factors (prime factors dealt into groups)."""
    primes, k, rest = [], 2, n
    while k * k <= rest:
        while rest % k == 0:
            primes.append(k)
            rest //= k
        k += 1
    if rest > 1:
        primes.append(rest)
    groups = [1] * d.integer(1, 3)
    for p in primes:
        groups[d.integer(0, len(groups) - 1)] *= p
    return groups


def gen_reshape(d: ModelDraft, op: str) -> None:
    """Reshape keeps every dimension up to the last symbolic one (written as 0) and refactors the rest."""
    x = _operand(d)
    symbolic = [i for i, dim in enumerate(x.shape) if isinstance(dim, str)]
    keep = symbolic[-1] + 1 if symbolic else d.integer(0, x.rank)
    tail = math.prod(x.shape[keep:])  # type: ignore[arg-type]
    if d.integer(0, 3) == 0:
        new_tail = list(x.shape[keep:])
    else:
        new_tail = _factorize(d, tail)
        if new_tail == [1] and d.flag():
            new_tail = []
    target = [0 if isinstance(dim, str) or d.flag() else dim for dim in x.shape[:keep]]
    target += new_tail
    if new_tail and d.flag():
        target[keep + d.integer(0, len(new_tail) - 1)] = -1
    out = (*x.shape[:keep], *new_tail)
    d.unary("Reshape", x, x.lo, x.hi, shape=out, extra=[d.const_ints(target)])


def gen_transpose(d: ModelDraft, op: str) -> None:
    x = _operand(d, min_rank=1)
    if d.integer(0, 4) == 0:  # no perm attribute: the axes are reversed
        d.unary("Transpose", x, x.lo, x.hi, shape=tuple(reversed(x.shape)))
        return
    perm = list(d.draw(st.permutations(range(x.rank))))
    d.unary("Transpose", x, x.lo, x.hi, shape=tuple(x.shape[p] for p in perm), perm=perm)


def gen_squeeze(d: ModelDraft, op: str) -> None:
    x = _operand(d, lambda o: 1 in o.shape)
    ones = [i for i, dim in enumerate(x.shape) if dim == 1]
    if not ones:
        raise Decline
    if x.static and d.integer(0, 3) == 0:
        d.unary("Squeeze", x, x.lo, x.hi, shape=tuple(dim for dim in x.shape if dim != 1))
        return
    axes = sorted(set(d.draw(st.lists(st.sampled_from(ones), min_size=1, max_size=len(ones)))))
    out = tuple(dim for i, dim in enumerate(x.shape) if i not in axes)
    written = [axis_arg(d, a, x.rank) for a in axes]
    d.unary("Squeeze", x, x.lo, x.hi, shape=out, extra=[d.const_ints(written)])


def gen_unsqueeze(d: ModelDraft, op: str) -> None:
    x = _operand(d, lambda o: o.rank <= 4)
    count = d.integer(1, min(2, 5 - x.rank))
    rank = x.rank + count
    axes = sorted(d.draw(st.lists(st.integers(0, rank - 1), min_size=count, max_size=count, unique=True)))
    dims = iter(x.shape)
    out = tuple(1 if i in axes else next(dims) for i in range(rank))
    written = [axis_arg(d, a, rank) for a in axes]
    if d.flag():
        written.reverse()
    d.unary("Unsqueeze", x, x.lo, x.hi, shape=out, extra=[d.const_ints(written)])


def _product(dims: tuple[Dim, ...]) -> Dim | None:
    """Product of dimensions: a symbolic dimension only on its own."""
    if len(dims) == 1:
        return dims[0]
    if any(isinstance(v, str) for v in dims):
        return None
    return math.prod(dims)  # type: ignore[arg-type]


def gen_flatten(d: ModelDraft, op: str) -> None:
    x = _operand(d)
    axis = d.integer(0, x.rank)
    head, tail = _product(x.shape[:axis]), _product(x.shape[axis:])
    if head is None or tail is None:
        raise Decline
    written = axis_arg(d, axis, x.rank) if 0 < axis < x.rank else axis
    d.unary("Flatten", x, x.lo, x.hi, shape=(head, tail), axis=written)


def gen_expand(d: ModelDraft, op: str) -> None:
    x = _operand(d, lambda o: o.rank <= 4)
    lead = tuple(d.integer(1, 3) for _ in range(d.integer(0, 4 - x.rank if x.rank < 4 else 0)))
    target = [*lead, *(d.integer(1, 3) if dim == 1 else 1 if isinstance(dim, str) or d.flag() else dim
                       for dim in x.shape)]
    out = broadcast(x.shape, target)
    if out is None:
        raise Decline
    d.unary("Expand", x, x.lo, x.hi, shape=out, extra=[d.const_ints(target)])


def _static_axes(x: Operand, minimum: int = 1) -> list[int]:
    return [i for i, dim in enumerate(x.shape) if isinstance(dim, int) and dim >= minimum]


def gen_concat(d: ModelDraft, op: str) -> None:
    x = _operand(d, lambda o: bool(_static_axes(o)), min_rank=1)
    axes = _static_axes(x)
    if not axes:
        raise Decline
    axis = d.choice(axes)

    def fits(o: Operand) -> bool:
        return (o.dtype == x.dtype and o.rank == x.rank and isinstance(o.shape[axis], int)
                and all(a == b for i, (a, b) in enumerate(zip(o.shape, x.shape)) if i != axis))

    def make() -> Operand:
        return d.fresh(x.dtype, (*x.shape[:axis], d.integer(1, 3), *x.shape[axis + 1:]))

    parts = [x] + [d.pick(fits, make) for _ in range(d.integer(1, 2))]
    size = sum(p.shape[axis] for p in parts)  # type: ignore[misc]
    lo, hi = span(*(p.lo for p in parts), *(p.hi for p in parts))
    out = (*x.shape[:axis], size, *x.shape[axis + 1:])
    d.node("Concat", parts, outputs=[(x.dtype, out, lo, hi)], axis=axis_arg(d, axis, x.rank))


def gen_split(d: ModelDraft, op: str) -> None:
    x = _operand(d, lambda o: bool(_static_axes(o, 2)), min_rank=1)
    axes = _static_axes(x, 2)
    if not axes:
        raise Decline
    axis = d.choice(axes)
    size = x.shape[axis]
    assert isinstance(size, int)
    count = d.integer(2, min(3, size))
    cuts = sorted(d.draw(st.lists(st.integers(1, size - 1), min_size=count - 1, max_size=count - 1, unique=True)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, size])]
    outputs = [(x.dtype, (*x.shape[:axis], n, *x.shape[axis + 1:]), x.lo, x.hi) for n in sizes]
    attrs = {"axis": axis_arg(d, axis, x.rank)}
    if d.opset >= 18 and len(set(sizes)) == 1 and d.flag():
        d.node("Split", [x], outputs=outputs, num_outputs=count, **attrs)
    elif len(set(sizes)) == 1 and d.opset < 18 and d.flag():
        d.node("Split", [x], outputs=outputs, **attrs)
    else:
        d.node("Split", [x, d.const_ints(sizes)], outputs=outputs, **attrs)


def _slice_axis(d: ModelDraft, size: Dim) -> tuple[int, int, int, Dim]:
    """(start, end, step, output size) for one axis, using every way ONNX allows to write them."""
    if isinstance(size, str):
        return 0, INT64_MAX, 1, size
    step = d.choice([1, 2, -1])
    if step > 0:
        start = d.integer(0, size - 1)
        end = d.integer(start + 1, size)
        length = -(-(end - start) // step)
        written_end = INT64_MAX if end == size and d.flag() else end - size if end < size and d.flag() else end
    else:
        start = d.integer(0, size - 1)
        end = d.integer(-1, start - 1)
        length = start - end
        written_end = INT64_MIN if end == -1 else end
    written_start = start - size if d.flag() else start
    return written_start, written_end, step, length


def gen_slice(d: ModelDraft, op: str) -> None:
    x = _operand(d, min_rank=1)
    chosen = sorted(d.draw(st.lists(st.integers(0, x.rank - 1), min_size=1, max_size=x.rank, unique=True)))
    out = list(x.shape)
    starts, ends, steps = [], [], []
    for axis in chosen:
        start, end, step, length = _slice_axis(d, x.shape[axis])
        starts.append(start)
        ends.append(end)
        steps.append(step)
        out[axis] = length
    inputs = [x, d.const_ints(starts), d.const_ints(ends)]
    default_axes = chosen == list(range(len(chosen)))
    if not default_axes or set(steps) != {1} or d.flag():
        inputs.append(d.const_ints([axis_arg(d, a, x.rank) for a in chosen]))
        if set(steps) != {1} or d.flag():
            inputs.append(d.const_ints(steps))
    d.node("Slice", inputs, outputs=[(x.dtype, tuple(out), x.lo, x.hi)])


def gen_gather(d: ModelDraft, op: str) -> None:
    x = _operand(d, lambda o: bool(_static_axes(o)), min_rank=1)
    axes = _static_axes(x)
    if not axes:
        raise Decline
    axis = d.choice(axes)
    size = x.shape[axis]
    assert isinstance(size, int)
    index_shape = d.choice([(), (1,), (2,), (2, 2)])
    indices = np.array(d.draw(st.lists(st.integers(-size, size - 1), min_size=math.prod(index_shape),
                                       max_size=math.prod(index_shape))), dtype=np.int64).reshape(index_shape)
    out = (*x.shape[:axis], *index_shape, *x.shape[axis + 1:])
    d.unary("Gather", x, x.lo, x.hi, shape=out, axis=axis_arg(d, axis, x.rank),
            extra=[d.const_ints(indices.tolist())])


def gen_pad(d: ModelDraft, op: str) -> None:
    x = _operand(d, min_rank=1)
    begins = [0 if isinstance(dim, str) else d.integer(0, 1) for dim in x.shape]
    ends = [0 if isinstance(dim, str) else d.integer(0, 1) for dim in x.shape]
    out = tuple(dim if isinstance(dim, str) else dim + b + e for dim, b, e in zip(x.shape, begins, ends))
    mode = d.choice(["constant", "edge"])
    inputs: list = [x, d.const_ints(begins + ends)]
    lo, hi = x.lo, x.hi
    if mode == "constant":
        if d.flag():
            value = d.fresh(x.dtype, (), lo=-1.0, hi=1.0) if x.dtype.is_floating_point() else d.weight(
                np.array(1, x.dtype.numpy()))
            inputs.append(value)
            lo, hi = span(lo, hi, value.lo, value.hi)
        elif any(begins) or any(ends):
            lo, hi = span(lo, hi, 0.0)
    attrs = {"mode": mode} if mode != "constant" or d.flag() else {}
    d.node("Pad", inputs, outputs=[(x.dtype, out, lo, hi)], **attrs)


def _shape_of(d: ModelDraft, x: Operand) -> ir.Value:
    """``Shape(x)`` as an int64 value (not in the pool: it only feeds shape computations)."""
    return d.builder.op("Shape", x.value)


def gen_shape(d: ModelDraft, op: str) -> None:
    """Shape computations of the kinds exporters write, chosen by a draw."""
    pattern = d.integer(0, 2)
    if pattern == 0:
        # Reshape(x, Concat(Gather(Shape(x), [0..k-1]), [-1])): keep k dims, flatten the rest.
        x = _operand(d, lambda o: o.rank >= 2 and all(isinstance(v, int) for v in o.shape[1:]), min_rank=2)
        k = d.integer(1, x.rank - 1)
        kept = d.builder.op("Gather", _shape_of(d, x), d.const_ints(list(range(k))), axis=0)
        target = d.builder.op("Concat", kept, d.const_ints([-1]), axis=0)
        out = (*x.shape[:k], math.prod(x.shape[k:]))  # type: ignore[arg-type]
        d.unary("Reshape", x, x.lo, x.hi, shape=out, extra=[target])
    elif pattern == 1:
        # Expand(x, Shape(y)) where x broadcasts to y's shape.
        y = _operand(d)
        x = d.pick(lambda o: o.dtype in d.dtypes and broadcast(o.shape, y.shape) == y.shape)
        d.unary("Expand", x, x.lo, x.hi, shape=y.shape, extra=[_shape_of(d, y)])
    else:
        # ConstantOfShape(Shape(x)) * x
        x = _operand(d, lambda o: o.dtype in d.dtypes)
        fill = d.random_array(x.dtype, (1,))
        ones = d.node("ConstantOfShape", [_shape_of(d, x)], outputs=[(x.dtype, x.shape, *span(float(fill[0])))],
                      constant=x.constant, value=ir.tensor(fill))[0]
        d.node("Mul", [x, ones], outputs=[(x.dtype, x.shape, *span(x.lo * ones.lo, x.hi * ones.lo))])


GENERATORS: dict[str, Callable[[ModelDraft, str], None]] = {
    "Reshape": gen_reshape,
    "Transpose": gen_transpose,
    "Squeeze": gen_squeeze,
    "Unsqueeze": gen_unsqueeze,
    "Flatten": gen_flatten,
    "Expand": gen_expand,
    "Concat": gen_concat,
    "Split": gen_split,
    "Slice": gen_slice,
    "Gather": gen_gather,
    "Pad": gen_pad,
    "Shape": gen_shape,
}
