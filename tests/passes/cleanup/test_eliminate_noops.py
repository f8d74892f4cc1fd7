"""eliminate-noops: each rule, what must stay, and stable graph output names."""

from __future__ import annotations

import pytest

from onnxsmith.ir import parse_text

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def _single(body: str, inputs: str = "float[N, 4] x", initializers: str = "") -> str:
    inits = f"<{initializers}>" if initializers else ""
    return f"""{HEADER}
        g ({inputs}) => (float[N, 4] y) {inits} {{
            t = Relu(x)
            {body}
            y = Neg(u)
        }}"""


REMOVED = {
    "identity": ("u = Identity(t)", ""),
    "dropout": ("u = Dropout(t)", ""),
    "dropout-unused-mask": ("u, mask = Dropout(t)", ""),
    "dropout-training-false": ("u = Dropout(t, r, f)", "float r = {0.3}, bool f = {0}"),
    "dropout-training-ratio-zero": ("u = Dropout(t, r, f)", "float r = {0}, bool f = {1}"),
    "cast-same-type": ("u = Cast <to = 1> (t)", ""),
    "castlike-same-type": ("u = CastLike(t, k)", "float[1] k = {0}"),
    "reshape-copy-dims": ("u = Reshape(t, s)", "int64[2] s = {0, 0}"),
    "reshape-minus-one": ("u = Reshape(t, s)", "int64[2] s = {-1, 4}"),
    "transpose-identity": ("u = Transpose <perm = [0, 1]> (t)", ""),
    "flatten-rank-2": ("u = Flatten <axis = 1> (t)", ""),
    "expand-ones": ("u = Expand(t, s)", "int64[2] s = {1, 1}"),
    "tile-ones": ("u = Tile(t, s)", "int64[2] s = {1, 1}"),
    "pad-zeros": ("u = Pad(t, p)", "int64[4] p = {0, 0, 0, 0}"),
    "slice-everything": ("u = Slice(t, s, e)", "int64[2] s = {0, -9}, int64[2] e = {9223372036854775807, 4}"),
    "concat-one": ("u = Concat <axis = 0> (t)", ""),
    "sum-one": ("u = Sum(t)", ""),
    "split-one": ("u = Split <axis = 1> (t)", ""),
    "add-zero": ("u = Add(t, z)", "float[4] z = {0, 0, 0, 0}"),
    "zero-add": ("u = Add(z, t)", "float[1] z = {0}"),
    "sub-zero": ("u = Sub(t, z)", "float z = {0}"),
    "mul-one": ("u = Mul(t, o)", "float[1, 4] o = {1, 1, 1, 1}"),
    "one-mul": ("u = Mul(o, t)", "float o = {1}"),
    "div-one": ("u = Div(t, o)", "float o = {1}"),
}


@pytest.mark.parametrize("case", sorted(REMOVED))
def test_noop_is_removed(case, golden):
    body, inits = REMOVED[case]
    report = golden("infer-shapes,eliminate-noops", _single(body, initializers=inits), f"""{HEADER}
        g (float[N, 4] x) => (float[N, 4] y) {{
            t = Relu(x)
            y = Neg(t)
        }}""")
    assert report.records[1].stats["removed_nodes"] == 1


