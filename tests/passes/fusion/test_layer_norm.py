"""Family layer-norm: decomposed layer normalization (two-pass and moments forms) as LayerNormalization."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxsmith.ir import parse_text, to_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.fusion.layer_norm import RULES
from onnxsmith.passes.rewrite import apply_rules, explain
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites
from onnxsmith.verify import check_pass
from onnxsmith.verify._session import run_model

AFFINE = "[scale] sc = Mul (n, gamma)\n  [shift] y = Add (sc, beta)"
PARAMS = "float[4] gamma = {1.0, 2.0, 0.5, -1.0}, float[4] beta = {0.25, 0.0, -0.5, 1.0}"


def _rule(name: str):
    return next(r for r in RULES if r.name == name)


def _two_pass(*, opset: int = 17, shape: str = "2,3,4", axes: str = "-1", square: str = "p = Pow (d, two)",
              divide: str = "[norm] n = Div (d, s)", tail: str = AFFINE, params: str = PARAMS,
              outputs: str = "") -> str:
    """A torch-style decomposed LayerNorm; ``axes`` go in an attribute below opset 18, else an input."""
    out = "y" if "y =" in tail else ("sc" if "sc =" in tail else "n")
    if opset >= 18:
        reduce_mean, consts = "ReduceMean (x, axes)", f", int64[{len(axes.split(','))}] axes = {{{axes}}}"
    else:
        reduce_mean, consts = f"ReduceMean <axes = [{axes}]> (x)", ""
    return f"""<ir_version: 9, opset_import: ["" : {opset}]>
g (float[{shape}] x) => (float[{shape}] {out}{outputs}) <{params}, float two = {{2.0}}, float eps = {{1e-5}}{consts}> {{
  [mean] m = {reduce_mean}
  d = Sub (x, m)
  {square}
  [var] v = {reduce_mean.replace("(x", "(p")}
  ve = Add (v, eps)
  s = Sqrt (ve)
  {divide}
  {tail}
}}"""


def test_torch_form_with_gamma_and_beta_becomes_one_node_reusing_the_parameters():
    after = f"""<ir_version: 9, opset_import: ["" : 17]>
