"""Op generators for neural-network ops: MatMul, Gemm, reductions, Softmax/LogSoftmax, Conv,
pooling and BatchNormalization (inference).

Interval bounds: a contraction over ``K`` terms is bounded by ``K * |a| * |b|``; a reduction over
``n`` elements by ``n * |x|`` (sum), the input interval (mean, max, min) or ``sqrt(n) * |x|``
(L2). Convolutions and pools stay small (channels <= 4, spatial sizes <= 6, kernels <= 3) so the
models run in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import onnx_ir as ir
from hypothesis import strategies as st

from onnxsmith.verify._model_draft import (
    BATCH,
    FLOAT_TYPES,
    INT_TYPES,
    Decline,
    ModelDraft,
    Operand,
    axis_arg,
    span,
    static_size,
)

__all__ = ["GENERATORS"]

FLOAT32 = frozenset({ir.DataType.FLOAT})


def _accepts(d: ModelDraft, allowed: frozenset[ir.DataType]) -> frozenset[ir.DataType]:
    usable = allowed & set(d.dtypes)
    if not usable:
        raise Decline
    return usable


def gen_matmul(d: ModelDraft, op: str) -> None:
    types = _accepts(d, FLOAT_TYPES | INT_TYPES)
    a = d.pick(lambda o: o.dtype in types and o.rank >= 2 and isinstance(o.shape[-1], int),
               lambda: d.fresh(d.choice(sorted(types)), (*d.shape(min_rank=1, max_rank=2), d.integer(1, 4))))
    k = a.shape[-1]
    assert isinstance(k, int)
    batched = a.shape[:-2]

    def fits(o: Operand) -> bool:
        return o.dtype == a.dtype and o.shape[-2:-1] == (k,) and (o.rank == 2 or o.shape[:-2] == batched)

    b = d.pick(fits, lambda: d.fresh(a.dtype, (k, d.integer(1, 4))))
    out = (*a.shape[:-1], b.shape[-1])
    bound = k * a.bound * b.bound
    d.node("MatMul", [a, b], outputs=[(a.dtype, out, *span(-bound, bound))])


def gen_gemm(d: ModelDraft, op: str) -> None:
    types = _accepts(d, FLOAT_TYPES)
    trans_a = d.flag()
    k_axis = 0 if trans_a else 1  # A is (M, K), or (K, M) with transA
    a = d.pick(lambda o: o.dtype in types and o.rank == 2 and isinstance(o.shape[k_axis], int),
               lambda: d.fresh(d.choice(sorted(types)), d.dims(2)))
    k, m = a.shape[k_axis], a.shape[1 - k_axis]
    assert isinstance(k, int)
    n = d.integer(1, 4)
    trans_b = d.flag()
    b = d.fresh(a.dtype, (n, k) if trans_b else (k, n))
    alpha, beta = d.choice([1.0, 0.5]), d.choice([1.0, 0.5])
    inputs = [a, b]
    bound = alpha * k * a.bound * b.bound
    if d.flag():
        c_shape = d.choice([(n,), (1, n), ()] + ([(m, n)] if isinstance(m, int) else []))
        c = d.fresh(a.dtype, c_shape)
        inputs.append(c)
        bound += beta * c.bound
    attrs = {"alpha": alpha, "beta": beta, "transA": int(trans_a), "transB": int(trans_b)}
    d.node("Gemm", inputs, outputs=[(a.dtype, (m, n), *span(-bound, bound))], **attrs)


# reduce op -> (element types, first opset taking axes as an input)
_REDUCE: dict[str, tuple[frozenset[ir.DataType], int]] = {
    "ReduceSum": (FLOAT_TYPES | INT_TYPES, 13),
    "ReduceMean": (FLOAT_TYPES | {ir.DataType.INT32}, 18),
    "ReduceMax": (FLOAT_TYPES | INT_TYPES, 18),
    "ReduceMin": (FLOAT_TYPES | INT_TYPES, 18),
    "ReduceL2": (FLOAT_TYPES, 18),
}


def gen_reduce(d: ModelDraft, op: str) -> None:
    allowed, axes_input_since = _REDUCE[op]
    types = _accepts(d, allowed)
    x = d.pick(lambda o: o.dtype in types and o.rank >= 1,
               lambda: d.fresh(d.choice(sorted(types)), d.shape()))
    keepdims = d.flag()
    attrs: dict = {} if keepdims and d.flag() else {"keepdims": int(keepdims)}
    inputs: list = [x]
    if d.opset >= axes_input_since and d.integer(0, 5) == 0:
        # Empty axes with noop_with_empty_axes: the reduction is the identity.
        inputs.append(d.const_ints([]))
        d.node(op, inputs, outputs=[(x.dtype, x.shape, x.lo, x.hi)], noop_with_empty_axes=1, **attrs)
        return
    if d.integer(0, 3) == 0:
        axes = list(range(x.rank))
    else:
        axes = sorted(d.draw(st.lists(st.integers(0, x.rank - 1), min_size=1, max_size=x.rank, unique=True)))
        written = [axis_arg(d, a, x.rank) for a in axes]
        if d.opset >= axes_input_since:
            inputs.append(d.const_ints(written))
        else:
            attrs["axes"] = written
    count = math.prod(static_size(x.shape[a]) for a in axes)
    out = tuple(1 if i in axes else dim for i, dim in enumerate(x.shape)) if keepdims else tuple(
        dim for i, dim in enumerate(x.shape) if i not in axes)
    if op == "ReduceSum":
        lo, hi = span(count * x.lo, count * x.hi)
    elif op == "ReduceL2":
        lo, hi = span(0.0, math.sqrt(count) * x.bound)
    else:
        lo, hi = x.lo, x.hi
    d.node(op, inputs, outputs=[(x.dtype, out, lo, hi)], **attrs)


def gen_softmax(d: ModelDraft, op: str) -> None:
    types = _accepts(d, FLOAT_TYPES)
    x = d.pick(lambda o: o.dtype in types and o.rank >= 1, lambda: d.fresh(d.choice(sorted(types)), d.shape()))
    axis = d.integer(0, x.rank - 1)
    attrs = {} if axis == x.rank - 1 and d.flag() else {"axis": axis_arg(d, axis, x.rank)}
    if op == "Softmax":
        lo, hi = 0.0, 1.0
    else:
        lo, hi = span(x.lo - x.hi - math.log(static_size(x.shape[axis])), 0.0)
    d.unary(op, x, lo, hi, **attrs)


def _image(d: ModelDraft) -> Operand:
    """A float32 NCHW operand with static C, H and W (made as an input or weight if needed)."""

    def fits(o: Operand) -> bool:
        return o.dtype == ir.DataType.FLOAT and o.rank == 4 and all(isinstance(v, int) for v in o.shape[1:])

    def make() -> Operand:
        batch = BATCH if d.dynamic and d.flag() else 1
        return d.fresh(ir.DataType.FLOAT, (batch, d.integer(1, 3), d.integer(3, 6), d.integer(3, 6)))

    _accepts(d, FLOAT32)
    return d.pick(fits, make)


def _window(d: ModelDraft, size: int, *, pad_below_kernel: bool) -> tuple[int, int, int, int, int]:
    """(kernel, pad_begin, pad_end, stride, output size) for one spatial axis."""
    kernel = d.integer(1, min(3, size))
    limit = kernel - 1 if pad_below_kernel else 1
    begin, end = d.integer(0, min(1, limit)), d.integer(0, min(1, limit))
    stride = d.integer(1, 2)
    return kernel, begin, end, stride, (size + begin + end - kernel) // stride + 1


def _spatial_attrs(d: ModelDraft, x: Operand, *, pad_below_kernel: bool) -> tuple[dict, tuple[int, int]]:
    h, w = x.shape[2], x.shape[3]
    assert isinstance(h, int) and isinstance(w, int)
    (kh, ph0, ph1, sh, oh), (kw, pw0, pw1, sw, ow) = (_window(d, h, pad_below_kernel=pad_below_kernel),
                                                       _window(d, w, pad_below_kernel=pad_below_kernel))
    attrs: dict = {"kernel_shape": [kh, kw]}
    if ph0 or ph1 or pw0 or pw1 or d.flag():
        attrs["pads"] = [ph0, pw0, ph1, pw1]
    if sh != 1 or sw != 1 or d.flag():
        attrs["strides"] = [sh, sw]
    return attrs, (oh, ow)


def gen_conv(d: ModelDraft, op: str) -> None:
    x = _image(d)
    channels = x.shape[1]
    assert isinstance(channels, int)
    group = channels if channels > 1 and d.flag() else 1
    out_channels = group * d.integer(1, 2) if group > 1 else d.integer(1, 4)
    attrs, (oh, ow) = _spatial_attrs(d, x, pad_below_kernel=False)
    kh, kw = attrs["kernel_shape"]
    if group > 1:
        attrs["group"] = group
    weight = d.fresh(x.dtype, (out_channels, channels // group, kh, kw), lo=-1.0, hi=1.0)
    inputs = [x, weight]
    bound = (channels // group) * kh * kw * x.bound
    if d.flag():
        inputs.append(d.fresh(x.dtype, (out_channels,), lo=-1.0, hi=1.0))
        bound += 1.0
    d.node("Conv", inputs, outputs=[(x.dtype, (x.shape[0], out_channels, oh, ow), *span(-bound, bound))], **attrs)


def gen_pool(d: ModelDraft, op: str) -> None:
    x = _image(d)
    attrs, (oh, ow) = _spatial_attrs(d, x, pad_below_kernel=True)
    lo, hi = x.lo, x.hi
    if op == "AveragePool" and "pads" in attrs and d.flag():
        attrs["count_include_pad"] = 1
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    d.unary(op, x, lo, hi, shape=(x.shape[0], x.shape[1], oh, ow), **attrs)


def gen_global_pool(d: ModelDraft, op: str) -> None:
    x = _image(d)
    d.unary(op, x, x.lo, x.hi, shape=(x.shape[0], x.shape[1], 1, 1))


def gen_batchnorm(d: ModelDraft, op: str) -> None:
    types = _accepts(d, FLOAT_TYPES)
    x = d.pick(lambda o: o.dtype in types and o.rank >= 2 and isinstance(o.shape[1], int),
               lambda: d.fresh(d.choice(sorted(types)), (d.integer(1, 2), *d.dims(d.integer(1, 3)))))
    channels = x.shape[1]
    assert isinstance(channels, int)
    scale, bias, mean = (d.fresh(x.dtype, (channels,), lo=-1.0, hi=1.0) for _ in range(3))
    var = d.fresh(x.dtype, (channels,), lo=0.5, hi=2.0)
    bound = (x.bound + 1.0) / math.sqrt(0.5) + 1.0
    d.node(op, [x, scale, bias, mean, var], outputs=[(x.dtype, x.shape, *span(-bound, bound))])


GENERATORS: dict[str, Callable[[ModelDraft, str], None]] = {
    "MatMul": gen_matmul,
    "Gemm": gen_gemm,
    **{op: gen_reduce for op in _REDUCE},
    "Softmax": gen_softmax,
    "LogSoftmax": gen_softmax,
    "Conv": gen_conv,
    "MaxPool": gen_pool,
    "AveragePool": gen_pool,
    "GlobalAveragePool": gen_global_pool,
    "GlobalMaxPool": gen_global_pool,
    "BatchNormalization": gen_batchnorm,
}