KEPT = {
    "dropout-training": ("u = Dropout(t, r, f)", "float r = {0.3}, bool f = {1}"),
    "cast-other-type": ("c = Cast <to = 10> (t)\n u = Cast <to = 1> (c)", ""),
    "reshape-changes-shape": ("u = Reshape(t, s)", "int64[2] s = {-1, 2}"),
    "transpose-swap": ("u = Transpose <perm = [1, 0]> (t)", ""),
    "flatten-axis-0": ("u = Flatten <axis = 0> (t)", ""),
    "pad-nonzero": ("u = Pad(t, p)", "int64[4] p = {0, 1, 0, -1}"),
    "slice-reversed": ("u = Slice(t, s, e, a, st)",
                       "int64[1] s = {-1}, int64[1] e = {-9223372036854775807}, int64[1] a = {1}, int64[1] st = {-1}"),
    "slice-every-other": ("u = Slice(t, s, e, a, st)",
                          "int64[1] s = {0}, int64[1] e = {9223372036854775807}, int64[1] a = {1}, int64[1] st = {2}"),
    "slice-from-one": ("u = Slice(t, s, e)", "int64[1] s = {1}, int64[1] e = {9223372036854775807}"),
    "add-nonzero": ("u = Add(t, z)", "float z = {0.5}"),
    "sub-from-zero": ("u = Sub(z, t)", "float z = {0}"),
    "div-into-one": ("u = Div(o, t)", "float o = {1}"),
    "mul-by-zero": ("u = Mul(t, o)", "float o = {0}"),
}


@pytest.mark.parametrize("case", sorted(KEPT))
def test_real_computation_is_kept(case, helpers):
    body, inits = KEPT[case]
    model = parse_text(_single(body, initializers=inits))
    report = helpers.run("infer-shapes,eliminate-noops", model, verify="structural")  # training Dropout is random
    assert not report.records[1].modified


def test_dropout_whose_mask_is_read_is_kept(helpers):
    model = parse_text(f"""{HEADER}
        g (float[2] x) => (float[2] y) {{
            u, mask = Dropout(x)
            m = Cast <to = 1> (mask)
            y = Add(u, m)
        }}""")
    assert not helpers.run("eliminate-noops", model).modified


def test_add_zero_that_adds_dimensions_is_kept(helpers):
    model = parse_text(f"""{HEADER}
        g (float[N, 4] x) => (float[2, N, 4] y) <float[2, 1, 4] z = {{0, 0, 0, 0, 0, 0, 0, 0}}> {{
            u = Add(x, z)
            y = Neg(u)
        }}""")
    assert not helpers.run("eliminate-noops", model).modified


def test_add_zero_that_broadcasts_a_dimension_of_one_is_kept(helpers):
    model = parse_text(f"""{HEADER}
        g (float[1, 4] x) => (float[3, 4] y) <float[3, 4] z = {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}> {{
            u = Add(x, z)
            y = Neg(u)
        }}""")
    assert not helpers.run("eliminate-noops", model).modified


def test_add_zero_with_an_unknown_shape_is_kept(helpers):
    model = parse_text(f"""{HEADER}
        g (float[N, 4] x) => (float[N, 4] y) <float[4] z = {{0, 0, 0, 0}}> {{
            u = Add(x, z)
            y = Neg(u)
        }}""")
    model.graph.inputs[0].shape = None
    assert not helpers.run("eliminate-noops", model, verify="structural").modified


def test_integer_add_zero_is_removed(golden):
    golden("infer-shapes,eliminate-noops", f"""{HEADER}
        g (int64[3] x) => (int64[3] y) <int64 z = {{0}}> {{
            u = Add(x, z)
            y = Neg(u)
        }}""", f"""{HEADER}
        g (int64[3] x) => (int64[3] y) {{
            y = Neg(x)
        }}""")


def test_chains_collapse_in_one_run(golden):
    golden("eliminate-noops", f"""{HEADER}
        g (float[2] x) => (float[2] y) {{
            a = Relu(x)
            b = Identity(a)
            c = Dropout(b)
            d = Identity(c)
            y = Neg(d)
        }}""", f"""{HEADER}
        g (float[2] x) => (float[2] y) {{
            a = Relu(x)
            y = Neg(a)
        }}""")


def test_a_noop_producing_a_graph_output_hands_its_name_to_its_input(golden):
    golden("eliminate-noops", f"""{HEADER}
        g (float[2] x) => (float[2] y) {{
            a = Relu(x)
            y = Identity(a)
        }}""", f"""{HEADER}
        g (float[2] x) => (float[2] y) {{
            y = Relu(x)
        }}""")


