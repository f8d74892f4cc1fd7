"""The numpy kernels used for folding agree exactly with onnxruntime (dtype, shape and bits)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxsmith.passes.cleanup._evaluate import _run_onnxruntime
from onnxsmith.passes.cleanup._numpy_kernels import KERNELS, Unsupported

OPSETS = {"": 18}


def _node(op: str, arrays: list[np.ndarray | None], outputs: int = 1, **attributes: Any) -> ir.Node:
    inputs = [None if a is None else ir.Value(name=f"i{k}") for k, a in enumerate(arrays)]
    return ir.Node("", op, inputs, attributes=ir.convenience.convert_attributes(attributes), num_outputs=outputs)


def _assert_same_as_onnxruntime(op: str, arrays: list[np.ndarray | None], outputs: int = 1, opset: int = 18,
                                **attributes: Any) -> None:
    node = _node(op, arrays, outputs, **attributes)
    ours = KERNELS[op](node, arrays, opset)
    theirs = _run_onnxruntime(node, arrays, {"": opset}, 9)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape, (a, b)
        np.testing.assert_array_equal(_bits(a), _bits(b))


def _bits(a: np.ndarray) -> np.ndarray:
    """Floats as raw bytes, so that -0.0 vs 0.0 and NaN payloads count as differences."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8) if a.dtype.kind == "f" else a


i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
f32 = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5

CASES = [
    ("Identity", [f32], {}),
    ("Cast", [f32], {"to": ir.DataType.INT32}),
    ("Cast", [i64(3, -4)], {"to": ir.DataType.FLOAT16}),
    ("Cast", [np.array([0.0, -2.5, 3.0], np.float32)], {"to": ir.DataType.BOOL}),
    ("CastLike", [i64(1, 2), np.zeros(1, np.float64)], {}),
    ("Shape", [f32], {}),
    ("Shape", [f32], {"start": -2}),
    ("Shape", [f32], {"start": 1, "end": -1}),
    ("Size", [f32], {}),
    ("Reshape", [f32, i64(0, -1)], {}),
    ("Reshape", [np.zeros((0, 3), np.float32), i64(0, 3)], {"allowzero": 1}),
    ("Flatten", [f32], {"axis": 2}),
    ("Flatten", [f32], {"axis": -3}),
    ("Unsqueeze", [f32, i64(-1, 0)], {}),
    ("Squeeze", [np.zeros((1, 3, 1), np.float32)], {}),
    ("Squeeze", [np.zeros((1, 3, 1), np.float32), i64(-1)], {}),
    ("Concat", [i64(1, 2), i64(3)], {"axis": 0}),
    ("Concat", [f32, f32], {"axis": -1}),
    ("Gather", [f32, i64(-1, 0)], {"axis": 1}),
    ("Gather", [i64(5, 6, 7), np.array(-3, np.int64)], {}),
    ("Transpose", [f32], {}),
    ("Transpose", [f32], {"perm": [1, 0, 2]}),
    ("Add", [f32, np.float32(0.25) * np.ones(4, np.float32)], {}),
    ("Sub", [i64(1, 2), i64(5)], {}),
    ("Mul", [np.array([1e30, -2], np.float32), np.array([1e30, 3], np.float32)], {}),
    ("Div", [f32, np.array([0.0, -3.0, 7.0, 1e-3], np.float32)], {}),
    ("Div", [i64(7, -7, 7, -7, 0, -1), i64(2, 2, -2, -2, 5, 3)], {}),
    ("Div", [np.array([-128, 127], np.int8), np.array([3, -2], np.int8)], {}),
    ("Neg", [i64(3, -4)], {}),
    ("Abs", [f32], {}),
    ("Sqrt", [np.array([2.0, 0.0, 1e-8], np.float32)], {}),
    ("Reciprocal", [np.array([3.0, -7.0], np.float64)], {}),
    ("Floor", [f32 / 3], {}),
    ("Ceil", [f32 / 3], {}),
    ("Equal", [i64(1, 2, 3), i64(2)], {}),
    ("Less", [f32, np.array(0, np.float32)], {}),
    ("GreaterOrEqual", [i64(1, 2, 3), i64(2)], {}),
    ("Not", [np.array([True, False])], {}),
    ("And", [np.array([True, False]), np.array([True])], {}),
    ("Where", [np.array([True, False]), i64(1, 2), i64(9)], {}),
    ("Max", [i64(1, 5), i64(3, 2), i64(0)], {}),
    ("Min", [np.array([1, 5], np.int32)], {}),
    ("Sum", [f32, f32, f32], {}),
    ("Range", [np.array(10, np.int64), np.array(-3, np.int64), np.array(-4, np.int64)], {}),
    ("Range", [np.array(0, np.int32), np.array(5, np.int32), np.array(2, np.int32)], {}),
    ("ConstantOfShape", [i64(2, 3)], {"value": ir.tensor(np.array([7], np.int32))}),
    ("ConstantOfShape", [i64()], {}),
    ("Expand", [np.array([[1.0], [2.0]], np.float32), i64(3, 1, 4)], {}),
    ("Tile", [f32, i64(1, 2, 1)], {}),
    ("Slice", [f32, i64(-1), i64(-100), i64(2), i64(-1)], {}),
    ("Slice", [f32, i64(1, 0), i64(100, -1), i64(2, 1), None], {}),
]


