"""What a decomposed layer normalization reduces over, and its scale and shift as LayerNormalization inputs.

``LayerNormalization(x, scale, bias, axis=a, epsilon=e)`` (ONNX opset 17) normalises ``x`` over
its trailing axes ``a .. rank-1``::

    y = (x - mean(x)) / sqrt(var(x) + e) * scale + bias       (mean and var over axes a..rank-1)

with ``scale`` and ``bias`` of the normalised shape ``x.shape[a:]``. A decomposed form is only
that operator when its reductions cover exactly those trailing axes (:func:`trailing_axis`), and
its gamma/beta constants only vary along them: a constant that varies along a batch axis, or has
a higher rank than ``x``, broadcasts differently and is not a LayerNormalization parameter
(:func:`affine_parameter`). The normalised dimensions must be static, since the parameters are
materialised at that shape (onnxruntime's kernel wants exactly ``x.shape[a:]`` elements).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite import Match
from onnxsmith.passes.rewrite.constants import constant_array, non_constant_reason

__all__ = ["affine_parameter", "normalised_shape", "reduced_axes", "show_dims", "trailing_axis"]


def show_dims(value: ir.Value) -> str:
    """``[?, 512, 256]``: the shape of ``value``, unknown dimensions as ``?``."""
    if value.shape is None:
        return "[unknown shape]"
    return "[" + ", ".join(str(d) if isinstance(d, int) else "?" for d in value.shape) + "]"


def reduced_axes(m: Match, node: ir.Node, keepdims: int) -> tuple[int, ...] | None | str:
    """The axes a ReduceMean/ReduceSum node reduces (None: all), or why it is not a plain reduction.

    Axes come from the ``axes`` input (opset >= 18, ReduceSum >= 13) or attribute; they must be
    constant, and ``keepdims`` must be ``keepdims``.
    """
    if int(m.attr(node, "keepdims", 1)) != keepdims:
        return f"{node.op_type} '{node.name}' has keepdims={1 - keepdims}, the form needs keepdims={keepdims}"
    axes_input = node.inputs[1] if len(node.inputs) > 1 else None
    if axes_input is not None:
        if non_constant_reason(axes_input) is not None:
            return f"the axes of {node.op_type} '{node.name}' are computed, not constant"
        axes: tuple[int, ...] | None = tuple(int(a) for a in constant_array(axes_input).reshape(-1))
    else:
        attr = m.attr(node, "axes")
        axes = tuple(int(a) for a in attr) if attr is not None else None
    if not axes:
        if int(m.attr(node, "noop_with_empty_axes", 0)):
            return f"{node.op_type} '{node.name}' has no axes and noop_with_empty_axes=1: it reduces nothing"
        return None
    return axes


def trailing_axis(x: ir.Value, axes: tuple[int, ...] | None) -> int | str:
    """LayerNormalization's ``axis`` (negative) when ``axes`` are exactly the trailing axes of ``x``.

    Returns why not otherwise, e.g. "normalises axis 1 of [?, 512, 256]; LayerNormalization
    normalises trailing axes only (from its axis to the last)".
    """
    rank = x.shape.rank() if x.shape is not None else None
    if rank is None:
        return f"the rank of '{x.name}' is unknown (run cleanup's shape inference first)"
    chosen = sorted({a + rank if a < 0 else a for a in (axes if axes is not None else range(rank))})
    if any(not 0 <= a < rank for a in chosen):
        return f"the reduction axes {list(axes or ())} are out of range for rank {rank}"
    if chosen != list(range(rank - len(chosen), rank)):
        which = "axis" if len(chosen) == 1 else "axes"
        return (f"normalises {which} {', '.join(map(str, chosen))} of {show_dims(x)}; LayerNormalization "
                "normalises trailing axes only (from its axis to the last)")
    return -len(chosen)


def normalised_shape(x: ir.Value, axis: int) -> tuple[int, ...] | str:
    """``x.shape[axis:]`` when static, or why not."""
    assert x.shape is not None
    dims = tuple(x.shape)[axis:]
    if not all(isinstance(d, int) for d in dims):
        return f"the normalised dimensions of '{x.name}' {show_dims(x)} are not static"
    return tuple(int(d) for d in dims)  # type: ignore[arg-type]


def affine_parameter(value: ir.Value, x: ir.Value, axis: int, role: str) -> np.ndarray | str:
    """The constant ``value`` (gamma or beta applied to a normalised ``x``) at the normalised shape.

    It must be float32, have a rank at most ``x``'s and size 1 on every axis before ``axis``
    (it would broadcast or vary across rows otherwise), and on the normalised axes size 1 or the
    dimension of ``x``. Returns the array broadcast to ``x.shape[axis:]``, or why not.
    """
    if (reason := non_constant_reason(value)) is not None:
        return f"{role} '{value.name}' {reason}"
    shape = normalised_shape(x, axis)
    if isinstance(shape, str):
        return shape
    array = constant_array(value)
    assert x.shape is not None
    rank = x.shape.rank()
    if array.dtype != np.float32:
        return f"{role} '{value.name}' is {array.dtype}, not float32"
    if array.ndim > rank:
        return f"{role} '{value.name}' has shape {list(array.shape)} of a higher rank than {show_dims(x)}"
    dims = (1,) * (rank - array.ndim) + array.shape
    leading, trailing = dims[:rank + axis], dims[rank + axis:]
    if any(d != 1 for d in leading) or any(d not in (1, n) for d, n in zip(trailing, shape)):
        return (f"{role} '{value.name}' has shape {list(array.shape)}, which does not vary along the "
                f"normalised axes {show_dims(x)}[{axis}:] only")
    return np.broadcast_to(array.reshape(trailing), shape).astype(np.float32)
