"""fold-constants: what folds, what must not, the size rule and lazy reading of weights."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.ir import GraphBuilder, load, parse_text, save
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.cleanup import FoldConstants


def test_constant_subgraphs_fold_into_initializers(golden):
    report = golden("fold-constants", """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 4] y) <float[4] w = {1, 2, 3, 4}, int64[1] minus_one = {-1}> {
            two = Constant <value = float {2}> ()
            scaled = Mul(w, two)
            four = Constant <value_ints = [4]> ()
            shape = Concat <axis = 0> (minus_one, four)
            flat = Reshape(x, shape)
            y = Add(flat, scaled)
        }
    """, """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 4] y) <float[4] scaled = {2, 4, 6, 8}, int64[2] shape = {-1, 4}> {
            flat = Reshape(x, shape)
            y = Add(flat, scaled)
        }
    """)
    stats = report.records[0].stats
    assert (stats["folded_nodes"], stats["removed_constant_nodes"], stats["removed_initializers"]) == (2, 2, 2)


def test_constants_still_in_use_become_initializers(golden):
    report = golden("fold-constants", """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) {
            k = Constant <value_floats = [1.0, 2.5]> ()
            y = Add(x, k)
        }
    """, """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) <float[2] k = {1, 2.5}> {
            y = Add(x, k)
        }
    """)
    assert report.records[0].stats == {"lifted_constants": 1}


def test_shape_and_size_fold_when_the_dimensions_they_read_are_static(golden):
    golden("fold-constants", """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 3, 5] x) => (float[N, 15] y, int64 n) {
            all_dims = Shape(x)
            tail = Shape <start = 1> (x)
            features = ReduceProd <keepdims = 1> (tail)
            zero = Constant <value = int64[1] {0}> ()
            target = Concat <axis = 0> (zero, features)
            y = Reshape(x, target)
            n = Size(tail)
        }
    """, """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 3, 5] x) => (float[N, 15] y, int64 n) <int64[2] target = {0, 15}, int64 n = {2}> {
            all_dims = Shape(x)
            y = Reshape(x, target)
        }
    """)


def test_ops_without_numpy_kernel_are_evaluated_by_onnxruntime_bit_for_bit(helpers):
    model = parse_text("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[3] x) => (float[3] y) <float[3] w = {0.5, 1, 2}> {
            e = Exp(w)
            s = Softmax(e)
            y = Mul(x, s)
        }
    """)
    report = helpers.run("fold-constants", model)
    assert helpers.op_types(model) == ["Mul"]
    assert report.numeric[0]["max_abs"] == 0.0
    helpers.assert_idempotent("fold-constants", model)


def test_integer_division_truncates_like_onnxruntime(golden):
    golden("fold-constants", """
        <ir_version: 8, opset_import: ["" : 17]>
        g (int64[4] x) => (int64[4] y) <int64[4] a = {7, -7, 7, -7}, int64[4] b = {2, 2, -2, -2}> {
            q = Div(a, b)
            y = Add(x, q)
        }
    """, """
        <ir_version: 8, opset_import: ["" : 17]>
        g (int64[4] x) => (int64[4] y) <int64[4] q = {3, -3, -3, 3}> {
            y = Add(x, q)
        }
    """)


def test_a_folded_graph_output_keeps_its_name(golden):
    golden("fold-constants", """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y, float[2] k) <float[2] a = {1, 2}> {
            k = Neg(a)
            y = Add(x, k)
        }
    """, """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y, float[2] k) <float[2] k = {-1, -2}> {
            y = Add(x, k)
        }
    """)


NOT_FOLDED = """
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[2] x, bool c) => (float[2] y) <float[2] w = {1, 2}, bool flag = {1}, float ratio = {0.5},
                                             float scale = {0.5}, int8[2] q = {4, 8}, bool always = {1}> {
        noise = RandomNormalLike(w)
        dropped, mask = Dropout(w, ratio, flag)
        custom = com.example.Scale(w)
        dq = DequantizeLinear(q, scale)
        branch = If(always) <
            then_branch = t () => (float[2] t_out) { t_out = Neg(x) },
            else_branch = e () => (float[2] e_out) { e_out = Identity(x) }
        >
        s1 = Add(noise, dropped)
        s2 = Add(s1, custom)
        s3 = Add(s2, dq)
        y = Add(s3, branch)
    }
"""


def test_random_training_custom_dequantize_and_control_flow_are_not_folded(helpers):
    model = parse_text(NOT_FOLDED, check=False)
    before = helpers.describe(model)
    report = helpers.run("fold-constants", model, verify="structural")
    assert not report.modified
    assert helpers.describe(model) == before


def test_dequantize_linear_folds_when_not_skipped(helpers):
    model = parse_text("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) <float scale = {0.5}, int8[2] q = {4, 8}> {
            dq = DequantizeLinear(q, scale)
            y = Add(x, dq)
        }
    """)
    helpers.run("fold-constants{skip-ops=}", model)
    assert helpers.op_types(model) == ["Add"]
    np.testing.assert_array_equal(model.graph.initializers["dq"].const_value.numpy(), [2.0, 4.0])


def test_an_initializer_that_is_also_a_graph_input_is_not_a_constant(helpers):
    model = parse_text("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x, float[2] w) => (float[2] y) <float[2] w = {1, 2}> {
            n = Neg(w)
            y = Add(x, n)
        }
    """)
    assert not helpers.run("fold-constants", model).modified