g (float[2,3,4] x) => (float[2,3,4] y) <{PARAMS}> {{
  [shift_LayerNormalization] y = LayerNormalization <axis: int = -1, epsilon: float = 1e-05> (x, gamma, beta)
}}"""
    stats = assert_rewrites(RULES, _two_pass(), after)
    assert stats.applied["layer-norm-pow-div-affine"] == 1


def test_reciprocal_and_square_over_two_axes_at_opset_18_without_affine():
    before = _two_pass(opset=18, axes="-2, -1", square="p = Mul (d, d)",
                       divide="r = Reciprocal (s)\n  [norm] n = Mul (d, r)", tail="")
    model = parse_text(before)
    stats = apply_rules(model, RULES)
    assert stats.applied["layer-norm-square-reciprocal"] == 1
    (node,) = model.graph
    assert node.op_type == "LayerNormalization" and node.attributes["axis"].as_int() == -2
    np.testing.assert_array_equal(node.inputs[1].const_value.numpy(), np.ones((3, 4), np.float32))
    assert len(node.inputs) == 2  # no beta: no bias input
    assert_rewrites(RULES, before, to_text(model))


def test_a_short_tail_waits_for_the_scale_that_follows():
    """The bare rule declines at the Div when a constant Mul (gamma) reads it; the -scale rule fuses it."""
    before = _two_pass(tail="[scale] sc = Mul (gamma, n)", params="float[1,1,4] gamma = {1.0, 2.0, 0.5, -1.0}")
    assert "declined: Mul 'scale' after it is the gamma (fused where the block ends)" in explain(
        _rule("layer-norm-pow-div"), parse_text(before), "norm")
    model = parse_text(before)
    stats = apply_rules(model, RULES)
    assert stats.applied["layer-norm-pow-div-scale"] == 1 and stats.rewrites == 1
    (node,) = model.graph
    np.testing.assert_array_equal(node.inputs[1].const_value.numpy(), [1.0, 2.0, 0.5, -1.0])
    assert node.inputs[1].shape == ir.Shape([4])  # [1, 1, 4] gamma reshaped to the normalised shape


@pytest.mark.parametrize(("case", "model", "rule", "message"), [
    ("leading axis", _two_pass(axes="1"), "layer-norm-pow-div-affine",
     "declined: normalises axis 1 of [2, 3, 4]; LayerNormalization normalises trailing axes only"),
    ("opset 16", _two_pass(opset=16), "layer-norm-pow-div-affine",
     "declined: LayerNormalization needs opset 17 (model has 16)"),
    ("gamma varies along rows", _two_pass(params="float[2,1,4] gamma = {1.0, 2.0, 0.5, -1.0, 1.0, 2.0, 0.5, -1.0}, "
                                                 "float[4] beta = {0.25, 0.0, -0.5, 1.0}"),
     "layer-norm-pow-div-affine", "declined: gamma 'gamma' has shape [2, 1, 4], which does not vary along"),
    ("dynamic normalised axis", _two_pass(shape="2,3,N"), "layer-norm-pow-div-affine",
     "declined: the normalised dimensions of 'x' [2, 3, ?] are not static"),
    ("not a square", _two_pass(square="p = Pow (d, eps)"), "layer-norm-pow-div-affine", "equals_2"),
])
def test_not_fused(case, model, rule, message):
    stats = apply_rules(parse_text(model), RULES)
    assert stats.applied[rule] == 0, case
    assert any(message in reason for reason in explain(_rule(rule), parse_text(model), "shift")), case


def test_a_gamma_that_is_no_parameter_stays_a_mul():
    """A gamma varying along the rows is not LayerNormalization's scale: the normalisation alone fuses."""
    model = parse_text(_two_pass(params="float[2,1,4] gamma = {1.0, 2.0, 0.5, -1.0, 1.0, 2.0, 0.5, -1.0}, "
                                        "float[4] beta = {0.25, 0.0, -0.5, 1.0}"))
    PassManager("fuse{rules=layer-norm}", verify="numeric").run(model, PassContext())
    assert [node.op_type for node in model.graph] == ["LayerNormalization", "Mul", "Add"]


def test_a_statistic_read_elsewhere_blocks_the_match():
    model = _two_pass(outputs=", float[2,3,1] m")
    assert_no_rewrite(RULES, model)


# --- the moments form (jax2tf, magika) ------------------------------------------------------------

def _moments(*, opset: int = 17, axis: int = 2, rows: int = 3) -> str:
    """magika's LayerNorm: ReduceSum*(1/N), E[x^2] - E[x]^2, Max(0, .), Reshape/Expand, Reciprocal."""
    feats, kept = (4, "[2,3,1]") if axis == 2 else (4, "[2,1,4]")
    n = feats if axis == 2 else rows
    gamma_shape = "[1,1,4]" if axis == 2 else f"[1,{rows},1]"
    values = ", ".join(["1.5", "-0.5", "2.0", "0.25"][:n] + ["1.0"] * (n - 4))
    return f"""<ir_version: 9, opset_import: ["" : {opset}]>
g (float[2,{rows},4] x) => (float[2,{rows},4] y) <int64[1] axes = {{{axis}}}, float inv = {{{1.0 / n!r}}},
    float zero = {{0.0}}, float eps = {{1e-6}}, int64[3] shape = {{{kept[1:-1]}}},
    float{gamma_shape} gamma = {{{values}}}, float{gamma_shape} beta = {{{values}}}> {{
  s1 = ReduceSum <keepdims = 0> (x, axes)
  mean = Mul (s1, inv)
  sq = Mul (x, x)
  s2 = ReduceSum <keepdims = 0> (sq, axes)
  ex2 = Mul (s2, inv)
  m2 = Mul (mean, mean)
  diff = Sub (ex2, m2)
  var = Max (zero, diff)
  vr = Reshape (var, shape)
  vb = Expand (vr, shape)
  ve = Add (vb, eps)
  sd = Sqrt (ve)
  inv_sd = Reciprocal (sd)
  k = Mul (inv_sd, gamma)
  mr = Reshape (mean, shape)
  mb = Expand (mr, shape)
  d = Sub (x, mb)
  t = Mul (d, k)
  [out] y = Add (t, beta)
}}"""


