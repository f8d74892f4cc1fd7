"""Families contrib-gelu, gelu, fast-gelu and bias-gelu: exporter GELU forms as one node."""

from __future__ import annotations

import pytest

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.fusion import bias_gelu, contrib_gelu, fast_gelu, gelu
from onnxsmith.passes.rewrite import explain
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites


def header(opset: int = 17, ms: bool = False) -> str:
    imports = f'"" : {opset}' + (', "com.microsoft" : 1' if ms else "")
    return f"<ir_version: 9, opset_import: [{imports}]>"


#: Exact GELU as each exporter writes it (x: [2,3,8]); constants c2 = sqrt(2), c1 = 1, c05 = 0.5.
ERF_FORMS = {
    "torchscript": ("gelu-erf-xa-half", """
  d = Div (x, c2)
  e = Erf (d)
  a = Add (e, c1)
  m = Mul (x, a)
  [root] y = Mul (m, c05)"""),
    "dynamo": ("gelu-erf-x-ahalf", """
  d = Div (x, c2)
  e = Erf (d)
  a = Add (e, c1)
  h = Mul (c05, a)
  [root] y = Mul (x, h)"""),
    "keras": ("gelu-erf-xhalf-a", """
  d = Mul (cr, x)
  e = Erf (d)
  a = Add (c1, e)
  h = Mul (c05, x)
  [root] y = Mul (h, a)"""),
}
ERF_CONSTANTS = ("float c2 = {1.4142135381698608}, float cr = {0.7071067690849304}, float[1] c1 = {1.0}, "
                 "float c05 = {0.5}")

#: Tanh GELU as torch (Pow-less cube), Hugging Face gelu_new (Pow) and jax2tf (magika) write it.
TANH_FORMS = {
    "torch": ("xa-half-torch", """
  x2 = Mul (x, x)
  x3 = Mul (x, x2)
  k = Mul (kappa, x3)
  s = Add (x, k)
  i = Mul (beta, s)
  t = Tanh (i)
  a = Add (c1, t)
  m = Mul (x, a)
  [root] y = Mul (c05, m)"""),
    "gelu_new": ("xhalf-a-pow", """
  p = Pow (x, three)
  k = Mul (kappa, p)
  s = Add (x, k)
  i = Mul (beta, s)
  t = Tanh (i)
  a = Add (c1, t)
  h = Mul (c05, x)
  [root] y = Mul (h, a)"""),
    "jax": ("x-ahalf-jax", """
  k1 = Mul (kappa, x)
  k2 = Mul (x, k1)
  k = Mul (x, k2)
  s = Add (x, k)
  i = Mul (beta, s)
  t = Tanh (i)
  a = Add (c111, t)
  h = Mul (c05, a)
  [root] y = Mul (x, h)"""),
}
TANH_CONSTANTS = ("float kappa = {0.044714998453855515}, float beta = {0.7978845834732056}, float three = {3.0}, "
                  "float[1] c1 = {1.0}, float[1,1,1] c111 = {1.0}, float c05 = {0.5}")


def _used(body: str, constants: str) -> str:
    """The initializers of ``constants`` that ``body`` reads."""
    tokens = set(body.replace("(", " ").replace(")", " ").replace(",", " ").split())
    return ", ".join(c for c in constants.split(", ") if c.split(" = ")[0].split()[-1] in tokens)


def _model(body: str, constants: str, opset: int = 17, dims: str = "2,3,8") -> str:
    constants = _used(body, constants)
    return header(opset) + f"""
g (float[{dims}] x) => (float[{dims}] y) <{constants}> {{{body}
}}"""


def _fused(op: str, opset: int = 17, ms: bool = True, dims: str = "2,3,8") -> str:
    return header(opset, ms) + f"""
g (float[{dims}] x) => (float[{dims}] y) {{
  [root_{op.split('.')[-1].split(' ')[0]}] y = {op} (x)
}}"""


@pytest.mark.parametrize("form", ERF_FORMS)
def test_erf_forms_become_contrib_gelu(form):
    rule_suffix, body = ERF_FORMS[form]
    stats = assert_rewrites(contrib_gelu.RULES, _model(body, ERF_CONSTANTS), _fused("com.microsoft.Gelu"))
    assert stats.applied[f"contrib-{rule_suffix}"] == 1


@pytest.mark.parametrize("form", ERF_FORMS)
def test_erf_forms_become_onnx_gelu_at_opset_20(form):
    _, body = ERF_FORMS[form]
    assert_rewrites(gelu.RULES, _model(body, ERF_CONSTANTS, opset=20), _fused("Gelu", opset=20, ms=False))


@pytest.mark.parametrize("form", TANH_FORMS)
def test_tanh_forms_become_fast_gelu(form):
    rule_suffix, body = TANH_FORMS[form]
    stats = assert_rewrites(fast_gelu.RULES, _model(body, TANH_CONSTANTS), _fused("com.microsoft.FastGelu"))
    assert stats.applied[f"fast-gelu-{rule_suffix}"] == 1


@pytest.mark.parametrize("form", TANH_FORMS)
def test_tanh_forms_become_tanh_gelu_at_opset_20(form):
    _, body = TANH_FORMS[form]
    assert_rewrites(gelu.RULES, _model(body, TANH_CONSTANTS, opset=20),
                    _fused('Gelu <approximate: string = "tanh">', opset=20, ms=False))


