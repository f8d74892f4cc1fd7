"""The logits under a model output that is already a softmax over its last axis.

Classifiers are often exported with their softmax: ONNX ``Softmax``, or the decomposed form of
jax2tf and tf2onnx, ``Exp(x) / Expand(Reshape(ReduceSum(Exp(x), last axis)))``. Cross-entropy and
the student side of KL divergence take logits; reading such probabilities as logits would apply
a second softmax (a wrong loss whose gradient all but vanishes). ``softmax_logits(y)`` returns the
value ``z`` with ``y = softmax(z)`` along the last axis, so that ``log_softmax(z) = log(y)``
exactly, or None when ``y`` is not provably such a softmax.

The decomposed form is accepted only when the denominator provably holds each row's sum in that
row: the ReduceSum reads the same Exp output over the last axis alone, and the values between it
and the Div (Reshape, Unsqueeze, Squeeze, Identity, Expand) are row sums (rank ``r - 1``), or rank
``r`` with a last axis of 1, or the Expand of such a value to the classes. Beyond rank 2 their
leading dimensions must equal the output's.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.ir.queries import dims_of

__all__ = ["softmax_logits"]

_SHAPE_ONLY = frozenset({"Reshape", "Unsqueeze", "Squeeze", "Identity", "Expand"})
_DEFAULT = ("", "ai.onnx")


def softmax_logits(y: ir.Value) -> ir.Value | None:
    """``z`` such that ``y = softmax(z)`` over the last axis, or None (see the module docstring)."""
    node = y.producer()
    dims = dims_of(y)
    if node is None or node.domain not in _DEFAULT or not dims:
        return None
    rank = len(dims)
    if node.op_type == "Softmax":
        graph = node.graph
        opset = graph.opset_imports.get("", 13) if graph is not None else 13
        axis = node.attributes.get_int("axis", -1 if opset >= 13 else 1)
        # before opset 13 Softmax flattens from `axis` on: the same as the last axis alone there
        return node.inputs[0] if axis % rank == rank - 1 else None
    if node.op_type != "Div" or len(node.inputs) != 2:
        return None
    numerator, denominator = node.inputs
    exp = numerator.producer() if numerator is not None else None
    if exp is None or exp.op_type != "Exp" or exp.domain not in _DEFAULT or denominator is None:
        return None
    return exp.inputs[0] if _holds_row_sums(denominator, numerator, dims) else None


def _holds_row_sums(value: ir.Value, exp: ir.Value, dims: list) -> bool:
    """Whether ``value`` broadcasts each row's sum of ``exp`` over the last axis to that row."""
    chain = [value]
    node = value.producer()
    while node is not None and node.domain in _DEFAULT and node.op_type in _SHAPE_ONLY:
        chain.append(node.inputs[0])
        node = node.inputs[0].producer() if node.inputs[0] is not None else None
    if node is None or node.op_type != "ReduceSum" or node.domain not in _DEFAULT or node.inputs[0] is not exp:
        return False
    if _reduced_axes(node) != [len(dims) - 1]:
        return False
    if len(dims_of(chain[0]) or []) != len(dims):
        return False  # a lower-rank denominator would broadcast along the rows, not the classes
    return all(_row_shaped(v, dims) for v in chain)


def _reduced_axes(node: ir.Node) -> list[int] | None:
    """The ReduceSum's axes, normalised to non-negative positions; None when not constant."""
    rank = len(dims_of(node.inputs[0]) or [])
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        tensor = ir.convenience.get_const_tensor(node.inputs[1])
        axes = None if tensor is None else [int(a) for a in tensor.numpy().reshape(-1)]
    else:
        axes = list(node.attributes.get_ints("axes", [])) or None
    return None if axes is None or not rank else sorted(a % rank for a in axes)


def _row_shaped(value: ir.Value, dims: list) -> bool:
    """Rows of sums: rank ``r - 1``, or rank ``r`` ending in 1, or the Expand of that to the classes."""
    shape = dims_of(value)
    if shape is None:
        return False
    rank, lead = len(dims), list(shape)
    if len(shape) == rank:
        node = value.producer()
        last = shape[-1]
        expanded = (node is not None and node.op_type == "Expand" and last == dims[-1]
                    and (dims_of(node.inputs[0]) or [None])[-1] == 1)
        if last != 1 and not expanded:
            return False
        lead = lead[:-1]
    elif len(shape) != rank - 1:
        return False
    return rank <= 2 or (lead == list(dims[:-1]) and None not in lead)