def _inferred(text: str) -> ir.Model:
    model = parse_text(text)
    PassManager("infer-shapes", verify="none").run(model, PassContext())
    return model


def test_moments_form_becomes_layer_normalization_closer_to_float64():
    model = _inferred(_moments())
    original = _inferred(_moments())
    stats = apply_rules(model, RULES)
    assert stats.applied["layer-norm-moments"] == 1
    (node,) = [n for n in model.graph if n.op_type != "Constant"]
    assert node.op_type == "LayerNormalization" and node.attributes["axis"].as_int() == -1
    # rows with a large mean: E[x^2] - E[x]^2 cancels in float32; LayerNormalization does not
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(2, 3, 4)) + 30.0).astype(np.float32)
    gamma = np.array([1.5, -0.5, 2.0, 0.25])
    x64 = x.astype(np.float64)
    mu, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    reference = (x64 - mu) / np.sqrt(var + 1e-6) * gamma + gamma
    fused_error = np.abs(run_model(model, {"x": x})[0] - reference).max()
    original_error = np.abs(run_model(original, {"x": x})[0] - reference).max()
    assert fused_error <= original_error and fused_error < 1e-5


@pytest.mark.parametrize(("case", "text", "message"), [
    ("magika's LayerNorm_0", _moments(axis=1), "declined: normalises axis 1 of [2, 3, 4]"),
    ("magika's opset", _moments(opset=15), "declined: LayerNormalization needs opset 17 (model has 15)"),
])
def test_moments_form_declines(case, text, message):
    model = _inferred(text)
    assert apply_rules(model, RULES).rewrites == 0
    assert any(message in reason for reason in explain(_rule("layer-norm-moments"), model, "out")), case


# --- property: the fuse pass contract on random decomposed layer norms ----------------------------

@st.composite
def decomposed_layer_norms(draw: st.DrawFn) -> ir.Model:
    """Two-pass decomposed LayerNorms: random shape, trailing axes, spelling, tail and parameters."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    count = draw(st.integers(1, len(dims)))
    axes = ", ".join(str(a) for a in range(-count, 0))
    square = draw(st.sampled_from(["p = Pow (d, two)", "p = Mul (d, d)"]))
    divide = draw(st.sampled_from(["[norm] n = Div (d, s)", "r = Reciprocal (s)\n  [norm] n = Mul (d, r)"]))
    norm_shape = dims[len(dims) - count:]
    gamma_shape = draw(st.sampled_from([norm_shape, [1] * (len(dims) - count) + norm_shape, [1]]))
    tail = draw(st.sampled_from(["", "[scale] sc = Mul (n, gamma)", "[shift] y = Add (n, beta)",
                                 "[scale] sc = Mul (n, gamma)\n  [shift] y = Add (sc, beta)"]))

    def tensor(name: str, shape: list[int]) -> str:
        values = ", ".join(repr(float(v)) for v in rng.normal(size=shape).astype(np.float32).ravel())
        return f"float[{','.join(map(str, shape))}] {name} = {{{values}}}"

    params = f"{tensor('gamma', gamma_shape)}, {tensor('beta', norm_shape)}"
    text = _two_pass(opset=draw(st.sampled_from([17, 18])), shape=",".join(map(str, dims)), axes=axes,
                     square=square, divide=divide, tail=tail, params=params)
    return parse_text(text)


@pytest.mark.parametrize("target", ["generic", "cpu"])
def test_fuse_keeps_its_contract_on_decomposed_layer_norms(target):
    check_pass("fuse", models=decomposed_layer_norms(), options={"rules": ["layer-norm"]}, max_examples=25,
               context=lambda _model: PassContext(target=target))


@settings(max_examples=25, deadline=None)
@given(decomposed_layer_norms())
def test_every_drawn_layer_norm_becomes_one_node(model):
    PassManager("fuse{rules=layer-norm}", verify="numeric").run(model, PassContext())
    assert [node.op_type for node in model.graph] == ["LayerNormalization"]
