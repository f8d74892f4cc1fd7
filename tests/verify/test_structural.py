"""The structural verifier finds each broken invariant and names it."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from onnxsmith.errors import VerificationError
from onnxsmith.ir import parse_text
from onnxsmith.verify import structure_problems, verify_structure
from onnxsmith.verify.structural import _model_clean, verified_census

GOOD = """
<ir_version: 9, opset_import: ["" : 17]>
g (float[2] x, bool c) => (float[2] y) {
    a = Relu(x)
    y = If(c) <then_branch = t () => (float[2] o) { o = Neg(a) },
               else_branch = e () => (float[2] o) { o = Abs(a) }>
}
"""


def test_valid_model_with_subgraphs_has_no_problems():
    verify_structure(parse_text(GOOD))


def test_unsorted_graph_is_reported():
    model = parse_text(GOOD)
    relu, if_node = list(model.graph)
    model.graph.remove(relu)
    model.graph.append(relu)
    problems = structure_problems(model)
    assert any("before" in p and "not topologically sorted" in p for p in problems)


def test_undefined_input_is_reported():
    model = parse_text(GOOD)
    relu = next(iter(model.graph))
    stranger = ir.Value(name="stranger")
    relu.replace_input_with(0, stranger)
    with pytest.raises(VerificationError, match="input 0 'stranger' is not defined"):
        verify_structure(model, where="after pass 'x'")


def test_missing_opset_import_is_reported():
    model = parse_text(GOOD)
    relu = next(iter(model.graph))
    node = ir.Node("com.example", "Custom", [relu.outputs[0]])
    model.graph.insert_after(relu, node)
    assert any("domain 'com.example' without an opset import" in p for p in structure_problems(model))


def test_duplicate_names_and_untyped_outputs_are_reported():
    model = parse_text(GOOD)
    relu = next(iter(model.graph))
    relu.outputs[0].name = "x"
    model.graph.outputs[0].type = None
    problems = structure_problems(model)
    assert any("value name 'x' is defined twice" in p for p in problems)
    assert any("graph output 'y' has no known type" in p for p in problems)


def test_undefined_graph_output_is_reported():
    model = parse_text(GOOD)
    dangling = ir.Value(name="dangling", type=ir.TensorType(ir.DataType.FLOAT))
    model.graph.outputs.append(dangling)
    assert any("graph output 'dangling' is not defined" in p for p in structure_problems(model))


def test_subgraph_may_not_use_later_outer_values():
    text = """
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[2] x, bool c) => (float[2] y) {
        y = If(c) <then_branch = t () => (float[2] o) { o = Neg(a) },
                   else_branch = e () => (float[2] o) { o = Abs(x) }>
        a = Relu(x)
    }
    """
    model = parse_text(text, check=False)
    assert any("'a'" in p for p in structure_problems(model))



def test_verified_census_raises_as_verify_structure_does():
    model = parse_text(GOOD)
    next(iter(model.graph)).replace_input_with(0, ir.Value(name="stranger"))
    with pytest.raises(VerificationError, match="^after pass 'x': .*input 0 'stranger' is not defined"):
        verified_census(model, where="after pass 'x'")


def _initializer_without_tensor(model: ir.Model) -> str:
    model.graph.register_initializer(ir.Value(name="w", type=ir.TensorType(ir.DataType.FLOAT),
                                              const_value=ir.tensor([1.0], name="w")))
    model.graph.initializers["w"].const_value = None
    return "initializer 'w' has no tensor"


def _untyped_graph_input(model: ir.Model) -> str:
    model.graph.inputs[0].type = None
    return "graph input 'x' has no known type"


def _other_producer(model: ir.Model) -> str:
    relu, if_node = list(model.graph)
    relu.outputs[0]._producer = if_node  # corrupts the IR as only a buggy pass could
    return "output 'a' of a Relu node records another producer"


def _outer_value_used_before_definition(model: ir.Model) -> str:
    relu, if_node = list(model.graph)
    model.graph.remove(if_node)
    model.graph.insert_before(relu, if_node)
    return "uses 'a' before a Relu node defines it"


@pytest.mark.parametrize("breakage", [_initializer_without_tensor, _untyped_graph_input, _other_producer,
                                      _outer_value_used_before_definition])
def test_quick_check_defers_every_broken_invariant_to_the_detailed_walk(breakage):
    model = parse_text(GOOD)
    assert _model_clean(model, None)
    expected = breakage(model)
    assert not _model_clean(model, None)
    assert any(expected in p for p in structure_problems(model)), structure_problems(model)


def test_a_value_listed_twice_is_not_a_problem_though_the_quick_check_defers_it():
    model = parse_text(GOOD)
    model.graph.inputs.append(model.graph.inputs[0])  # same value twice: one name, one value
    assert not _model_clean(model, None)
    assert structure_problems(model) == []
