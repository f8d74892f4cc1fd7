"""cse: what merges (commutative operands, chains, subgraphs) and what must never merge."""

from __future__ import annotations

from onnxsmith.ir import parse_text

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def test_identical_nodes_merge_and_their_users_follow(golden):
    report = golden("cse", f"""{HEADER}
        g (float[2] x, float[2] w) => (float[2] y) {{
            a1 = Add(x, w)
            a2 = Add(w, x)
            r1 = Relu(a1)
            r2 = Relu(a2)
            y = Mul(r1, r2)
        }}""", f"""{HEADER}
        g (float[2] x, float[2] w) => (float[2] y) {{
            a1 = Add(x, w)
            r1 = Relu(a1)
            y = Mul(r1, r1)
        }}""")
    assert report.records[0].stats == {"merged_nodes": 2}


def test_operand_order_matters_for_non_commutative_ops(golden):
    text = f"""{HEADER}
        g (float[2] x, float[2] w) => (float[2] y) {{
            a = Sub(x, w)
            b = Sub(w, x)
            y = Mul(a, b)
        }}"""
    golden("cse", text, text)


def test_attributes_must_match_exactly(golden):
    text = f"""{HEADER}
        g (float[2, 3] x) => (float[3, 2] y, float[2, 3] z) {{
            a = Transpose <perm = [1, 0]> (x)
            b = Transpose <perm = [0, 1]> (x)
            y = Neg(a)
            c = LeakyRelu <alpha = 0.1> (b)
            d = LeakyRelu <alpha = 0.2> (b)
            z = Add(c, d)
        }}"""
    golden("cse", text, text)


def test_small_constants_merge_and_negative_zero_stays_apart(golden):
    golden("cse", f"""{HEADER}
        g (float[2] x) => (float[2] y) {{
            c1 = Constant <value = float[2] {{1, 0}}> ()
            c2 = Constant <value = float[2] {{1, 0}}> ()
            c3 = Constant <value = float[2] {{1, -0.0}}> ()
            a = Add(x, c1)
            b = Add(a, c2)
            y = Add(b, c3)
        }}""", f"""{HEADER}
        g (float[2] x) => (float[2] y) {{
            c1 = Constant <value = float[2] {{1, 0}}> ()
            c3 = Constant <value = float[2] {{1, -0.0}}> ()
            a = Add(x, c1)
            b = Add(a, c1)
            y = Add(b, c3)
        }}""")


def test_random_ops_and_training_dropout_never_merge(helpers):
    model = parse_text(f"""{HEADER}
        g (float[2] x) => (float[2] y) <float r = {{0.5}}, bool t = {{1}}> {{
            n1 = RandomNormalLike(x)
            n2 = RandomNormalLike(x)
            d1 = Dropout(x, r, t)
            d2 = Dropout(x, r, t)
            a = Add(n1, n2)
            b = Add(d1, d2)
            y = Add(a, b)
        }}""")
    assert not helpers.run("cse", model, verify="structural").modified


def test_custom_domain_ops_merge_only_when_asked(helpers):
    text = """
        <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
        g (float[2] x) => (float[2] y) {
            a = com.example.Op(x)
            b = com.example.Op(x)
            y = Add(a, b)
        }"""
    model = parse_text(text, check=False)
    assert not helpers.run("cse", model, verify="none").modified
    assert helpers.run("cse{custom-domains=true}", model, verify="none").modified
    assert helpers.op_types(model) == ["Op", "Add"]


def test_nodes_with_subgraphs_are_not_merged_but_their_bodies_are_cleaned(golden):
    golden("cse", f"""{HEADER}
        g (bool c, float[2] x) => (float[2] y, float[2] z) {{
            outer = Relu(x)
            y = If(c) <
                then_branch = t1 () => (float[2] o1) {{
                    inner = Relu(x)
                    o1 = Neg(inner)
                }},
                else_branch = e1 () => (float[2] o2) {{ o2 = Identity(x) }}
            >
            z = If(c) <
                then_branch = t2 () => (float[2] o3) {{
                    inner2 = Relu(x)
                    o3 = Neg(inner2)
                }},
                else_branch = e2 () => (float[2] o4) {{ o4 = Identity(x) }}
            >
        }}""", f"""{HEADER}
        g (bool c, float[2] x) => (float[2] y, float[2] z) {{
            outer = Relu(x)
            y = If(c) <
                then_branch = t1 () => (float[2] o1) {{ o1 = Neg(outer) }},
                else_branch = e1 () => (float[2] o2) {{ o2 = Identity(x) }}
            >
            z = If(c) <
                then_branch = t2 () => (float[2] o3) {{ o3 = Neg(outer) }},
                else_branch = e2 () => (float[2] o4) {{ o4 = Identity(x) }}
            >
        }}""")


def test_a_duplicate_graph_output_keeps_its_name(golden):
    golden("cse", f"""{HEADER}
        g (float[2] x) => (float[2] y, float[2] z) {{
            a = Relu(x)
            y = Neg(a)
            b = Relu(x)
            z = Add(b, y)
        }}""", f"""{HEADER}
        g (float[2] x) => (float[2] y, float[2] z) {{
            a = Relu(x)
            y = Neg(a)
            z = Add(a, y)
        }}""")


def test_two_outputs_computing_the_same_thing_both_stay(golden):
    text = f"""{HEADER}
        g (float[2] x) => (float[2] y, float[2] z) {{
            y = Relu(x)
            z = Relu(x)
        }}"""
    golden("cse", text, text)


def test_a_renamed_output_name_moves_to_the_surviving_value(golden):
    golden("cse", f"""{HEADER}
        g (float[2] x) => (float[2] y, float[2] z) {{
            a = Relu(x)
            b = Neg(a)
            y = Relu(x)
            z = Add(b, y)
        }}""", f"""{HEADER}
        g (float[2] x) => (float[2] y, float[2] z) {{
            y = Relu(x)
            b = Neg(y)
            z = Add(b, y)
        }}""")


def test_function_bodies_are_cleaned(helpers):
    model = parse_text("""
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        g (float[2] x) => (float[2] y) { y = local.F(x) }
        <domain: "local", opset_import: ["" : 17]>
        F (p) => (q) {
            a = Exp(p)
            b = Exp(p)
            q = Add(a, b)
        }
    """)
    helpers.run("cse", model)
    assert [n.op_type for n in model.functions[("local", "F", "")]] == ["Exp", "Add"]


def test_string_constants_merge(helpers):
    model = parse_text("""
        <ir_version: 9, opset_import: ["" : 19]>
        g (string[2] x) => (bool[2] y) {
            a = Constant <value = string[2] {"p", "q"}> ()
            b = Constant <value = string[2] {"p", "q"}> ()
            c = Constant <value = string[2] {"pq", ""}> ()
            e1 = Equal(x, a)
            e2 = Equal(x, b)
            e3 = Equal(x, c)
            o = Or(e1, e2)
            y = Or(o, e3)
        }""")
    report = helpers.run("cse", model)
    assert report.records[0].stats == {"merged_nodes": 2}
    assert helpers.op_types(model).count("Constant") == 2