def test_an_identity_between_graph_input_and_output_stays(golden):
    text = f"""{HEADER}
        g (float[2] x) => (float[2] y) {{
            y = Identity(x)
        }}"""
    golden("eliminate-noops", text, text)


def test_two_outputs_naming_the_same_tensor_keep_their_identity(golden):
    text = f"""{HEADER}
        g (float[2] x) => (float[2] a, float[2] b) {{
            a = Relu(x)
            b = Identity(a)
        }}"""
    golden("eliminate-noops", text, text)


def test_other_noops_between_interface_values_become_identity(golden):
    report = golden("eliminate-noops", f"""{HEADER}
        g (float[2] x) => (float[2] y, float[2] k2) <float[2] k = {{1, 2}}> {{
            y = Dropout(x)
            k2 = Cast <to = 1> (k)
        }}""", f"""{HEADER}
        g (float[2] x) => (float[2] y, float[2] k2) <float[2] k = {{1, 2}}> {{
            y = Identity(x)
            k2 = Identity(k)
        }}""")
    assert report.records[0].stats["replaced_by_identity"] == 2


def test_noops_inside_subgraphs_and_functions_are_removed(golden):
    golden("eliminate-noops", """
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        g (bool c, float[2] x) => (float[2] y) {
            y = If(c) <
                then_branch = t () => (float[2] t_out) {
                    a = Neg(x)
                    b = Identity(a)
                    t_out = Dropout(b)
                },
                else_branch = e () => (float[2] e_out) { e_out = local.F(x) }
            >
        }
        <domain: "local", opset_import: ["" : 17]>
        F (p) => (q) {
            r = Relu(p)
            s = Identity(r)
            q = Neg(s)
        }
    """, """
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        g (bool c, float[2] x) => (float[2] y) {
            y = If(c) <
                then_branch = t () => (float[2] t_out) { t_out = Neg(x) },
                else_branch = e () => (float[2] e_out) { e_out = local.F(x) }
            >
        }
        <domain: "local", opset_import: ["" : 17]>
        F (p) => (q) {
            r = Relu(p)
            q = Neg(r)
        }
    """)


def test_a_subgraph_output_that_is_an_outer_value_keeps_its_identity(golden):
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        g (bool c, float[2] x) => (float[2] y) {
            a = Neg(x)
            y = If(c) <
                then_branch = t () => (float[2] t_out) { t_out = Identity(a) },
                else_branch = e () => (float[2] e_out) { e_out = Identity(x) }
            >
        }
    """
    golden("eliminate-noops", text, text)


def test_constant_operands_only_the_noop_read_go_with_it(helpers):
    model = parse_text(_single("u = Reshape(t, s)", initializers="int64[2] s = {0, 4}"))
    report = helpers.run("infer-shapes,eliminate-noops", model)
    assert report.records[1].stats["removed_initializers"] == 1
    assert not model.graph.initializers


def test_a_producer_that_gains_a_shape_is_looked_at_again(helpers):
    model = parse_text(f"""{HEADER}
        g (float[2, 4] x) => (float[2, 4] y) {{
            s = Shape(x)
            r = Expand(x, s)
            y = Identity(r)
        }}""")
    report = helpers.run("eliminate-noops", model)
    assert report.records[0].stats["replaced_by_identity"] == 1
    assert helpers.op_types(model) == ["Shape", "Identity"]
    assert model.graph.outputs[0].producer().inputs[0] is model.graph.inputs[0]
    helpers.assert_idempotent("eliminate-noops", model)


def test_readers_of_a_value_that_gains_a_type_are_looked_at_again(golden):
    report = golden("eliminate-noops", f"""{HEADER}
        g (float[2] x) => (float[2] y, float[2] z) {{
            a = Relu(x)
            z = Cast <to = 1> (a)
            y = Identity(a)
        }}""", f"""{HEADER}
        g (float[2] x) => (float[2] y, float[2] z) {{
            y = Relu(x)
            z = Identity(y)
        }}""")
    assert report.records[0].stats["replaced_by_identity"] == 1
