"""The random-model strategy: every model is valid, runs, stays tame and uses the chosen vocabulary."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings

from onnxsmith.ir import all_nodes
from onnxsmith.verify import generate_inputs, structure_problems
from onnxsmith.verify._model_draft import LIMIT
from onnxsmith.verify._session import run_model
from onnxsmith.verify.strategies import ALL_OPS, REDUNDANCY, models

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEARCH = settings(max_examples=300, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))


def _ops(model: ir.Model) -> set[str]:
    return {n.op_type for n in all_nodes(model)}


def _assert_valid_and_tame(model: ir.Model) -> None:
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    assert structure_problems(model) == []
    names = [v.name for v in model.graph.outputs]
    for seed in (0, 1):
        for name, out in zip(names, run_model(model, generate_inputs(model, seed=seed))):
            if out.dtype.kind in "fiu":
                assert np.all(np.isfinite(out)), f"output {name} is not finite"
                assert np.abs(out).max(initial=0) <= LIMIT, f"output {name} exceeds {LIMIT}"


@FAST
@given(models(max_nodes=16))
def test_models_pass_the_full_checker_and_run_tamely(model):
    _assert_valid_and_tame(model)


@FAST
@given(models(dtypes=("float32", "float64", "int32", "int64"), opset=21, max_nodes=10))
def test_models_with_every_supported_dtype_are_valid(model):
    _assert_valid_and_tame(model)


@FAST
@given(models(ops={"Add", "Relu", "MatMul"}, redundancy=(), min_nodes=3, max_nodes=6))
def test_vocabulary_and_node_bounds_are_respected(model):
    assert _ops(model) <= {"Add", "Relu", "MatMul"}
    assert 3 <= len(list(all_nodes(model))) <= 6


@FAST
@given(models(dtypes=("int64",), ops={"Add", "Mul", "Abs", "Neg"}, redundancy=()))
def test_inputs_have_the_requested_dtypes(model):
    assert {v.dtype for v in model.graph.inputs} == {ir.DataType.INT64}


@pytest.mark.parametrize("op", sorted(ALL_OPS))
def test_every_op_of_the_vocabulary_can_be_generated(op):
    model = find(models(ops={op}, redundancy=(), max_nodes=3), lambda m: op in _ops(m), settings=SEARCH)
    _assert_valid_and_tame(model)


def _initializer_arrays(model: ir.Model) -> list[bytes]:
    return [v.const_value.numpy().tobytes() + str(v.const_value.shape).encode()
            for v in model.graph.initializers.values()]


def _has_duplicate_constants(model: ir.Model) -> bool:
    arrays = _initializer_arrays(model)
    return len(arrays) != len(set(arrays))


def _has_identity_chain(model: ir.Model) -> bool:
    return any(n.op_type == "Identity" and n.inputs[0].producer() is not None
               and n.inputs[0].producer().op_type == "Identity" for n in model.graph)


def _is_constant(value: ir.Value | None) -> bool:
    producer = value.producer() if value is not None else None
    return value is not None and (value.is_initializer() or (producer is not None and producer.op_type == "Constant"))


def _has_constant_subgraph(model: ir.Model) -> bool:
    return any(n.op_type != "Constant" and n.inputs and all(map(_is_constant, n.inputs)) for n in model.graph)


def _has_dead_branch(model: ir.Model) -> bool:
    return any(not v.uses() and not v.is_graph_output() for n in model.graph for v in n.outputs)


def _has_repeated_subexpression(model: ir.Model) -> bool:
    seen = set()
    for n in model.graph:
        key = (n.op_type, tuple(id(v) for v in n.inputs), repr(sorted(n.attributes.items())))
        if key in seen:
            return True
        seen.add(key)
    return False


REDUNDANCY_PRESENT = {
    "duplicate-constants": _has_duplicate_constants,
    "identity-chains": _has_identity_chain,
    "constant-subgraphs": _has_constant_subgraph,
    "dead-branches": _has_dead_branch,
    "repeated-subexpressions": _has_repeated_subexpression,
}


@pytest.mark.parametrize("kind", REDUNDANCY)
def test_each_kind_of_redundancy_is_injected(kind):
    present = REDUNDANCY_PRESENT[kind]
    model = find(models(ops={"Add", "Mul", "Relu", "Transpose"}, redundancy=(kind,), max_nodes=8), present,
                 settings=SEARCH)
    _assert_valid_and_tame(model)


@pytest.mark.parametrize("kwargs, message", [
    ({"ops": {"Frobnicate"}}, "unsupported ops"),
    ({"dtypes": ("float16",)}, "unsupported dtype"),
    ({"opset": 9}, "opset must be between"),
    ({"redundancy": ("typos",)}, "unknown redundancy"),
    ({"min_nodes": 5, "max_nodes": 2}, "min_nodes <= max_nodes"),
])
def test_bad_arguments_are_rejected_up_front(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models(**kwargs)