def test_inference_dropout_folds_but_training_dropout_does_not(helpers):
    model = parse_text("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y, float[2] z) <float[2] w = {1, 2}, bool train = {1}, float ratio = {0.5}> {
            kept = Dropout(w)
            random = Dropout(w, ratio, train)
            y = Add(x, kept)
            z = Add(x, random)
        }
    """)
    helpers.run("fold-constants", model, verify="structural")
    assert helpers.op_types(model) == ["Dropout", "Add", "Add"]
    assert "kept" in model.graph.initializers


def _big_model(op: str, *, shared: bool) -> ir.Model:
    """x + op(W) with W of 2 MiB; with ``shared`` W is also read by a second output."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [512, 1024])
    w = b.initializer("w", np.arange(512 * 1024, dtype=np.float32).reshape(1024, 512))
    b.output(b.Add(x, b.op(op, w, perm=[1, 0])), "y")
    if shared:
        b.output(b.Neg(w), "w_neg")
    return b.build()


def test_a_fold_that_only_moves_data_is_not_limited_by_max_size(helpers):
    model = _big_model("Transpose", shared=False)
    report = helpers.run("fold-constants", model, verify="structural")
    assert report.records[0].stats["folded_nodes"] == 1
    assert list(model.graph.initializers) == ["Transpose_1_out"]


def test_a_fold_that_would_duplicate_a_shared_weight_is_refused(helpers):
    model = _big_model("Transpose", shared=True)
    ctx = PassContext()
    report = PassManager("fold-constants", verify="structural").run(model, ctx)
    assert not report.modified
    assert "would add 2097152 bytes" in ctx.trace["fold-constants"][0]
    assert helpers.run("fold-constants{max-size=4194304}", model, verify="structural").modified


def test_expanding_constants_beyond_max_size_are_not_folded(helpers):
    model = parse_text("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1000, 1000] x) => (float[1000, 1000] y) <int64[2] shape = {1000, 1000}, float one = {1}> {
            filled = ConstantOfShape <value = float[1] {3}> (shape)
            grown = Expand(one, shape)
            a = Add(x, filled)
            y = Add(a, grown)
        }
    """)
    report = helpers.run("fold-constants", model, verify="structural")
    assert not report.modified
    assert report.records[0].stats == {"kept_too_large": 2}
    report = helpers.run("fold-constants{max-size=8000000}", model, verify="none")
    assert report.records[0].stats["folded_nodes"] == 2


def test_weights_are_not_read_unless_folded(tmp_path, helpers):
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [1, 256])
    w = b.initializer("w", np.ones((256, 256), np.float32))
    b.output(b.MatMul(x, w), "y")
    save(b.build(), tmp_path / "m.onnx", external_data=True)
    model = load(tmp_path / "m.onnx")
    tensor = model.graph.initializers["w"].const_value
    assert isinstance(tensor, ir.ExternalTensor)
    FoldConstants()(model)
    assert tensor.raw is None


def test_constants_inside_subgraphs_fold_there(golden):
    golden("fold-constants", """
        <ir_version: 8, opset_import: ["" : 17]>
        g (bool c, float[2] x) => (float[2] y) <float[2] w = {1, 2}> {
            y = If(c) <
                then_branch = t () => (float[2] t_out) {
                    k = Constant <value = float[2] {3, 4}> ()
                    s = Add(w, k)
                    t_out = Mul(x, s)
                },
                else_branch = e () => (float[2] e_out) { e_out = Identity(x) }
            >
        }
    """, """
        <ir_version: 8, opset_import: ["" : 17]>
        g (bool c, float[2] x) => (float[2] y) {
            y = If(c) <
                then_branch = t () => (float[2] t_out) <float[2] s = {4, 6}> {
                    t_out = Mul(x, s)
                },
                else_branch = e () => (float[2] e_out) { e_out = Identity(x) }
            >
        }
    """)


def test_string_constants_become_initializers(helpers):
    model = parse_text("""
        <ir_version: 9, opset_import: ["" : 19]>
        g (string[2] x) => (bool[2] y) {
            ref = Constant <value_strings = ["a", "b"]> ()
            y = Equal(x, ref)
        }
    """)
    helpers.run("fold-constants", model)
    assert helpers.op_types(model) == ["Equal"]
    assert list(model.graph.initializers["ref"].const_value.numpy()) == [b"a", b"b"]


@pytest.mark.parametrize("bad", ["max-size=-1", "max-size=big"])
def test_bad_options_are_rejected(bad):
    from onnxsmith.errors import PassOptionError

    with pytest.raises(PassOptionError):
        PassManager(f"fold-constants{{{bad}}}")


def test_sequence_results_are_not_folded_into_tensors(helpers):
    model = parse_text("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (bool c) => (seq(float[2]) y) <float[2] a = {1, 2}> {
            y = If(c) <
                then_branch = t () => (seq(float[2]) t_out) { t_out = SequenceConstruct(a) },
                else_branch = e () => (seq(float[2]) e_out) { e_out = SequenceConstruct(a, a) }
            >
        }
    """)
    assert not helpers.run("fold-constants", model, verify="structural").modified
