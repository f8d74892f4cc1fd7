"""remove-unused: dead nodes, initializers, functions and opset imports."""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.ir import GraphBuilder, all_nodes, parse_text


def test_dead_chain_and_unused_initializer_are_removed_but_inputs_stay(golden):
    report = golden("remove-unused", """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x, float[2] unused_input) => (float[2] y) <float[2] w = {1, 2}, float[2] dead_w = {3, 4}> {
            d1 = Mul(x, dead_w)
            d2 = Relu(d1)
            y = Add(x, w)
        }
    """, """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x, float[2] unused_input) => (float[2] y) <float[2] w = {1, 2}> {
            y = Add(x, w)
        }
    """)
    assert report.records[0].stats["removed_nodes"] == 2
    assert report.records[0].stats["removed_initializers"] == 1


def test_graph_outputs_and_everything_they_need_are_kept(golden):
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y, float[2] z, float[2] x_out) <float[2] w = {1, 2}> {
            a = Relu(x)
            y = Add(a, w)
            z = Neg(a)
            x_out = Identity(x)
        }
    """
    golden("remove-unused", text, text)


def test_initializer_that_is_a_graph_input_or_output_is_kept(helpers):
    model = parse_text("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x, float[2] w) => (float[2] y, float[2] k) <float[2] w = {1, 2}, float[2] k = {3, 4}> {
            y = Relu(x)
        }
    """)
    report = helpers.run("remove-unused", model, verify="structural")
    assert not report.modified
    assert set(model.graph.initializers) == {"w", "k"}


SUBGRAPHS = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool c, float[2] x) => (float[2] y) <float[2] only_in_branch = {5, 6}, float[2] only_in_dead_if = {7, 8}> {
        outer = Neg(x)
        dead_outer = Abs(x)
        dead_if = If(c) <
            then_branch = t1 () => (float[2] t_out) { t_out = Add(dead_outer, only_in_dead_if) },
            else_branch = e1 () => (float[2] e_out) { e_out = Identity(x) }
        >
        y = If(c) <
            then_branch = t2 () => (float[2] t_out2) {
                dead_inner = Sqrt(outer)
                t_out2 = Add(outer, only_in_branch)
            },
            else_branch = e2 () => (float[2] e_out2) { e_out2 = Identity(x) }
        >
    }
"""


def test_subgraphs_are_swept_and_keep_what_they_read_from_outside(golden):
    golden("remove-unused", SUBGRAPHS, """
        <ir_version: 8, opset_import: ["" : 17]>
        g (bool c, float[2] x) => (float[2] y) <float[2] only_in_branch = {5, 6}> {
            outer = Neg(x)
            y = If(c) <
                then_branch = t2 () => (float[2] t_out2) { t_out2 = Add(outer, only_in_branch) },
                else_branch = e2 () => (float[2] e_out2) { e_out2 = Identity(x) }
            >
        }
    """)


def test_a_dead_node_with_subgraphs_releases_the_outer_values_it_read(helpers):
    model = parse_text(SUBGRAPHS)
    helpers.run("remove-unused", model, verify="structural")
    in_model = set(all_nodes(model))
    for value in (model.graph.inputs[1], *model.graph.initializers.values()):
        assert all(use.node in in_model for use in value.uses()), value.name


FUNCTIONS = """
    <ir_version: 8, opset_import: ["" : 17, "local" : 1, "unused.domain" : 1]>
    g (float[2] x) => (float[2] y) {
        y = local.Outer(x)
    }
    <domain: "local", opset_import: ["" : 17, "local" : 1, "stale" : 1]>
    Outer (a) => (b) {
        dead = Neg(a)
        b = local.Inner(a)
    }
    <domain: "local", opset_import: ["" : 17]>
    Inner (a) => (b) {
        b = Add(a, a)
    }
    <domain: "local", opset_import: ["" : 17]>
    Unused (a) => (b) {
        b = Relu(a)
    }
"""


def test_unused_functions_and_opset_imports_are_removed(helpers):
    model = parse_text(FUNCTIONS)
    report = helpers.run("remove-unused", model)
    assert sorted(name for _, name, _ in model.functions) == ["Inner", "Outer"]
    assert model.opset_imports == {"": 17, "local": 1}
    outer = model.functions[("local", "Outer", "")]
    assert [n.op_type for n in outer] == ["Inner"]
    assert outer.opset_imports == {"": 17, "local": 1}
    stats = report.records[0].stats
    assert (stats["removed_functions"], stats["removed_opsets"], stats["removed_nodes"]) == (1, 2, 1)
    helpers.assert_idempotent("remove-unused", model)


def test_the_default_domain_import_is_never_removed(helpers):
    model = parse_text("""
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        g (float[2] x) => (float[2] y) {
            y = local.Twice(x)
        }
        <domain: "local", opset_import: ["" : 17, "local" : 1]>
        Twice (a) => (b) {
            b = local.Same(a)
        }
        <domain: "local", opset_import: ["" : 17]>
        Same (a) => (b) {
            b = Identity(a)
        }
    """)
    helpers.run("remove-unused", model)
    assert model.opset_imports == {"": 17, "local": 1}
    assert model.functions[("local", "Twice", "")].opset_imports == {"": 17, "local": 1}


def test_a_node_without_outputs_is_kept_for_its_side_effect(helpers):
    b = GraphBuilder(opset=17, opsets={"com.example": 1})
    x = b.input("x", "float32", [2])
    b.op("Print", x, _domain="com.example", _outputs=0)
    b.output(b.Relu(x), "y")
    model = b.build(infer_types=False)
    model.graph.outputs[0].dtype = ir.DataType.FLOAT
    report = helpers.run("remove-unused", model, verify="none")
    assert not report.modified
    assert helpers.op_types(model) == ["Print", "Relu"]


def test_unused_function_inputs_stay(helpers):
    model = parse_text("""
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        g (float[2] x) => (float[2] y) {
            y = local.First(x, x)
        }
        <domain: "local", opset_import: ["" : 17]>
        First (a, ignored) => (b) {
            dead = Neg(ignored)
            b = Identity(a)
        }
    """)
    helpers.run("remove-unused", model)
    first = model.functions[("local", "First", "")]
    assert [v.name for v in first.inputs] == ["a", "ignored"]
    assert [n.op_type for n in first] == ["Identity"]