TORCH_BODY = ERF_FORMS["torchscript"][1]


@pytest.mark.parametrize(("case", "rules", "model", "message"), [
    ("0.4 instead of 0.5", contrib_gelu.RULES, _model(TORCH_BODY, ERF_CONSTANTS.replace("{0.5}", "{0.4}")),
     "constant 'c05' fails equals_0.5"),
    ("x / 2 instead of x / sqrt(2)", contrib_gelu.RULES,
     _model(TORCH_BODY, ERF_CONSTANTS.replace("1.4142135381698608", "2.0")),
     "declined: Div 'Div' scales x by 2.0, not sqrt(2)"),
    ("sqrt(2) / x", contrib_gelu.RULES, _model(TORCH_BODY.replace("Div (x, c2)", "Div (c2, x)"), ERF_CONSTANTS),
     "declined: Div 'Div' divides a constant by x"),
    ("Erf output used twice", contrib_gelu.RULES,
     _model(TORCH_BODY + "\n  z = Neg (e)", ERF_CONSTANTS).replace("=> (float[2,3,8] y)",
                                                                    "=> (float[2,3,8] y, float[2,3,8] z)"),
     "value 'e' of Erf 'Erf' is used outside the match (2 consumers)"),
    ("opset 17 has no ONNX Gelu", gelu.RULES, _model(TORCH_BODY, ERF_CONSTANTS),
     "declined: Gelu is ONNX opset 20; the model imports opset 17"),
    ("[1,1,1] constant on a 2-D x", fast_gelu.RULES,
     _model(TANH_FORMS["jax"][1], TANH_CONSTANTS, dims="3,8").replace("=> (float[3,8] y)", "=> (float[1,3,8] y)"),
     "declined: constant 'c111' has shape [1, 1, 1] and x has rank 2: it may broadcast x"),
])
def test_not_fused(case, rules, model, message):
    text = model.replace("d = Div", "[Div] d = Div").replace("e = Erf", "[Erf] e = Erf")
    assert_no_rewrite(rules, text)
    reasons = [explain(r, parse_text(text), "root") for r in rules]
    assert [message] in reasons, (case, reasons)


BIAS_MODEL = header(17, ms=True) + """
g (float[2,3,8] u) => (float[2,3,8] y) <float[{shape}] b = {{{values}}}, float[2,3,8] x> {{
  x = Neg (u)
  s = Add (b, x)
  [root] y = com.microsoft.{op} (s)
}}"""
VALUES = ", ".join(str(0.25 * i) for i in range(8))


@pytest.mark.parametrize(("rules", "op", "fused", "shape", "bias"), [
    pytest.param(bias_gelu.RULES, "Gelu", "BiasGelu", "8", "b", id="BiasGelu"),
    pytest.param(fast_gelu.RULES, "FastGelu", "FastGelu", "8", "b", id="FastGelu"),
    pytest.param(bias_gelu.RULES, "Gelu", "BiasGelu", "1,1,8", "b_vector", id="broadcast-bias-becomes-a-new-vector"),
])
def test_bias_add_moves_into_the_contrib_op(rules, op, fused, shape, bias):
    before = BIAS_MODEL.format(shape=shape, values=VALUES, op=op)
    after = header(17, ms=True) + f"""
g (float[2,3,8] u) => (float[2,3,8] y) <float[8] {bias} = {{{VALUES}}}, float[2,3,8] x> {{
  x = Neg (u)
  [root_{fused}] y = com.microsoft.{fused} (x, {bias})
}}"""
    assert_rewrites(rules, before, after)


@pytest.mark.parametrize(("shape", "values", "message"), [
    ("3,1", "1.0, 2.0, 3.0", "bias 'b' has shape [3, 1], expected [H] or [1, ..., H] of rank <= 3"),
    ("4", "1.0, 2.0, 3.0, 4.0", "bias 'b' has 4 elements but the last dimension of 'x' is 8"),
])
def test_bias_that_does_not_run_along_the_last_axis_is_kept(shape, values, message):
    model = BIAS_MODEL.format(shape=shape, values=values, op="Gelu").replace("float[2,3,8] y", "float[2,3,?] y")
    assert_no_rewrite(bias_gelu.RULES, model)
    assert explain(next(iter(bias_gelu.RULES)), parse_text(model), "root") == [f"declined: {message}"]


@pytest.mark.parametrize(("target", "ops"), [("cpu", ["Neg", "BiasGelu"]),
                                             ("generic", ["Neg", "Add", "Div", "Erf", "Add", "Mul", "Mul"])])
def test_fuse_picks_gelu_kernels_by_target(target, ops):
    body = "\n  x = Add (u, b)" + TORCH_BODY
    model = parse_text(header(17) + f"""
g (float[2,3,8] v) => (float[2,3,8] y) <{ERF_CONSTANTS}, float[8] b = {{{VALUES}}}, float[2,3,8] u,
   float[2,3,8] x> {{
  u = Neg (v){body}
}}""")
    PassManager("fuse", verify="numeric").run(model, PassContext(target=target))
    assert [node.op_type for node in model.graph] == ops


def test_generic_target_uses_onnx_gelu_at_opset_20():
    model = parse_text(_model(TORCH_BODY, ERF_CONSTANTS, opset=20))
    PassManager("fuse", verify="numeric").run(model, PassContext(target="generic"))
    assert [(node.domain, node.op_type) for node in model.graph] == [("", "Gelu")]

