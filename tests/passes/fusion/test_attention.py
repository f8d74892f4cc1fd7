"""Families attention / multi-head-attention: exporter self-attention as com.microsoft Attention / MultiHeadAttention."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from hypothesis import strategies as st

from onnxsmith.errors import OnnxsmithError
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.fusion.attention import RULES
from onnxsmith.passes.rewrite import apply_rules, explain
from onnxsmith.verify import check_pass
from onnxsmith.verify._session import run_model

from attention_models import HEAD, HEADS, HIDDEN, LOWEST, Block, build, inputs

BLOCKS = [
    Block(),
    Block(mask=None),
    Block(scale="div"),
    Block(scale="qk", mask="gathernd"),
    Block(mask="flat", dynamic_shapes=True),
    Block(mask="gathernd", k_transposes=2, dynamic_shapes=True),
    Block(cross=True),
]


def _fuse(model: ir.Model) -> ir.Model:
    PassManager("cleanup,fuse{enable=attention,multi-head-attention},remove-unused", verify="structural").run(
        model, PassContext(target="cpu"))
    return model


def _fused_node(model: ir.Model) -> ir.Node:
    (node,) = [n for n in model.graph if n.domain == "com.microsoft"]
    return node


@pytest.mark.parametrize("block", BLOCKS, ids=repr)
def test_block_fuses_and_computes_the_same(block):
    model = _fuse(build(block))
    node = _fused_node(model)
    assert node.op_type == ("MultiHeadAttention" if block.cross else "Attention")
    assert node.attributes["num_heads"].as_int() == HEADS
    assert node.attributes["scale"].as_float() == pytest.approx(HEAD ** -0.5)
    assert node.attributes["unidirectional"].as_int() == 0
    feeds = inputs(block)
    expected, actual = run_model(build(block), feeds)[0], run_model(model, feeds)[0]
    # the fill value is the exporter's, so padded query rows match too: compare every row
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_golden_structure_of_the_packed_form():
    model = _fuse(build(Block()))
    assert [n.op_type for n in model.graph] == ["Cast", "Attention"]
    cast, attention = model.graph
    assert cast.inputs[0].name == "mask" and cast.attributes["to"].as_int() == ir.DataType.INT32
    x, weights, bias, mask_index = attention.inputs
    assert x.name == "x" and mask_index is cast.outputs[0]
    assert weights.const_value.shape == (HIDDEN, 3 * HIDDEN) and bias.const_value.shape == (3 * HIDDEN,)
    assert attention.attributes["mask_filter_value"].as_float() == LOWEST
    assert model.opset_imports["com.microsoft"] == 1


def test_unmasked_block_has_no_mask_input():
    attention = _fused_node(_fuse(build(Block(mask=None))))
    assert len(attention.inputs) == 3 and "mask_filter_value" not in attention.attributes


def _out_node(model: ir.Model) -> str:
    return model.graph.outputs[0].producer().name


def _reasons(model: ir.Model) -> str:
    return " | ".join(line for r in RULES for line in explain(r, model, _out_node(model)))


def test_softmax_used_twice_is_declined():
    model = build(Block())
    softmax = next(n for n in model.graph if n.op_type == "Softmax")
    extra = ir.Node("", "Identity", [softmax.outputs[0]], name="peek")
    model.graph.append(extra)
    extra.outputs[0].name = "probs"
    extra.outputs[0].type = softmax.outputs[0].type
    model.graph.outputs.append(extra.outputs[0])
    assert apply_rules(model, RULES).rewrites == 0
    assert "Softmax output used twice (also read by 'peek')" in _reasons(model)


def test_unrecognised_mask_is_declined():
    model = build(Block(mask=None))
    add_mask = ir.Value(name="bias", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(["batch", 1, "seq", "seq"]))
    model.graph.inputs.append(add_mask)
    softmax = next(n for n in model.graph if n.op_type == "Softmax")
    add = ir.Node("", "Add", [softmax.inputs[0], add_mask], name="add_bias")
    model.graph.insert_before(softmax, add)
    softmax.replace_input_with(0, add.outputs[0])
    assert apply_rules(model, RULES).rewrites == 0
    assert "mask shape not supported: the additive mask comes from a graph input" in _reasons(model)


def test_unknown_head_size_is_declined():
    model = build(Block(mask=None))
    layout = ir.Value(name="layout", type=ir.TensorType(ir.DataType.INT64), shape=ir.Shape([2]))
    model.graph.inputs.append(layout)
    split = next(n for n in model.graph if n.op_type == "Reshape")
    zeros = ir.Value(name="zeros", const_value=ir.tensor(np.zeros(2, np.int64), name="zeros"))
    model.graph.register_initializer(zeros)
    concat = ir.Node("", "Concat", [zeros, layout], attributes=[ir.AttrInt64("axis", 0)], name="layout_concat")
    model.graph.insert_before(split, concat)
    split.replace_input_with(1, concat.outputs[0])
    split.outputs[0].shape = None
    assert apply_rules(model, RULES).rewrites == 0
    assert "num_heads not derivable: the head size of Reshape" in _reasons(model)


@st.composite
def _blocks(draw: st.DrawFn) -> ir.Model:
    block = Block(scale=draw(st.sampled_from(["mul", "div", "qk"])),
                  mask=draw(st.sampled_from([None, "classic", "gathernd", "flat"])),
                  k_transposes=draw(st.sampled_from([1, 2])), dynamic_shapes=draw(st.booleans()),
                  cross=draw(st.booleans()), mask_from_scores=True)
    model = build(block, seed=draw(st.integers(0, 1000)))
    PassManager("cleanup", verify="none").run(model, PassContext())
    return model


def test_fuse_keeps_its_contract_on_attention_blocks():
    check_pass("fuse", models=_blocks(), max_examples=10, options={"enable": ["attention", "multi-head-attention"]},
               context=lambda _model: PassContext(target="cpu"))


def test_attention_is_opt_in_on_cpu():
    # measured slower than the unfused graph on onnxruntime's CPU kernels (codegen.targets)
    model = build(Block())
    PassManager("cleanup,fuse", verify="structural").run(model, PassContext(target="cpu"))
    assert not [n for n in model.graph if n.domain == "com.microsoft"]
    with pytest.raises(OnnxsmithError, match="no family 'atention' to enable"):
        PassManager("fuse{enable=atention}")


@pytest.mark.parametrize("block", [Block(), Block(mask=None), Block(scale="div", mask="gathernd"), Block(cross=True)],
                         ids=repr)
def test_the_fused_block_stays_trainable(block):
    """build-gradients differentiates the fused Attention / MultiHeadAttention: every weight's
    gradient equals its finite difference through onnxruntime's fused kernel."""
    from onnxsmith.passes.train.gradcheck import check_gradients

    model = _fuse(build(block))
    weights = {v.name for v in _fused_node(model).inputs if v is not None and v.is_initializer()}
    checks = check_gradients(model, inputs(block), seed="ones")
    assert weights and weights <= {c.name for c in checks}
    for check in checks:
        assert check.close(2e-2, 2e-2), f"{check.name}: max error {check.max_error():.3g}"