@pytest.mark.parametrize(("op", "arrays", "attributes"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_kernel_matches_onnxruntime(op, arrays, attributes):
    _assert_same_as_onnxruntime(op, arrays, **attributes)


@pytest.mark.parametrize(("opset", "outputs", "arrays", "attributes"), [
    (18, 3, [np.arange(8, dtype=np.int64)], {"num_outputs": 3}),
    (18, 2, [f32, i64(1, 2)], {"axis": 1}),
    (13, 2, [f32], {"axis": -1}),
    (11, 2, [f32], {"axis": 2, "split": [1, 3]}),
])
def test_split_matches_onnxruntime(opset, outputs, arrays, attributes):
    _assert_same_as_onnxruntime("Split", arrays, outputs, opset, **attributes)


def test_opset_dependent_forms_match_onnxruntime():
    _assert_same_as_onnxruntime("Unsqueeze", [f32], opset=11, axes=[0, 4])
    _assert_same_as_onnxruntime("Squeeze", [np.zeros((1, 3), np.float32)], opset=11, axes=[0])
    _assert_same_as_onnxruntime("Slice", [f32], opset=9, starts=[1], ends=[3], axes=[2])


@settings(max_examples=40, deadline=None)
@given(start=st.integers(-6, 6), end=st.integers(-7, 7), step=st.sampled_from([-3, -2, -1, 1, 2, 3]),
       axis=st.integers(-3, 2))
def test_slice_clamping_matches_onnxruntime(start, end, step, axis):
    _assert_same_as_onnxruntime("Slice", [f32, i64(start), i64(end), i64(axis), i64(step)])


@settings(max_examples=40, deadline=None)
@given(a=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=4),
       b=st.integers(-100, 100).filter(lambda v: v != 0))
def test_integer_division_matches_onnxruntime(a, b):
    _assert_same_as_onnxruntime("Div", [np.array(a, np.int64), i64(b)])


@pytest.mark.parametrize(("op", "arrays", "attributes"), [
    ("Cast", [np.array([np.nan], np.float32)], {"to": ir.DataType.INT64}),
    ("Cast", [np.array([3e9], np.float32)], {"to": ir.DataType.INT32}),
    ("Div", [i64(1), i64(0)], {}),
    ("Max", [np.array([np.nan], np.float32), np.array([1], np.float32)], {}),
    ("Range", [np.array(0, np.float32), np.array(1, np.float32), np.array(0.1, np.float32)], {}),
    ("Gather", [i64(1, 2), i64(2)], {}),
    ("Sqrt", [i64(4)], {}),
])
def test_cases_without_an_exact_numpy_answer_are_declined(op, arrays, attributes):
    with pytest.raises(Unsupported):
        KERNELS[op](_node(op, arrays, **attributes), arrays, 18)
